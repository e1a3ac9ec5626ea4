#include "bench/mesh/runner/analysis.h"

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <limits>
#include <map>
#include <optional>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "bench/mesh/runner/stats.h"

namespace zt::bench::mesh {
using Json = nlohmann::json;

namespace {

double num(const Json& j, const char* key, double fallback = 0) {
  if (!j.is_object() || !j.contains(key) || !j[key].is_number()) return fallback;
  return j[key].get<double>();
}

Json spread_json(const std::vector<double>& v) {
  auto s = spread_of(v);
  return {{"median", s.median}, {"min", s.min}, {"max", s.max}};
}

Json summarize_point(const std::vector<const Json*>& runs) {
  Json pt = Json::object();
  std::vector<const Json*> ok;
  Json failures = Json::array();
  for (const Json* r : runs) {
    if (r->value("ok", false)) {
      ok.push_back(r);
    } else {
      failures.push_back(r->value("error", "failed"));
    }
  }
  pt["runs"] = runs.size();
  pt["ok_runs"] = ok.size();
  pt["failures"] = failures;
  if (ok.empty()) return pt;
  std::vector<double> p99s;
  for (const Json* r : ok) p99s.push_back(num((*r)["latency_us"], "p99"));
  const auto kept_idx = kept_runs(p99s);
  std::vector<const Json*> kept;
  Json kept_repeats = Json::array();
  for (size_t i : kept_idx) {
    kept.push_back(ok[i]);
    kept_repeats.push_back((*ok[i])["repeat"]);
  }
  pt["kept_repeats"] = kept_repeats;
  auto collect = [&](auto&& f) {
    std::vector<double> v;
    for (const Json* r : kept) {
      if (auto x = f(*r)) v.push_back(*x);
    }
    return v;
  };
  Json lat = Json::object();
  for (const char* p : kPercentiles) {
    lat[p] = spread_json(
        collect([&](const Json& r) -> std::optional<double> { return num(r["latency_us"], p); }));
  }
  pt["latency_us"] = lat;
  pt["completed"] =
      median(collect([](const Json& r) -> std::optional<double> { return num(r, "completed"); }));
  pt["achieved_rps"] = median(
      collect([](const Json& r) -> std::optional<double> { return num(r, "achieved_rps"); }));
  double errors = 0, late = 0;
  for (const Json* r : kept) {
    errors += num(*r, "errors");
    late = std::max(late, num(*r, "late_over_1ms"));
  }
  pt["request_errors"] = errors;
  pt["late_over_1ms_max"] = late;
  // The largest share of the machine's time the hypervisor took (steal) in a kept run's window.
  // Results of versions that did not read steal have none.
  std::optional<double> steal;
  for (const Json* r : kept) {
    const Json m = r->value("machine_cpu_s", Json::object());
    if (!m.contains("steal") || num(m, "total") <= 0) continue;
    steal = std::max(steal.value_or(0.0), num(m, "steal") / num(m, "total"));
  }
  if (steal) pt["steal_fraction_max"] = *steal;
  const double completed = pt["completed"].get<double>();
  pt["late_fraction"] = completed > 0 ? late / completed : 0.0;

  // CPU seconds per 1,000 completed requests, over the measurement window.
  std::map<std::string, std::vector<double>> per_proxy;
  // Where it went: user and kernel time per 1,000 requests, context switches per request.
  std::map<std::string, std::vector<double>> user, kernel, switches;
  std::vector<double> total, machine, softirq, vcpu, cluster, cluster_user, cluster_kernel;
  for (const Json* r : kept) {
    const double completed = num(*r, "completed");
    if (completed <= 0 || !r->contains("cpu_s")) continue;
    double sum = 0;
    for (const auto& [name, v] : (*r)["cpu_s"].items()) {
      per_proxy[name].push_back(v.get<double>() / completed * 1000);
      sum += v.get<double>();
    }
    const Json split = r->value("cpu_split", Json::object());
    for (const auto& [name, v] : split.items()) {
      user[name].push_back(num(v, "user_s") / completed * 1000);
      kernel[name].push_back(num(v, "system_s") / completed * 1000);
      switches[name].push_back(num(v, "switches") / completed);
    }
    if (r->contains("cluster_cpu_split")) {
      cluster_user.push_back(num((*r)["cluster_cpu_split"], "user_s") / completed * 1000);
      cluster_kernel.push_back(num((*r)["cluster_cpu_split"], "system_s") / completed * 1000);
    }
    total.push_back(sum / completed * 1000);
    const double window = num(*r, "window_s");
    if (window > 0) vcpu.push_back(sum / window);
    if (r->contains("cluster_cpu_s"))
      cluster.push_back(num(*r, "cluster_cpu_s") / completed * 1000);
    if (r->contains("machine_cpu_s")) {
      machine.push_back(num((*r)["machine_cpu_s"], "busy") / completed * 1000);
      softirq.push_back(num((*r)["machine_cpu_s"], "softirq") / completed * 1000);
    }
  }
  Json cpu = Json::object();
  Json proxies = Json::object();
  for (const auto& [name, v] : per_proxy) proxies[name] = median(v);
  cpu["proxies"] = proxies;
  if (!total.empty()) cpu["total"] = median(total);
  if (!vcpu.empty()) cpu["proxies_vcpu"] = median(vcpu);
  if (!machine.empty()) cpu["machine"] = median(machine);
  if (!cluster.empty()) cpu["cluster"] = median(cluster);
  if (!softirq.empty()) cpu["machine_softirq"] = median(softirq);
  if (!user.empty()) {
    Json u = Json::object(), k = Json::object(), sw = Json::object();
    for (const auto& [name, v] : user) u[name] = median(v);
    for (const auto& [name, v] : kernel) k[name] = median(v);
    for (const auto& [name, v] : switches) sw[name] = median(v);
    cpu["proxies_user"] = u;
    cpu["proxies_kernel"] = k;
    cpu["switches_per_request"] = sw;
  }
  if (!cluster_user.empty()) {
    cpu["cluster_user"] = median(cluster_user);
    cpu["cluster_kernel"] = median(cluster_kernel);
  }
  pt["cpu_per_1000"] = cpu;

  Json rss = Json::object();
  for (const Json* r : kept) {
    for (const char* when : {"rss_under_load_bytes", "rss_bytes"}) {
      const Json run_rss = r->value(when, Json::object());
      for (const auto& [name, v] : run_rss.items()) {
        rss[name] = std::max(num(rss, name.c_str()), v.get<double>());
      }
    }
  }
  pt["rss_bytes_max"] = rss;
  return pt;
}

// The scenario's summary at (rate, connections), or nullptr.
const Json* point_of(const Json& scenario, double rate, int conns) {
  if (!scenario.contains("points")) return nullptr;
  for (const auto& p : scenario["points"]) {
    if (num(p, "rate") == rate && static_cast<int>(num(p, "connections")) == conns &&
        p.value("ok_runs", 0) > 0) {
      return &p;
    }
  }
  return nullptr;
}

const Json* scenario_named(const Json& results, const std::string& name) {
  for (const auto& s : results["scenarios"]) {
    if (s.value("name", "") == name) return &s;
  }
  return nullptr;
}

bool scenario_ok(const Json* s) { return s && s->value("status", "") == "ok"; }

std::string why_missing(const Json* s, const std::string& name) {
  if (!s) return fmt::format("scenario {} not run", name);
  if (!scenario_ok(s)) return fmt::format("scenario {} failed: {}", name, s->value("error", ""));
  return fmt::format("scenario {} has no measurement here", name);
}

std::string rate_note(double rate) {
  return rate == 1000 ? "" : fmt::format(" (1,000 rps not measured; nearest rate {:.0f})", rate);
}

// A caution when the no-mesh baseline could not keep its schedule at these points (more than 5 %
// of its sends over 1 ms late): the machine was busy and latency differences are mostly noise.
std::string noise_note(const Json* nomesh, const std::vector<std::pair<double, int>>& points) {
  if (!nomesh) return "";
  double worst = 0;
  for (const auto& [rate, conns] : points) {
    if (const Json* p = point_of(*nomesh, rate, conns))
      worst = std::max(worst, num(*p, "late_fraction"));
  }
  if (worst <= 0.05) return "";
  return fmt::format(
      "; caution: no mesh itself sent {:.0f} % of its requests more than 1 ms late "
      "at these points (a busy machine), so these latency differences are mostly "
      "noise",
      worst * 100);
}

// Above this share of the machine's time taken by the hypervisor (steal) in a kept run's window,
// a point's tail latencies are flagged: a vCPU that is not running stalls everything queued on it.
constexpr double kStealWorthNoting = 0.01;

// The largest steal share of the kept runs of these points (steal_fraction_max), nullopt when
// none of them has one.
std::optional<double> steal_at(std::initializer_list<const Json*> points) {
  std::optional<double> worst;
  for (const Json* p : points) {
    if (p && p->contains("steal_fraction_max")) {
      worst = std::max(worst.value_or(0.0), num(*p, "steal_fraction_max"));
    }
  }
  return worst;
}

bool steal_worth_noting(std::optional<double> steal) { return steal && *steal > kStealWorthNoting; }

// What the single stream cost (throughput.cpu and throughput.bytes, as the runner records them):
// the machine's busy share of its time and the hypervisor's (steal), and vCPU-seconds per GB
// (10^9 bytes received) of the whole machine, of the cluster's cgroup tree and of the proxies.
// nullopt for results without those readings.
std::optional<Json> stream_cost(const Json& throughput) {
  if (!throughput.is_object() || !throughput.contains("cpu")) return std::nullopt;
  const double gb = num(throughput, "bytes") / 1e9;
  const Json& cpu = throughput["cpu"];
  const Json machine = cpu.value("machine_cpu_s", Json::object());
  if (gb <= 0 || num(machine, "total") <= 0) return std::nullopt;
  Json c = {{"machine_busy_fraction", num(machine, "busy") / num(machine, "total")},
            {"steal_fraction", num(machine, "steal") / num(machine, "total")},
            {"machine_vcpu_s_per_gb", num(machine, "busy") / gb}};
  if (cpu.contains("cluster_cpu_s")) c["cluster_vcpu_s_per_gb"] = num(cpu, "cluster_cpu_s") / gb;
  const Json per_proxy = cpu.value("cpu_s", Json::object());
  if (!per_proxy.empty()) {  // no mesh has no proxy
    double proxies = 0;
    for (const auto& [name, v] : per_proxy.items()) {
      if (v.is_number()) proxies += v.get<double>();
    }
    c["proxies_vcpu_s_per_gb"] = proxies / gb;
  }
  return c;
}

// Whether two points' kept repeats overlap at percentile `p` (latency_us.<p>.min..max): one's
// median above the other's then says little about which path is faster. nullopt when either
// point has fewer than two kept repeats (no spread to judge by) or no range.
std::optional<bool> ranges_overlap(const Json& a, const Json& b, const char* p) {
  for (const Json* x : {&a, &b}) {
    if (x->value("kept_repeats", Json::array()).size() < 2) return std::nullopt;
  }
  const Json la = a.value("latency_us", Json::object()).value(p, Json::object());
  const Json lb = b.value("latency_us", Json::object()).value(p, Json::object());
  if (!la.contains("min") || !la.contains("max") || !lb.contains("min") || !lb.contains("max")) {
    return std::nullopt;
  }
  return num(la, "min") <= num(lb, "max") && num(lb, "min") <= num(la, "max");
}

Json target(const std::string& name, const std::string& goal, const std::string& achieved,
            std::optional<bool> met, const std::string& detail) {
  return {{"name", name},
          {"target", goal},
          {"achieved", achieved},
          {"met", met ? Json(*met) : Json(nullptr)},
          {"detail", detail}};
}

double mb(double bytes) { return bytes / (1024.0 * 1024.0); }

// "; after the load runs: 3.6 MiB private (RssAnon), PSS 9.1 MiB" for node-0's ztunnel.
std::string memory_split_note(const Json& ambient) {
  if (!ambient.contains("memory") || !ambient["memory"].is_object()) return "";
  const Json split = ambient["memory"].value("proxy_memory", Json::object());
  if (!split.contains("node-0.ztunnel")) return "";
  const Json& m = split["node-0.ztunnel"];
  return fmt::format(
      "; after the load runs {:.1f} MiB of it was private (RssAnon), the rest resident pages of "
      "shared libraries; PSS {:.1f} MiB",
      mb(num(m, "anon_bytes")), mb(num(m, "pss_bytes")));
}

// CPU per wake-up and wall time per round trip (median, min, max) over every repeat of the given
// wake-up cost measurements (results.json machine.wakeup_cost), by placement: "scheduler" (where
// the scheduler placed the two processes) and "one_cpu" (both pinned to one CPU).
Json summarize_wakeup_cost(const Json& measurements) {
  Json out = Json::object();
  if (!measurements.is_array()) return out;
  for (const char* placement : {"scheduler", "one_cpu"}) {
    std::vector<double> cpu_us, wall_us;
    for (const auto& m : measurements) {
      if (!m.is_object() || !m.contains(placement) || !m[placement].is_array()) continue;
      for (const auto& r : m[placement]) {
        cpu_us.push_back(num(r, "cpu_us_per_wakeup"));
        wall_us.push_back(num(r, "wall_us_per_round_trip"));
      }
    }
    if (cpu_us.empty()) continue;
    out[placement] = {{"cpu_us_per_wakeup", spread_json(cpu_us)},
                      {"wall_us_per_round_trip", spread_json(wall_us)},
                      {"repeats", cpu_us.size()}};
  }
  // The timer probe's wake-ups, all measurements together.
  double wakeups = 0, late = 0, late_200us = 0, longest = 0;
  bool counted_200us = true;  // the probe's first version did not count them
  for (const auto& m : measurements) {
    if (!m.is_object() || !m.contains("timer")) continue;
    wakeups += num(m["timer"], "wakeups");
    late += num(m["timer"], "late_over_1ms");
    late_200us += num(m["timer"], "late_over_200us");
    counted_200us = counted_200us && m["timer"].contains("late_over_200us");
    longest = std::max(longest, num(m["timer"], "max_us"));
  }
  if (wakeups > 0) {
    out["timer"] = {{"wakeups", wakeups},
                    {"late_over_1ms", late},
                    {"late_fraction", late / wakeups},
                    {"max_us", longest}};
    if (counted_200us) out["timer"]["late_over_200us"] = late_200us;
  }
  return out;
}

// A rough scale for the p99 added over no mesh, from the timer probe: "; on this machine 0.12 %
// of a sleeping thread's wake-ups came more than 1 ms late ...". Along a request's path the
// client is woken by its send timer and then by the response, each proxy once each way and the
// app once: 2 x (proxies + 1) + 1 wake-ups (no mesh: 3). If a share q of wake-ups comes late,
// and late ones strike independently, 1 - (1 - q)^k of the requests meet at least one; where
// that is above 1 %, such a delay reaches the p99. Delays that come in bursts (a stall of the
// whole VM) hit fewer requests, each harder: a rough scale, not a prediction. Empty without the
// probe.
std::string timer_note(const Json& results, const Json* meshed, const std::string& name) {
  const Json summary =
      results.value("machine", Json::object()).value("wakeup_cost_summary", Json::object());
  if (!meshed || !summary.contains("timer")) return "";
  const Json& t = summary["timer"];
  const double q = num(t, "late_fraction");
  const double proxies = static_cast<double>(meshed->value("proxies", Json::array()).size());
  const double k = 2 * (proxies + 1) + 1, k0 = 3;
  const double share = 1 - std::pow(1 - q, k), share0 = 1 - std::pow(1 - q, k0);
  auto reaches = [](double x) { return x > 0.01 ? "above" : "below"; };
  return fmt::format(
      "; on this machine {:.2f} % of a sleeping thread's wake-ups came more than 1 ms late "
      "(longest {:.1f} ms; section \"What a wake-up costs on this machine\"); a request through "
      "{} takes about {:.0f} wake-ups (the client's 2, each proxy's 2 and the app's 1; no mesh "
      "{:.0f}), so if late wake-ups struck independently about {:.1f} % of its requests would "
      "meet one ({} the 1 % a p99 sees) against {:.1f} % of no mesh's ({}): a rough scale",
      q * 100, num(t, "max_us") / 1000, name, k, k0, share * 100, reaches(share), share0 * 100,
      reaches(share0));
}

// A rough scale for `switches` context switches per request (all the proxies of a point
// together), whose CPU per 1,000 requests is `cpu`, at the machine's CPU per wake-up, e.g. "; at
// the 17.1 us of CPU per wake-up this machine charged two idle processes ... 5.4 switches per
// request in all would come to about 0.092 vCPU-s per 1,000 requests, 37 % of that CPU (0.015 at
// the one-CPU cost)". Not a bound: the probe's processes are idle and woken by a pipe, the
// proxies by packets under load, and the switch counts include preemptions. Empty without a
// summary.
std::string wakeup_note(const Json& results, double switches, double cpu) {
  const Json summary =
      results.value("machine", Json::object()).value("wakeup_cost_summary", Json::object());
  if (switches <= 0 || !summary.contains("scheduler")) return "";
  const double free_us = summary["scheduler"]["cpu_us_per_wakeup"]["median"].get<double>();
  std::string note = fmt::format(
      "; at the {:.1f} us of CPU per wake-up this machine charged two idle processes where the "
      "scheduler placed them",
      free_us);
  std::string one_cpu;
  note += " (";
  if (summary.contains("one_cpu")) {
    const double one_us = summary["one_cpu"]["cpu_us_per_wakeup"]["median"].get<double>();
    note += fmt::format("{:.1f} us with both on one CPU; ", one_us);
    one_cpu = fmt::format(" ({:.3f} at the one-CPU cost)", switches * one_us / 1000);
  }
  // switches/request x us/switch = us per request; x 1,000 requests / 1e6 = vCPU-s per 1,000.
  const double scale = switches * free_us / 1000;
  note += fmt::format(
      "section \"What a wake-up costs on this machine\"), {:.1f} switches per request in all "
      "would come to about {:.3f} vCPU-s per 1,000 requests",
      switches, scale);
  if (cpu > 0) note += fmt::format(", {:.0f} % of that CPU", 100 * scale / cpu);
  return note + one_cpu;
}

// The proxies' kernel share and context switches at a point, e.g. "; 71 % of it was kernel
// time ..., and each ztunnel was switched in 2.1 times per request", then what those switches
// come to at the machine's cost per wake-up (wakeup_note).
// `only`: that process alone, else every proxy of the point.
std::string kernel_note(const Json& results, const Json& point, const std::string& each,
                        const std::string& only = "") {
  const Json cpu = point.value("cpu_per_1000", Json::object());
  if (!cpu.contains("proxies_kernel") || !cpu.contains("proxies_user")) return "";
  double user = 0, kernel = 0, switches = 0;
  int n = 0;
  for (const auto& [name, v] : cpu["proxies_kernel"].items()) {
    if (!only.empty() && name != only) continue;
    kernel += v.get<double>();
    user += num(cpu["proxies_user"], name.c_str());
    switches += num(cpu.value("switches_per_request", Json::object()), name.c_str());
    ++n;
  }
  if (n == 0 || user + kernel <= 0) return "";
  return fmt::format(
             "; {:.0f} % of it was kernel time (system calls, the network stack, wake-ups) and "
             "each {} was switched in {:.1f} times per request (section \"Where the proxies' CPU "
             "goes\")",
             100 * kernel / (user + kernel), each, switches / n) +
         wakeup_note(results, switches, user + kernel);
}

// The memory curve's growth per pod between its first and last point, bytes.
std::optional<double> per_pod_slope(const Json& points) {
  if (!points.is_array() || points.size() < 2) return std::nullopt;
  const auto& a = points.front();
  const auto& b = points.back();
  const double dp = num(b, "pods") - num(a, "pods");
  if (dp <= 0) return std::nullopt;
  return (num(b, "rss_bytes") - num(a, "rss_bytes")) / dp;
}

Json compute_targets(const Json& results) {
  Json out = Json::array();
  const Json* ambient = scenario_named(results, "ambient");
  const Json* haproxy = scenario_named(results, "haproxy");
  const Json* sidecar = scenario_named(results, "sidecar");
  const Json* wp = scenario_named(results, "ambient-waypoint");
  const Json* nomesh = scenario_named(results, "no-mesh");
  const double r1000 = nearest_rate(results, 1000);
  std::vector<int> conns;
  for (const auto& c : results["options"]["connections"]) conns.push_back(c.get<int>());
  std::vector<double> rates;
  for (const auto& r : results["options"]["rates"]) rates.push_back(r.get<double>());

  // 1. ambient L4 CPU per 1,000 requests, both ztunnels.
  {
    double worst = -1;
    std::string where;
    int worst_conns = 0;
    const Json* worst_point = nullptr;
    for (int c : conns) {
      const Json* p = scenario_ok(ambient) ? point_of(*ambient, r1000, c) : nullptr;
      if (!p || !p->contains("cpu_per_1000") || !(*p)["cpu_per_1000"].contains("total")) continue;
      double v = (*p)["cpu_per_1000"]["total"].get<double>();
      if (v > worst) {
        worst = v;
        worst_conns = c;
        worst_point = p;
        where = fmt::format("{:.0f} rps x {} conn", r1000, c);
      }
    }
    if (worst < 0) {
      out.push_back(target("ambient L4 CPU per 1,000 requests (both ztunnels)", "<= 0.10 vCPU-s",
                           "not measured", std::nullopt, why_missing(ambient, "ambient")));
    } else {
      // For scale on this machine: what the no-mesh run's processes cost per request at the same
      // point (loadgen and the server app are woken once per request and response each, as
      // each ztunnel is).
      std::string scale;
      const Json* base = scenario_ok(nomesh) ? point_of(*nomesh, r1000, worst_conns) : nullptr;
      if (base && base->contains("cpu_per_1000") && (*base)["cpu_per_1000"].contains("cluster")) {
        const Json& bc = (*base)["cpu_per_1000"];
        scale = fmt::format(
            "; for scale, the whole no-mesh cluster (loadgen, the server app, the idle daemons) "
            "used {:.3f} at the same point",
            bc["cluster"].get<double>());
        const double bu = num(bc, "cluster_user"), bk = num(bc, "cluster_kernel");
        if (bu + bk > 0) scale += fmt::format(", {:.0f} % of it kernel time", 100 * bk / (bu + bk));
      }
      out.push_back(target("ambient L4 CPU per 1,000 requests (both ztunnels)", "<= 0.10 vCPU-s",
                           fmt::format("{:.3f} vCPU-s", worst), worst <= 0.10,
                           "worst over connection counts, at " + where + rate_note(r1000) +
                               kernel_note(results, *worst_point, "ztunnel") + scale));
    }
  }
  // 2. ambient CPU <= half of HAProxy's, at every point.
  {
    double worst = -1;
    std::string where;
    int n = 0;
    for (double r : rates) {
      for (int c : conns) {
        const Json* a = scenario_ok(ambient) ? point_of(*ambient, r, c) : nullptr;
        const Json* h = scenario_ok(haproxy) ? point_of(*haproxy, r, c) : nullptr;
        if (!a || !h) continue;
        const double av = num((*a)["cpu_per_1000"], "total", -1);
        const double hv = num((*h)["cpu_per_1000"], "total", -1);
        if (av < 0 || hv <= 0) continue;
        ++n;
        if (av / hv > worst) {
          worst = av / hv;
          where = fmt::format("{:.0f} rps x {} conn: {:.3f} vs {:.3f}", r, c, av, hv);
        }
      }
    }
    if (n == 0) {
      out.push_back(target("ambient L4 CPU vs HAProxy sidecars", "<= 0.50 x HAProxy",
                           "not measured", std::nullopt,
                           scenario_ok(ambient) ? why_missing(haproxy, "haproxy")
                                                : why_missing(ambient, "ambient")));
    } else {
      out.push_back(target("ambient L4 CPU vs HAProxy sidecars", "<= 0.50 x HAProxy",
                           fmt::format("{:.2f} x", worst), worst <= 0.5,
                           fmt::format("worst of {} points, {}", n, where)));
    }
  }
  // 3./4. ambient added latency below the sidecar mode and HAProxy at every point (p50 and p99).
  for (const auto& [other, other_name] :
       {std::pair{sidecar, std::string("sidecar")}, std::pair{haproxy, std::string("haproxy")}}) {
    int n = 0, p50_wins = 0, p99_wins = 0, lost = 0, lost_in_spread = 0, lost_unjudged = 0;
    int lost_with_steal = 0;
    std::string losses;
    for (double r : rates) {
      for (int c : conns) {
        const Json* a = scenario_ok(ambient) ? point_of(*ambient, r, c) : nullptr;
        const Json* o = scenario_ok(other) ? point_of(*other, r, c) : nullptr;
        if (!a || !o || !a->contains("added_us") || !o->contains("added_us")) continue;
        ++n;
        for (const char* p : {"p50", "p99"}) {
          const double av = num((*a)["added_us"], p), ov = num((*o)["added_us"], p);
          if (av < ov) {
            if (std::string_view(p) == "p50") {
              ++p50_wins;
            } else {
              ++p99_wins;
            }
            continue;
          }
          ++lost;
          const std::optional<bool> overlap = ranges_overlap(*a, *o, p);
          if (!overlap) ++lost_unjudged;
          if (overlap && *overlap) ++lost_in_spread;
          const std::optional<double> steal =
              steal_at({a, o, scenario_ok(nomesh) ? point_of(*nomesh, r, c) : nullptr});
          std::string why;
          if (overlap && *overlap) why = "within the spread";
          if (steal_worth_noting(steal)) {
            ++lost_with_steal;
            why += fmt::format("{}steal {:.1f} %", why.empty() ? "" : ", ", *steal * 100);
          }
          losses += fmt::format("; {:.0f}x{} {} {:+.0f} vs {:+.0f} us{}", r, c, p, av, ov,
                                why.empty() ? "" : " (" + why + ")");
        }
      }
    }
    std::vector<std::pair<double, int>> all_points;
    for (double r : rates) {
      for (int c : conns) all_points.emplace_back(r, c);
    }
    const std::string name = "ambient added latency below " + other_name + " at every rate";
    if (n == 0) {
      out.push_back(target(
          name, "every point, p50 and p99", "not measured", std::nullopt,
          scenario_ok(ambient) ? why_missing(other, other_name) : why_missing(ambient, "ambient")));
    } else {
      std::string spread;
      if (const int judged = lost - lost_unjudged; judged > 0) {
        spread = fmt::format(
            "; {} of {} {} are within the spread of the kept repeats (the two scenarios' min-max "
            "ranges overlap), so this run does not tell those points apart",
            lost_in_spread, judged == lost ? "these" : "the",
            judged == lost
                ? fmt::format("{}", lost)
                : fmt::format("{} losses at points with two or more kept repeats", judged));
      }
      if (lost_unjudged > 0) {
        spread += fmt::format(
            "; {} of the losses {} at points with a single kept repeat, which "
            "have no spread to judge by",
            lost_unjudged, lost_unjudged == 1 ? "is" : "are");
      }
      if (lost_with_steal > 0) {
        spread += fmt::format(
            "; at {} of the {} losses the hypervisor took more than {:.0f} % of the machine's "
            "time (steal) during a kept run of ambient, {} or no mesh: a vCPU that is not "
            "running stalls every request queued on it, so those points may say more about the "
            "host than about the paths",
            lost_with_steal, lost, kStealWorthNoting * 100, other_name);
      }
      out.push_back(target(name, "every point, p50 and p99",
                           fmt::format("p50 {}/{}, p99 {}/{} points", p50_wins, n, p99_wins, n),
                           p50_wins == n && p99_wins == n,
                           (losses.empty() ? "below at every point" : "not below" + losses) +
                               spread + noise_note(nomesh, all_points)));
    }
  }
  // 5. p99 added <= 0.2 ms at 1,000 rps.
  {
    double worst = std::numeric_limits<double>::lowest();
    std::string where;
    std::optional<double> steal;
    for (int c : conns) {
      const Json* a = scenario_ok(ambient) ? point_of(*ambient, r1000, c) : nullptr;
      if (!a || !a->contains("added_us")) continue;
      const double v = num((*a)["added_us"], "p99");
      if (v > worst) {
        worst = v;
        where = fmt::format("{:.0f} rps x {} conn", r1000, c);
        steal = steal_at({a, scenario_ok(nomesh) ? point_of(*nomesh, r1000, c) : nullptr});
      }
    }
    if (where.empty()) {
      out.push_back(target(
          "ambient p99 added at 1,000 rps", "<= 200 us", "not measured", std::nullopt,
          scenario_ok(nomesh) ? why_missing(ambient, "ambient") : why_missing(nomesh, "no-mesh")));
    } else {
      std::vector<std::pair<double, int>> pts;
      for (int c : conns) pts.emplace_back(r1000, c);
      out.push_back(target("ambient p99 added at 1,000 rps", "<= 200 us",
                           fmt::format("{:+.0f} us", worst), worst <= 200,
                           "worst over connection counts, at " + where + rate_note(r1000) +
                               (steal_worth_noting(steal)
                                    ? fmt::format("; the hypervisor took {:.1f} % of the "
                                                  "machine's time (steal) during a kept run of "
                                                  "ambient or no mesh there",
                                                  *steal * 100)
                                    : std::string()) +
                               timer_note(results, ambient, "ambient") + noise_note(nomesh, pts)));
    }
  }
  // 6. node-0 ztunnel RSS at 1,000 rps serving 10 pods.
  {
    double worst = -1;
    for (int c : conns) {
      const Json* a = scenario_ok(ambient) ? point_of(*ambient, r1000, c) : nullptr;
      if (!a) continue;
      worst = std::max(worst, num((*a)["rss_bytes_max"], "node-0.ztunnel", -1));
    }
    const int pods = results.value("node0_pods_served_during_load", -1);
    if (worst < 0) {
      out.push_back(target("ztunnel RSS at 1,000 rps serving 10 pods", "<= 12 MB", "not measured",
                           std::nullopt, why_missing(ambient, "ambient")));
    } else {
      out.push_back(target(
          "ztunnel RSS at 1,000 rps serving 10 pods", "<= 12 MB",
          fmt::format("{:.1f} MiB", mb(worst)), worst <= 12.0 * 1024 * 1024,
          fmt::format(
              "node-0's ztunnel, largest VmRSS under load or after the {:.0f} rps runs, serving {} "
              "pods{}{}; 12 MB is read as 12 MiB (12,582,912 bytes), {:.1f} million "
              "bytes here{}",
              r1000, pods, rate_note(r1000), memory_split_note(*ambient), worst / 1e6,
              worst <= 12e6 ? ", so under 12 MB read as 12,000,000 bytes too"
                            : ", over 12 MB read as 12,000,000 bytes")));
    }
  }
  // 7. flat memory vs pods while the sidecar's grows.
  {
    const Json& curves = results["memory_vs_pods"];
    auto a = per_pod_slope(curves["ambient"]["points"]);
    auto s = per_pod_slope(curves["sidecar"]["points"]);
    const std::string name = "ztunnel memory flat from 1 to N pods (sidecars grow per pod)";
    const std::string goal = "ambient growth per pod <= 10 % of the sidecar's";
    if (!a || !s) {
      std::string why;
      for (const char* k : {"ambient", "sidecar"}) {
        if (!curves[k]["error"].is_null()) {
          why += fmt::format("{} curve failed: {}; ", k, curves[k]["error"].get<std::string>());
        }
      }
      out.push_back(target(name, goal, "not measured", std::nullopt,
                           why.empty() ? "fewer than two pod counts" : why));
    } else {
      const auto& ap = curves["ambient"]["points"];
      const auto& sp = curves["sidecar"]["points"];
      out.push_back(target(
          name, goal,
          fmt::format("ambient {:+.0f} KiB/pod, sidecar {:+.0f} KiB/pod", *a / 1024, *s / 1024),
          *s > 0 && *a <= 0.1 * *s,
          fmt::format(
              "ztunnel {:.1f} -> {:.1f} MiB for {} -> {} pods; sidecars {:.1f} -> {:.1f} MiB",
              mb(num(ap.front(), "rss_bytes")), mb(num(ap.back(), "rss_bytes")),
              num(ap.front(), "pods"), num(ap.back(), "pods"), mb(num(sp.front(), "rss_bytes")),
              mb(num(sp.back(), "rss_bytes")))));
    }
  }
  // 8. single-stream throughput.
  {
    const bool have = scenario_ok(ambient) && scenario_ok(nomesh) &&
                      (*ambient)["throughput"].contains("ratio_vs_no_mesh");
    if (!have) {
      std::string why = !scenario_ok(ambient)  ? why_missing(ambient, "ambient")
                        : !scenario_ok(nomesh) ? why_missing(nomesh, "no-mesh")
                                               : "";
      for (const Json* s : {ambient, nomesh}) {
        if (s && s->contains("throughput") && (*s)["throughput"].contains("error")) {
          why += fmt::format("{}: {}; ", s->value("name", ""),
                             (*s)["throughput"]["error"].get<std::string>());
        }
      }
      out.push_back(target("single-stream throughput, ambient vs no mesh", ">= 50 %",
                           "not measured", std::nullopt, why));
    } else {
      const double ratio = (*ambient)["throughput"]["ratio_vs_no_mesh"].get<double>();
      std::string cost;
      const Json ac = (*ambient)["throughput"].value("cost", Json::object());
      const Json nc = (*nomesh)["throughput"].value("cost", Json::object());
      if (ac.contains("machine_vcpu_s_per_gb") && num(nc, "machine_vcpu_s_per_gb") > 0) {
        // Where a stream keeps the machine's vCPUs busy, its rate follows what each byte costs;
        // the busy shares say how close each stream came to that.
        const Json proxy_cpu =
            (*ambient)["throughput"].value("cpu", Json::object()).value("cpu_s", Json::object());
        const std::string in_proxies =
            ac.contains("proxies_vcpu_s_per_gb")
                ? fmt::format(", of which {:.2f} in its {} proxy processes",
                              num(ac, "proxies_vcpu_s_per_gb"), proxy_cpu.size())
                : std::string();
        cost = fmt::format(
            "; around the streams the machine was {:.0f} % busy through ambient and {:.0f} % "
            "through no mesh (steal {:.1f} % and {:.1f} %), and each GB cost the whole machine "
            "{:.2f} vCPU-s through ambient{}, against {:.2f} through no mesh ({:.1f}x)",
            num(ac, "machine_busy_fraction") * 100, num(nc, "machine_busy_fraction") * 100,
            num(ac, "steal_fraction") * 100, num(nc, "steal_fraction") * 100,
            num(ac, "machine_vcpu_s_per_gb"), in_proxies, num(nc, "machine_vcpu_s_per_gb"),
            num(ac, "machine_vcpu_s_per_gb") / num(nc, "machine_vcpu_s_per_gb"));
      }
      out.push_back(target("single-stream throughput, ambient vs no mesh", ">= 50 %",
                           fmt::format("{:.0f} %", ratio * 100), ratio >= 0.5,
                           fmt::format("{:.2f} vs {:.2f} Gbit/s (iperf3, one stream)",
                                       num((*ambient)["throughput"], "gbit_per_s"),
                                       num((*nomesh)["throughput"], "gbit_per_s")) +
                               cost));
    }
  }
  // 9./10. the waypoint (ambient-waypoint's).
  {
    std::string proc;
    if (scenario_ok(wp)) {
      for (const auto& p : (*wp)["proxies"]) {
        if (p.value("role", "") == "waypoint") proc = p.value("process", "");
      }
    }
    double cpu_worst = -1, rss_worst = -1;
    std::string where;
    const Json* cpu_worst_point = nullptr;
    for (int c : conns) {
      const Json* p = proc.empty() ? nullptr : point_of(*wp, r1000, c);
      if (!p) continue;
      const double v = num((*p)["cpu_per_1000"]["proxies"], proc.c_str(), -1);
      if (v > cpu_worst) {
        cpu_worst = v;
        cpu_worst_point = p;
        where = fmt::format("{:.0f} rps x {} conn", r1000, c);
      }
    }
    if (!proc.empty()) {
      for (const auto& pt : (*wp)["points"]) {
        if (pt.contains("rss_bytes_max")) {
          rss_worst = std::max(rss_worst, num(pt["rss_bytes_max"], proc.c_str(), -1));
        }
      }
    }
    if (cpu_worst < 0) {
      out.push_back(target("waypoint CPU per 1,000 requests", "<= 0.15 vCPU-s", "not measured",
                           std::nullopt, why_missing(wp, "ambient-waypoint")));
    } else {
      out.push_back(target("waypoint CPU per 1,000 requests", "<= 0.15 vCPU-s",
                           fmt::format("{:.3f} vCPU-s", cpu_worst), cpu_worst <= 0.15,
                           "ambient-waypoint's waypoint, worst over connection counts, at " +
                               where + rate_note(r1000) +
                               kernel_note(results, *cpu_worst_point, "waypoint", proc)));
    }
    if (rss_worst < 0) {
      out.push_back(target("waypoint RSS", "<= 30 MB", "not measured", std::nullopt,
                           why_missing(wp, "ambient-waypoint")));
    } else {
      out.push_back(
          target("waypoint RSS", "<= 30 MB", fmt::format("{:.1f} MiB", mb(rss_worst)),
                 rss_worst <= 30.0 * 1024 * 1024,
                 "ambient-waypoint's waypoint, largest VmRSS under load or after any load run"));
    }
  }
  return out;
}

}  // namespace

double nearest_rate(const Json& results, double want) {
  double best = std::numeric_limits<double>::quiet_NaN();
  for (const auto& r : results["options"]["rates"]) {
    double v = r.get<double>();
    if (std::isnan(best) || std::abs(v - want) < std::abs(best - want)) best = v;
  }
  return best;
}

void analyze(Json& results) {
  std::vector<double> rates;
  for (const auto& r : results["options"]["rates"]) rates.push_back(r.get<double>());
  std::vector<int> conns;
  for (const auto& c : results["options"]["connections"]) conns.push_back(c.get<int>());
  for (auto& s : results["scenarios"]) {
    Json points = Json::array();
    for (double r : rates) {
      for (int c : conns) {
        std::vector<const Json*> runs;
        for (const auto& run : s["runs"]) {
          if (num(run, "rate") == r && static_cast<int>(num(run, "connections")) == c) {
            runs.push_back(&run);
          }
        }
        if (runs.empty()) continue;
        Json pt = summarize_point(runs);
        pt["rate"] = r;
        pt["connections"] = c;
        points.push_back(std::move(pt));
      }
    }
    s["points"] = std::move(points);
  }
  for (auto& s : results["scenarios"]) {
    if (!s.contains("throughput")) continue;
    if (auto c = stream_cost(s["throughput"])) s["throughput"]["cost"] = std::move(*c);
  }
  // Added latency: same percentile, medians of the kept repeats, minus no mesh at the point.
  const Json* base = nullptr;
  for (const auto& s : results["scenarios"]) {
    if (s.value("name", "") == "no-mesh") base = &s;
  }
  for (auto& s : results["scenarios"]) {
    if (!base || &s == base) continue;
    for (auto& pt : s["points"]) {
      if (pt.value("ok_runs", 0) == 0) continue;
      const Json* b = point_of(*base, num(pt, "rate"), static_cast<int>(num(pt, "connections")));
      if (!b) continue;
      Json added = Json::object();
      for (const char* p : kPercentiles) {
        added[p] = pt["latency_us"][p]["median"].get<double>() -
                   (*b)["latency_us"][p]["median"].get<double>();
      }
      pt["added_us"] = added;
    }
    for (const char* key : {"throughput", "conn_rate"}) {
      const char* field = std::string(key) == "throughput" ? "gbit_per_s" : "achieved_rps";
      if (!s[key].is_object() || !(*base)[key].is_object()) continue;
      const double mine = num(s[key], field, -1), theirs = num((*base)[key], field, -1);
      if (mine >= 0 && theirs > 0) s[key]["ratio_vs_no_mesh"] = mine / theirs;
    }
  }
  auto& curves = results["memory_vs_pods"];
  for (const char* k : {"ambient", "sidecar"}) {
    if (!curves.contains(k)) continue;
    if (auto slope = per_pod_slope(curves[k]["points"])) curves[k]["bytes_per_pod"] = *slope;
  }
  if (results.contains("machine") && results["machine"].contains("wakeup_cost") &&
      results["machine"]["wakeup_cost"].is_array()) {
    auto& measurements = results["machine"]["wakeup_cost"];
    for (auto& m : measurements) {
      if (m.is_object()) m["summary"] = summarize_wakeup_cost(Json::array({m}));
    }
    results["machine"]["wakeup_cost_summary"] = summarize_wakeup_cost(measurements);
  }
  results["targets"] = compute_targets(results);
}

std::string targets_table_text(const Json& results) {
  std::string out = "Targets (issue 7), from this run:\n";
  size_t w = 6, wa = 8, wg = 4;
  for (const auto& t : results["targets"]) {
    w = std::max(w, t["name"].get<std::string>().size());
    wa = std::max(wa, t["achieved"].get<std::string>().size());
    wg = std::max(wg, t["target"].get<std::string>().size());
  }
  out += fmt::format("  {:<{}}  {:<{}}  {:<{}}  {}\n", "target", w, "achieved", wa, "target", wg,
                     "met");
  for (const auto& t : results["targets"]) {
    const std::string met = t["met"].is_null() ? "n/a" : (t["met"].get<bool>() ? "yes" : "NO");
    out +=
        fmt::format("  {:<{}}  {:<{}}  {:<{}}  {}\n", t["name"].get<std::string>(), w,
                    t["achieved"].get<std::string>(), wa, t["target"].get<std::string>(), wg, met);
  }
  return out;
}

}  // namespace zt::bench::mesh
