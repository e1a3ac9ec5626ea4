// mesh_bench's analysis (pure JSON in, summaries and targets out).
#include "bench/mesh/runner/analysis.h"

#include <cmath>
#include <string>

#include <gtest/gtest.h>

namespace zt::bench::mesh {
namespace {

using Json = nlohmann::json;

Json run(double rate, int conns, Json rss_after, Json rss_under_load) {
  Json r = {
      {"rate", rate},
      {"connections", conns},
      {"repeat", 1},
      {"ok", true},
      {"completed", 1000},
      {"errors", 0},
      {"achieved_rps", rate},
      {"latency_us", {{"p50", 100}, {"p90", 150}, {"p99", 200}, {"p99.9", 300}, {"max", 400}}},
      {"rss_bytes", std::move(rss_after)}};
  if (!rss_under_load.is_null()) r["rss_under_load_bytes"] = std::move(rss_under_load);
  return r;
}

// A scenario as results.json has it, with only what these tests look at measured.
Json scenario(const std::string& name, Json run) {
  Json s = {{"name", name},
            {"status", "ok"},
            {"error", ""},
            {"proxies", Json::array()},
            {"memory", Json::object()},
            {"throughput", {{"gbit_per_s", 1.0}}},
            {"conn_rate", {{"achieved_rps", 100.0}}}};
  s["runs"] = Json::array({std::move(run)});
  return s;
}

Json results_with(Json ambient_run) {
  Json r = Json::object();
  r["options"] = {{"rates", Json::array({1000})}, {"connections", Json::array({4})}};
  r["node0_pods_served_during_load"] = 10;
  r["scenarios"] = Json::array({scenario("no-mesh", run(1000, 4, Json::object(), nullptr)),
                                scenario("ambient", std::move(ambient_run))});
  Json no_curve = {{"points", Json::array()}, {"error", "not measured here"}};
  r["memory_vs_pods"] = {{"ambient", no_curve}, {"sidecar", no_curve}};
  return r;
}

const Json& target_named(const Json& results, const std::string& name) {
  for (const auto& t : results["targets"]) {
    if (t.value("name", "") == name) return t;
  }
  static const Json none;
  ADD_FAILURE() << "no target " << name;
  return none;
}

constexpr const char* kRssTarget = "ztunnel RSS at 1,000 rps serving 10 pods";

TEST(MeshBenchAnalysis, RssTargetCountsTheReadingUnderLoadWhenItIsLarger) {
  Json r = results_with(run(1000, 4, {{"node-0.ztunnel", 10.0 * 1024 * 1024}},
                            {{"node-0.ztunnel", 13.0 * 1024 * 1024}}));
  analyze(r);
  EXPECT_DOUBLE_EQ(r["scenarios"][1]["points"][0]["rss_bytes_max"]["node-0.ztunnel"].get<double>(),
                   13.0 * 1024 * 1024);
  const Json& t = target_named(r, kRssTarget);
  EXPECT_EQ(t.value("achieved", ""), "13.0 MiB");
  EXPECT_EQ(t["met"], false);
}

TEST(MeshBenchAnalysis, RssTargetCountsTheReadingAfterTheRunWhenItIsLarger) {
  Json r = results_with(run(1000, 4, {{"node-0.ztunnel", 11.0 * 1024 * 1024}},
                            {{"node-0.ztunnel", 10.0 * 1024 * 1024}}));
  analyze(r);
  const Json& t = target_named(r, kRssTarget);
  EXPECT_EQ(t.value("achieved", ""), "11.0 MiB");
  EXPECT_EQ(t["met"], true);
}

TEST(MeshBenchAnalysis, RunsWithoutAReadingUnderLoadStillCount) {
  // results.json of earlier versions has only rss_bytes (mesh_bench --rerender reads them).
  Json r = results_with(run(1000, 4, {{"node-0.ztunnel", 11.5 * 1024 * 1024}}, nullptr));
  analyze(r);
  EXPECT_EQ(target_named(r, kRssTarget).value("achieved", ""), "11.5 MiB");
}

// A run whose two ztunnels used `user` and `kernel` CPU-s each and switched `switches` times.
Json run_with_cpu(double user, double kernel, double switches) {
  Json r = run(1000, 4, {{"node-0.ztunnel", 10.0 * 1024 * 1024}}, nullptr);
  r["cpu_s"] = {{"node-0.ztunnel", user + kernel}, {"node-1.ztunnel", user + kernel}};
  Json one = {{"user_s", user}, {"system_s", kernel}, {"switches", switches}};
  r["cpu_split"] = {{"node-0.ztunnel", one}, {"node-1.ztunnel", one}};
  return r;
}

TEST(MeshBenchAnalysis, CpuIsSplitIntoUserAndKernelTimePerRequest) {
  // 1,000 requests; each ztunnel: 0.03 s user, 0.07 s kernel, 2,000 context switches.
  Json r = results_with(run_with_cpu(0.03, 0.07, 2000));
  r["scenarios"][0]["runs"][0]["cpu_s"] = Json::object();  // no proxies
  r["scenarios"][0]["runs"][0]["cluster_cpu_s"] = 0.1;
  r["scenarios"][0]["runs"][0]["cluster_cpu_split"] = {{"user_s", 0.04}, {"system_s", 0.06}};
  analyze(r);
  const Json& cpu = r["scenarios"][1]["points"][0]["cpu_per_1000"];
  EXPECT_NEAR(cpu["total"].get<double>(), 0.2, 1e-9);
  EXPECT_NEAR(cpu["proxies_user"]["node-0.ztunnel"].get<double>(), 0.03, 1e-9);
  EXPECT_NEAR(cpu["proxies_kernel"]["node-1.ztunnel"].get<double>(), 0.07, 1e-9);
  EXPECT_NEAR(cpu["switches_per_request"]["node-0.ztunnel"].get<double>(), 2.0, 1e-9);
  const Json& base = r["scenarios"][0]["points"][0]["cpu_per_1000"];
  EXPECT_NEAR(base["cluster_kernel"].get<double>(), 0.06, 1e-9);
  // The CPU target says where the time went, from the same run.
  const std::string detail =
      target_named(r, "ambient L4 CPU per 1,000 requests (both ztunnels)").value("detail", "");
  EXPECT_NE(detail.find("70 % of it was kernel time"), std::string::npos) << detail;
  EXPECT_NE(detail.find("each ztunnel was switched in 2.0 times per request"), std::string::npos)
      << detail;
  EXPECT_NE(detail.find("used 0.100 at the same point, 60 % of it kernel time"), std::string::npos)
      << detail;
  // No wake-up cost was measured (results.json of earlier versions): nothing is said of one.
  EXPECT_FALSE(r["machine"].contains("wakeup_cost_summary"));
  EXPECT_EQ(detail.find("per wake-up"), std::string::npos) << detail;
}

TEST(MeshBenchAnalysis, TheCpuTargetSaysWhatTheSwitchesCostAtTheMachinesWakeupCost) {
  Json r = results_with(run_with_cpu(0.03, 0.07, 2000));  // 2.0 switches per request each
  // Two measurements; per wake-up where the scheduler placed them: 14, 15, 16 and 40 us
  // (median 15.5), on one CPU: 3 and 3.
  auto repeats = [](std::initializer_list<double> us) {
    Json a = Json::array();
    for (double v : us) a.push_back({{"cpu_us_per_wakeup", v}, {"wall_us_per_round_trip", 2 * v}});
    return a;
  };
  r["machine"]["wakeup_cost"] = Json::array({{{"when", "before the load runs"},
                                              {"round_trips", 100},
                                              {"pinned_cpu", 0},
                                              {"scheduler", repeats({14, 16, 40})},
                                              {"one_cpu", repeats({3})}},
                                             {{"when", "after the load runs"},
                                              {"round_trips", 100},
                                              {"pinned_cpu", 0},
                                              {"scheduler", repeats({15})},
                                              {"one_cpu", repeats({3})}}});
  analyze(r);
  const Json& summary = r["machine"]["wakeup_cost_summary"];
  EXPECT_DOUBLE_EQ(summary["scheduler"]["cpu_us_per_wakeup"]["median"].get<double>(), 15.5);
  EXPECT_DOUBLE_EQ(summary["scheduler"]["cpu_us_per_wakeup"]["max"].get<double>(), 40);
  EXPECT_EQ(summary["scheduler"]["repeats"].get<int>(), 4);
  EXPECT_DOUBLE_EQ(summary["one_cpu"]["cpu_us_per_wakeup"]["median"].get<double>(), 3);
  // Each measurement is summarized on its own too (the report's rows).
  EXPECT_DOUBLE_EQ(
      r["machine"]["wakeup_cost"][0]["summary"]["scheduler"]["cpu_us_per_wakeup"]["median"]
          .get<double>(),
      16);
  // Both ztunnels: 4.0 switches per request x 15.5 us = 62 us per request = 0.062 per 1,000.
  const std::string detail =
      target_named(r, "ambient L4 CPU per 1,000 requests (both ztunnels)").value("detail", "");
  EXPECT_NE(detail.find("at the 15.5 us of CPU per wake-up"), std::string::npos) << detail;
  EXPECT_NE(detail.find("(3.0 us with both on one CPU; section"), std::string::npos) << detail;
  EXPECT_NE(detail.find("4.0 switches per request in all"), std::string::npos) << detail;
  // ... of the ztunnels' 0.2 vCPU-s per 1,000 requests (0.1 user + kernel each).
  EXPECT_NE(detail.find("about 0.062 vCPU-s per 1,000 requests, 31 % of that CPU (0.012 at the "
                        "one-CPU cost)"),
            std::string::npos)
      << detail;
}

TEST(MeshBenchAnalysis, WithoutAWakeupCostTheCpuTargetSaysNothingOfIt) {
  // A run whose probe failed (no repeats); results.json of earlier versions has no
  // machine.wakeup_cost at all (CpuIsSplitIntoUserAndKernelTimePerRequest).
  Json r = results_with(run_with_cpu(0.03, 0.07, 2000));
  r["machine"]["wakeup_cost"] =
      Json::array({{{"when", "before the load runs"}, {"error", "wake-up cost: fork: EAGAIN"}}});
  analyze(r);
  EXPECT_TRUE(r["machine"]["wakeup_cost_summary"].empty());
  const std::string detail =
      target_named(r, "ambient L4 CPU per 1,000 requests (both ztunnels)").value("detail", "");
  EXPECT_EQ(detail.find("per wake-up"), std::string::npos) << detail;
}

TEST(MeshBenchAnalysis, RunsWithoutACpuSplitStillCount) {
  // results.json of earlier versions has cpu_s only.
  Json r = results_with(run_with_cpu(0.03, 0.07, 2000));
  r["scenarios"][1]["runs"][0].erase("cpu_split");
  analyze(r);
  const Json& cpu = r["scenarios"][1]["points"][0]["cpu_per_1000"];
  EXPECT_NEAR(cpu["total"].get<double>(), 0.2, 1e-9);
  EXPECT_FALSE(cpu.contains("proxies_kernel"));
  const std::string detail =
      target_named(r, "ambient L4 CPU per 1,000 requests (both ztunnels)").value("detail", "");
  EXPECT_EQ(detail.find("kernel time"), std::string::npos) << detail;
}

// A load run of the latency tests: 1,000 requests, p50 and p99 as given.
Json latency_run(int repeat, double p50, double p99) {
  Json r = run(1000, 4, Json::object(), nullptr);
  r["repeat"] = repeat;
  r["latency_us"] = {{"p50", p50}, {"p90", p99}, {"p99", p99}, {"p99.9", p99}, {"max", p99}};
  return r;
}

TEST(MeshBenchAnalysis, ALatencyLossInsideTheRepeatsSpreadIsSaidToBeUnresolved) {
  Json r = results_with(Json::object());
  // Three repeats each; the worst p99 of each point is dropped. No mesh: p50 100, p99 200.
  auto runs_of = [](std::vector<std::pair<double, double>> p50_p99) {
    Json runs = Json::array();
    int i = 1;
    for (auto [p50, p99] : p50_p99) runs.push_back(latency_run(i++, p50, p99));
    return runs;
  };
  r["scenarios"][0]["runs"] = runs_of({{100, 200}, {100, 200}, {100, 900}});
  // Ambient's p50 (kept: 300, 320) is above the sidecar's (kept: 290, 310) but the ranges
  // overlap; its p99 (kept: 800, 820) is above the sidecar's (kept: 500, 520) with no overlap.
  r["scenarios"][1]["runs"] = runs_of({{300, 800}, {320, 820}, {300, 5000}});
  r["scenarios"].push_back(scenario("sidecar", Json::object()));
  r["scenarios"][2]["runs"] = runs_of({{290, 500}, {310, 520}, {290, 6000}});
  analyze(r);
  const Json& t = target_named(r, "ambient added latency below sidecar at every rate");
  EXPECT_EQ(t.value("achieved", ""), "p50 0/1, p99 0/1 points");
  const std::string detail = t.value("detail", "");
  EXPECT_NE(detail.find("1000x4 p50 +210 vs +200 us"), std::string::npos) << detail;
  EXPECT_NE(detail.find("1000x4 p99 +610 vs +310 us"), std::string::npos) << detail;
  EXPECT_NE(detail.find("1000x4 p50 +210 vs +200 us (within the spread)"), std::string::npos)
      << detail;
  EXPECT_EQ(detail.find("p99 +610 vs +310 us (within"), std::string::npos) << detail;
  EXPECT_NE(detail.find("1 of these 2 are within the spread of the kept repeats"),
            std::string::npos)
      << detail;
}

TEST(MeshBenchAnalysis, ALatencyLossWithASingleRepeatIsNotJudgedBySpread) {
  // --short runs one repeat per point: min = max, no spread to judge a loss by.
  Json r = results_with(latency_run(1, 310, 810));
  r["scenarios"][0]["runs"] = Json::array({latency_run(1, 100, 200)});
  r["scenarios"].push_back(scenario("sidecar", latency_run(1, 310, 510)));
  analyze(r);
  const std::string detail =
      target_named(r, "ambient added latency below sidecar at every rate").value("detail", "");
  EXPECT_NE(detail.find("2 of the losses are at points with a single kept repeat"),
            std::string::npos)
      << detail;
  EXPECT_EQ(detail.find("within the spread"), std::string::npos) << detail;
}

TEST(MeshBenchAnalysis, NearestRateIsTheMeasuredRateClosestToTheOneAskedFor) {
  // The report's and the targets' "at 1,000 rps" when 1,000 was not measured.
  Json r = {{"options", {{"rates", Json::array({500, 2000})}}}};
  EXPECT_EQ(nearest_rate(r, 1000), 500);
  EXPECT_EQ(nearest_rate(r, 1800), 2000);
  r["options"]["rates"] = Json::array();
  EXPECT_TRUE(std::isnan(nearest_rate(r, 1000)));
}

// A latency run whose window had `steal` of `total` machine seconds taken by the hypervisor.
Json run_with_steal(int repeat, double p50, double p99, double steal, double total) {
  Json r = latency_run(repeat, p50, p99);
  r["machine_cpu_s"] = {{"busy", 1.0}, {"softirq", 0.1}, {"steal", steal}, {"total", total}};
  return r;
}

TEST(MeshBenchAnalysis, LatencyLossesAtPointsWithStealSaySo) {
  Json r = results_with(run_with_steal(1, 310, 5000, 0.6, 20.0));  // 3 % stolen
  r["scenarios"][0]["runs"] = Json::array({run_with_steal(1, 100, 200, 0.0, 20.0)});
  r["scenarios"].push_back(scenario("sidecar", run_with_steal(1, 300, 500, 0.0, 20.0)));
  analyze(r);
  const Json& ambient_point = r["scenarios"][1]["points"][0];
  EXPECT_DOUBLE_EQ(ambient_point.value("steal_fraction_max", -1.0), 0.03);
  const std::string below =
      target_named(r, "ambient added latency below sidecar at every rate").value("detail", "");
  EXPECT_NE(below.find("1000x4 p50 +210 vs +200 us (steal 3.0 %)"), std::string::npos) << below;
  EXPECT_NE(below.find("at 2 of the 2 losses the hypervisor took more than 1 %"), std::string::npos)
      << below;
  const std::string added = target_named(r, "ambient p99 added at 1,000 rps").value("detail", "");
  EXPECT_NE(added.find("the hypervisor took 3.0 % of the machine's time (steal)"),
            std::string::npos)
      << added;
}

TEST(MeshBenchAnalysis, StealBelowOnePercentOrNotReadIsNotMentioned) {
  // 0.5 % stolen at ambient's point; results of earlier versions read no steal at all.
  Json r = results_with(run_with_steal(1, 310, 5000, 0.1, 20.0));
  r["scenarios"][0]["runs"] = Json::array({latency_run(1, 100, 200)});
  r["scenarios"].push_back(scenario("sidecar", latency_run(1, 300, 500)));
  analyze(r);
  EXPECT_FALSE(r["scenarios"][0]["points"][0].contains("steal_fraction_max"));
  EXPECT_FALSE(r["scenarios"][2]["points"][0].contains("steal_fraction_max"));
  for (const char* name :
       {"ambient added latency below sidecar at every rate", "ambient p99 added at 1,000 rps"}) {
    const std::string detail = target_named(r, name).value("detail", "");
    EXPECT_EQ(detail.find("steal"), std::string::npos) << name << ": " << detail;
  }
}

// A single-stream result as the runner records it: `gb` GB received while the machine spent
// `busy` of `total` seconds (and the hypervisor `steal`), the proxies `proxies` seconds.
Json stream(double gbit, double gb, double busy, double steal, double total, Json proxies) {
  return {{"gbit_per_s", gbit},
          {"bytes", gb * 1e9},
          {"cpu",
           {{"window_s", total / 2},
            {"cpu_s", std::move(proxies)},
            {"machine_cpu_s",
             {{"busy", busy}, {"softirq", 0.5}, {"steal", steal}, {"total", total}}}}}};
}

TEST(MeshBenchAnalysis, TheStreamTargetSaysWhatEachGigabyteCostTheMachine) {
  Json r = results_with(run(1000, 4, Json::object(), nullptr));
  // No mesh: 6 GB on 9 of 10 machine seconds (1.5 vCPU-s per GB). Ambient: 1.5 GB on 9.5 of 10,
  // 6 of them in the two ztunnels.
  r["scenarios"][0]["throughput"] = stream(10.0, 6.0, 9.0, 0.0, 10.0, Json::object());
  r["scenarios"][1]["throughput"] =
      stream(2.5, 1.5, 9.5, 0.2, 10.0, {{"node-0.ztunnel", 3.2}, {"node-1.ztunnel", 2.8}});
  analyze(r);
  const Json& ambient = r["scenarios"][1]["throughput"]["cost"];
  EXPECT_DOUBLE_EQ(ambient.value("machine_busy_fraction", 0.0), 0.95);
  EXPECT_DOUBLE_EQ(ambient.value("steal_fraction", 0.0), 0.02);
  EXPECT_NEAR(ambient.value("machine_vcpu_s_per_gb", 0.0), 9.5 / 1.5, 1e-9);
  EXPECT_NEAR(ambient.value("proxies_vcpu_s_per_gb", 0.0), 4.0, 1e-9);
  const Json& nomesh = r["scenarios"][0]["throughput"]["cost"];
  EXPECT_NEAR(nomesh.value("machine_vcpu_s_per_gb", 0.0), 1.5, 1e-9);
  EXPECT_FALSE(nomesh.contains("proxies_vcpu_s_per_gb")) << "no mesh has no proxy";
  const Json& t = target_named(r, "single-stream throughput, ambient vs no mesh");
  EXPECT_EQ(t.value("achieved", ""), "25 %");
  const std::string detail = t.value("detail", "");
  EXPECT_NE(detail.find("the machine was 95 % busy through ambient and 90 % through no mesh "
                        "(steal 2.0 % and 0.0 %)"),
            std::string::npos)
      << detail;
  EXPECT_NE(detail.find("6.33 vCPU-s through ambient, of which 4.00 in its 2 proxy processes, "
                        "against 1.50 through no mesh (4.2x)"),
            std::string::npos)
      << detail;
}

TEST(MeshBenchAnalysis, AStreamWithoutCpuReadingsHasNoCost) {
  // results.json of earlier versions: throughput without cpu and bytes.
  Json r = results_with(run(1000, 4, Json::object(), nullptr));
  r["scenarios"][0]["throughput"] = {{"gbit_per_s", 10.0}};
  r["scenarios"][1]["throughput"] = {{"gbit_per_s", 2.5}};
  analyze(r);
  EXPECT_FALSE(r["scenarios"][1]["throughput"].contains("cost"));
  const std::string detail =
      target_named(r, "single-stream throughput, ambient vs no mesh").value("detail", "");
  EXPECT_EQ(detail, "2.50 vs 10.00 Gbit/s (iperf3, one stream)");
}

TEST(MeshBenchAnalysis, TheP99TargetSaysHowManyRequestsMeetALateWakeup) {
  Json r = results_with(latency_run(1, 300, 2000));
  r["scenarios"][0]["runs"] = Json::array({latency_run(1, 100, 200)});
  r["scenarios"][1]["proxies"] =
      Json::array({{{"process", "node-0.ztunnel"}}, {{"process", "node-1.ztunnel"}}});
  // Two probes: 40 of 20,000 wake-ups (0.2 %) more than 1 ms late, the longest 4.2 ms.
  r["machine"] = {
      {"wakeup_cost",
       Json::array({{{"when", "before"},
                     {"timer", {{"wakeups", 10000}, {"late_over_1ms", 15}, {"max_us", 4200}}}},
                    {{"when", "after"},
                     {"timer", {{"wakeups", 10000}, {"late_over_1ms", 25}, {"max_us", 3100}}}}})}};
  analyze(r);
  const Json& timer = r["machine"]["wakeup_cost_summary"]["timer"];
  EXPECT_DOUBLE_EQ(timer.value("late_fraction", 0.0), 0.002);
  EXPECT_DOUBLE_EQ(timer.value("max_us", 0.0), 4200);
  EXPECT_FALSE(timer.contains("late_over_200us")) << "these probes did not count them";
  EXPECT_DOUBLE_EQ(r["machine"]["wakeup_cost"][0]["summary"]["timer"]["late_fraction"], 0.0015);
  const std::string detail = target_named(r, "ambient p99 added at 1,000 rps").value("detail", "");
  // Two proxies: 2 x 3 + 1 = 7 wake-ups per request, 1 - 0.998^7 = 1.4 %; no mesh 3, 0.6 %.
  EXPECT_NE(detail.find("0.20 % of a sleeping thread's wake-ups came more than 1 ms late "
                        "(longest 4.2 ms"),
            std::string::npos)
      << detail;
  EXPECT_NE(detail.find("a request through ambient takes about 7 wake-ups"), std::string::npos)
      << detail;
  EXPECT_NE(detail.find("no mesh 3), so if late wake-ups struck independently about 1.4 % of "
                        "its requests would meet one (above the 1 % a p99 sees) against 0.6 % of "
                        "no mesh's (below)"),
            std::string::npos)
      << detail;
}

TEST(MeshBenchAnalysis, WithoutATimerProbeTheP99TargetSaysNothingOfIt) {
  Json r = results_with(latency_run(1, 300, 2000));
  r["scenarios"][0]["runs"] = Json::array({latency_run(1, 100, 200)});
  r["machine"] = {{"wakeup_cost", Json::array({{{"when", "before"}}})}};
  analyze(r);
  EXPECT_FALSE(r["machine"]["wakeup_cost_summary"].contains("timer"));
  const std::string detail = target_named(r, "ambient p99 added at 1,000 rps").value("detail", "");
  EXPECT_EQ(detail.find("sleeping thread"), std::string::npos) << detail;
}

}  // namespace
}  // namespace zt::bench::mesh
