#include "tools/loadgen/report.h"

#include <gtest/gtest.h>

namespace zt::loadgen {
namespace {

TEST(Report, HttpShape) {
  auto c = parse_args({"--rate", "100", "-c", "2", "--duration", "2s", "http://127.0.0.1:8/x"});
  ASSERT_TRUE(c);
  RunResult r;
  r.measured_seconds = 2;
  r.wall_seconds = 3.1;
  r.started_at = "2026-01-01T00:00:00Z";
  r.stats.scheduled = 200;
  r.stats.sent = 200;
  r.stats.completed = 198;
  r.stats.status[200] = 190;
  r.stats.status[503] = 8;
  r.stats.errors.timeout = 2;
  for (int i = 1; i <= 198; ++i) r.stats.latency_us.record(i * 10);
  r.stats.late_us.record(5);
  auto j = report_json(*c, r);
  // Round-trips through text.
  j = nlohmann::json::parse(j.dump());
  EXPECT_EQ(j["tool"], "loadgen");
  EXPECT_EQ(j["config"]["rate"], 100.0);
  EXPECT_EQ(j["config"]["connections"], 2);
  EXPECT_EQ(j["config"]["protocol"], "http1");
  EXPECT_EQ(j["config"]["open_loop"], true);
  EXPECT_EQ(j["duration_s"], 2.0);
  EXPECT_EQ(j["requests"]["scheduled"], 200);
  EXPECT_EQ(j["requests"]["sent"], 200);
  EXPECT_EQ(j["requests"]["completed"], 198);
  EXPECT_EQ(j["requests"]["errors"], 2);
  EXPECT_DOUBLE_EQ(j["achieved_rps"].get<double>(), 99.0);
  EXPECT_EQ(j["status"]["200"], 190);
  EXPECT_EQ(j["status"]["503"], 8);
  EXPECT_EQ(j["errors"]["timeout"], 2);
  EXPECT_EQ(j["errors"]["total"], 2);
  for (const char* k : {"p50", "p90", "p99", "p99.9", "max", "mean", "min", "count"}) {
    EXPECT_TRUE(j["latency_us"].contains(k)) << k;
  }
  EXPECT_EQ(j["latency_us"]["max"], 1980);
  EXPECT_EQ(j["latency_us"]["count"], 198);
  EXPECT_TRUE(j.contains("late_send_us"));
  EXPECT_EQ(j["histogram"]["unit"], "us");
  uint64_t total = 0;
  for (const auto& b : j["histogram"]["buckets"]) {
    ASSERT_EQ(b.size(), 3u);
    EXPECT_LE(b[0].get<uint64_t>(), b[1].get<uint64_t>());
    total += b[2].get<uint64_t>();
  }
  EXPECT_EQ(total, 198u);
  EXPECT_FALSE(j.contains("tcp_bulk"));
  EXPECT_EQ(j["completion_s"], 2.0);
  // Responses to the window's requests kept arriving until 4 s: the served rate is lower.
  r.completion_seconds = 4;
  EXPECT_DOUBLE_EQ(achieved_rps(r), 49.5);
  EXPECT_EQ(report_json(*c, r)["completion_s"], 4.0);
  auto text = summary(*c, r);
  EXPECT_NE(text.find("200=190"), std::string::npos) << text;
  EXPECT_NE(text.find("timeout 2"), std::string::npos) << text;
}

TEST(Report, TcpBulkShape) {
  auto c = parse_args({"--tcp-bulk", "--direction", "both", "127.0.0.1:9"});
  ASSERT_TRUE(c);
  RunResult r;
  r.measured_seconds = 2;
  r.stats.bytes_sent = 250'000'000;
  r.stats.bytes_received = 125'000'000;
  auto j = nlohmann::json::parse(report_json(*c, r).dump());
  EXPECT_EQ(j["config"]["mode"], "tcp-bulk");
  EXPECT_EQ(j["config"]["direction"], "both");
  EXPECT_EQ(j["tcp_bulk"]["bytes_sent"], 250'000'000);
  EXPECT_DOUBLE_EQ(j["tcp_bulk"]["gbit_per_s_sent"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(j["tcp_bulk"]["gbit_per_s_received"].get<double>(), 0.5);
  EXPECT_DOUBLE_EQ(j["tcp_bulk"]["gbit_per_s"].get<double>(), 1.5);
  EXPECT_FALSE(j.contains("latency_us"));
}

}  // namespace
}  // namespace zt::loadgen
