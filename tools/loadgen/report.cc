#include "tools/loadgen/report.h"

#include <algorithm>

#include <fmt/format.h>

namespace zt::loadgen {

namespace {

double seconds(std::chrono::nanoseconds d) { return static_cast<double>(d.count()) / 1e9; }

nlohmann::json percentiles(const Histogram& h) {
  return {{"count", h.count()},      {"min", h.min()},          {"p50", h.percentile(50)},
          {"p90", h.percentile(90)}, {"p99", h.percentile(99)}, {"p99.9", h.percentile(99.9)},
          {"max", h.max()},          {"mean", h.mean()}};
}

}  // namespace

double achieved_rps(const RunResult& r) {
  const double secs = std::max(r.completion_seconds, r.measured_seconds);
  return secs > 0 ? static_cast<double>(r.stats.completed) / secs : 0.0;
}

nlohmann::json config_json(const Config& c) {
  nlohmann::json headers = nlohmann::json::array();
  for (const auto& [k, v] : c.headers) headers.push_back(k + ": " + v);
  nlohmann::json j = {
      {"target",
       c.target.scheme + "://" + c.target.address.to_string() + (c.tcp_bulk ? "" : c.target.path)},
      {"mode", c.tcp_bulk ? "tcp-bulk" : std::string(to_string(c.mode))},
      {"connections", c.connections},
      {"threads", c.threads},
      {"rate", c.rate},
      {"open_loop", c.rate > 0},
      {"duration_s", seconds(c.duration)},
      {"warmup_s", seconds(c.warmup)},
      {"timeout_s", seconds(c.timeout)},
      {"socks5", c.socks5 ? nlohmann::json(c.socks5->to_string()) : nlohmann::json(nullptr)},
  };
  if (c.tcp_bulk) {
    j["direction"] = to_string(c.direction);
    j["chunk_size"] = c.chunk_size;
  } else {
    j["protocol"] = to_string(c.protocol);
    j["method"] = c.effective_method();
    j["body_size"] = c.body_size;
    j["headers"] = headers;
    if (c.protocol == Protocol::kHttp2) j["max_streams"] = c.max_streams;
  }
  return j;
}

nlohmann::json histogram_json(const Histogram& h) {
  nlohmann::json buckets = nlohmann::json::array();
  for (const auto& b : h.buckets()) buckets.push_back({b.low, b.high, b.count});
  return {{"unit", "us"},
          {"sub_buckets_per_octave", Histogram::kSubBuckets},
          {"max_relative_error", 1.0 / (2.0 * Histogram::kSubBuckets)},
          {"buckets", buckets}};
}

nlohmann::json report_json(const Config& c, const RunResult& r) {
  const Stats& s = r.stats;
  nlohmann::json j;
  j["tool"] = "loadgen";
  j["version"] = 1;
  j["started_at"] = r.started_at;
  j["config"] = config_json(c);
  j["duration_s"] = r.measured_seconds;
  j["wall_s"] = r.wall_seconds;
  j["loadgen_cpu_s"] = r.cpu_seconds;
  j["connections_opened"] = s.connections_opened;
  j["errors"] = {{"connect", s.errors.connect}, {"reset", s.errors.reset},
                 {"timeout", s.errors.timeout}, {"protocol", s.errors.protocol},
                 {"other", s.errors.other},     {"total", s.errors.total()}};
  if (c.tcp_bulk) {
    double secs = r.measured_seconds > 0 ? r.measured_seconds : 1;
    double sent = static_cast<double>(s.bytes_sent) * 8 / secs / 1e9;
    double recv = static_cast<double>(s.bytes_received) * 8 / secs / 1e9;
    j["tcp_bulk"] = {{"bytes_sent", s.bytes_sent},
                     {"bytes_received", s.bytes_received},
                     {"bytes_per_s_sent", static_cast<double>(s.bytes_sent) / secs},
                     {"bytes_per_s_received", static_cast<double>(s.bytes_received) / secs},
                     {"gbit_per_s_sent", sent},
                     {"gbit_per_s_received", recv},
                     {"gbit_per_s", sent + recv}};
    return j;
  }
  nlohmann::json status = nlohmann::json::object();
  for (const auto& [code, n] : s.status) status[std::to_string(code)] = n;
  j["requests"] = {{"scheduled", s.scheduled},
                   {"sent", s.sent},
                   {"completed", s.completed},
                   {"unsent", s.unsent},
                   {"errors", s.errors.total()}};
  j["target_rps"] = c.rate;
  j["achieved_rps"] = achieved_rps(r);
  j["completion_s"] = std::max(r.completion_seconds, r.measured_seconds);
  j["status"] = status;
  j["latency_us"] = percentiles(s.latency_us);
  j["latency_measured_from"] = c.rate > 0 ? "scheduled send time" : "actual send time";
  if (c.rate > 0) {
    nlohmann::json late = percentiles(s.late_us);
    late["over_1ms"] = s.late_over_1ms;
    j["late_send_us"] = late;
  }
  j["histogram"] = histogram_json(s.latency_us);
  return j;
}

std::string summary(const Config& c, const RunResult& r) {
  const Stats& s = r.stats;
  std::string out;
  if (c.tcp_bulk) {
    double secs = r.measured_seconds > 0 ? r.measured_seconds : 1;
    out += fmt::format("loadgen tcp-bulk {} streams={} direction={} duration={:.2f}s\n",
                       c.target.address.to_string(), c.connections, to_string(c.direction), secs);
    out += fmt::format("  sent {} bytes ({:.3f} Gbit/s), received {} bytes ({:.3f} Gbit/s)\n",
                       s.bytes_sent, static_cast<double>(s.bytes_sent) * 8 / secs / 1e9,
                       s.bytes_received, static_cast<double>(s.bytes_received) * 8 / secs / 1e9);
  } else {
    out += fmt::format("loadgen {} {} {} connections={} threads={} rate={} duration={:.2f}s\n",
                       to_string(c.protocol), to_string(c.mode), c.target.address.to_string(),
                       c.connections, c.threads,
                       c.rate > 0 ? fmt::format("{}/s", c.rate) : std::string("closed-loop"),
                       r.measured_seconds);
    out += fmt::format("  requests: scheduled {} sent {} completed {} unsent {} -> {:.1f} req/s\n",
                       s.scheduled, s.sent, s.completed, s.unsent, achieved_rps(r));
    const auto& h = s.latency_us;
    out += fmt::format("  latency us: p50 {} p90 {} p99 {} p99.9 {} max {} mean {:.1f}\n",
                       h.percentile(50), h.percentile(90), h.percentile(99), h.percentile(99.9),
                       h.max(), h.mean());
    if (c.rate > 0) {
      out += fmt::format("  late sends: p99 {} us, max {} us, {} over 1 ms\n",
                         s.late_us.percentile(99), s.late_us.max(), s.late_over_1ms);
    }
    std::string codes;
    for (const auto& [code, n] : s.status) codes += fmt::format(" {}={}", code, n);
    out += fmt::format("  status:{}\n", codes.empty() ? " none" : codes);
  }
  out += fmt::format(
      "  errors: connect {} reset {} timeout {} protocol {} other {}; connections "
      "opened {}\n",
      s.errors.connect, s.errors.reset, s.errors.timeout, s.errors.protocol, s.errors.other,
      s.connections_opened);
  return out;
}

}  // namespace zt::loadgen
