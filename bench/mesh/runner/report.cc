#include "bench/mesh/runner/report.h"

#include <cmath>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "bench/common/procfs.h"
#include "bench/mesh/runner/analysis.h"
#include "sim/host.h"

namespace zt::bench::mesh {
namespace fs = std::filesystem;
using Json = nlohmann::json;

namespace {

double num(const Json& j, const char* key, double fallback = std::nan("")) {
  if (!j.is_object() || !j.contains(key) || !j[key].is_number()) return fallback;
  return j[key].get<double>();
}

std::string str(const Json& j, const char* key) {
  if (!j.is_object() || !j.contains(key) || !j[key].is_string()) return "";
  return j[key].get<std::string>();
}

std::string fmt_us(double v) { return std::isnan(v) ? "–" : fmt::format("{:.0f}", v); }
std::string fmt_added(double v) { return std::isnan(v) ? "–" : fmt::format("{:+.0f}", v); }
std::string fmt_cpu(double v) { return std::isnan(v) ? "–" : fmt::format("{:.3f}", v); }
std::string fmt_mb(double bytes) {
  return std::isnan(bytes) ? "–" : fmt::format("{:.1f}", bytes / (1024.0 * 1024.0));
}
std::string fmt_gbit(double v) { return std::isnan(v) ? "–" : fmt::format("{:.2f}", v); }
std::string fmt_ratio(double v) { return std::isnan(v) ? "–" : fmt::format("{:.0f} %", v * 100); }

// Markdown table cells must not hold '|' or newlines.
std::string cell(std::string s) {
  for (char& c : s) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  std::string out;
  for (char c : s) {
    if (c == '|') {
      out += "\\|";
    } else {
      out += c;
    }
  }
  return out;
}

std::vector<double> rates_of(const Json& r) {
  std::vector<double> v;
  for (const auto& x : r["options"]["rates"]) v.push_back(x.get<double>());
  return v;
}

std::vector<int> conns_of(const Json& r) {
  std::vector<int> v;
  for (const auto& x : r["options"]["connections"]) v.push_back(x.get<int>());
  return v;
}

const Json* point_of(const Json& s, double rate, int conns) {
  if (!s.contains("points")) return nullptr;
  for (const auto& p : s["points"]) {
    if (num(p, "rate") == rate && static_cast<int>(num(p, "connections")) == conns) return &p;
  }
  return nullptr;
}

bool ok_point(const Json* p) { return p && p->value("ok_runs", 0) > 0; }

void machine_section(std::string& md, const Json& r) {
  const Json& m = r["machine"];
  const Json& b = r["build"];
  const Json& v = r["versions"];
  md += "## Machine, build and versions\n\n| | |\n|---|---|\n";
  md += fmt::format("| CPU | {} ({} logical cores) |\n", cell(str(m, "cpu_model")),
                    m.value("cores", 0));
  md += fmt::format("| Memory | {:.1f} GiB |\n",
                    num(m, "memory_total_bytes", 0) / (1024.0 * 1024 * 1024));
  md += fmt::format("| Kernel | {} |\n", cell(str(m, "kernel")));
  md += fmt::format("| OS | {} (debian_version {}) |\n", cell(str(m, "os")),
                    cell(str(m, "debian_version")));
  md += fmt::format("| Build type | {} |\n", cell(str(b, "build_type")));
  md += fmt::format("| Compiler | {} |\n", cell(str(b, "compiler")));
  md += fmt::format("| Source commit | {} |\n", cell(str(b, "source_commit")));
  md += fmt::format("| Binaries | {} |\n", cell(str(b, "bin_dir")));
  for (const char* tool : {"haproxy", "iperf3", "gnuplot", "curl"}) {
    md += fmt::format("| {} | {} |\n", tool, cell(str(v, tool)));
  }
  md += fmt::format("| Load average (1/5/15 min) at start / end | {} / {} |\n",
                    str(r, "load_average_start"), str(r, "load_average_end"));
  if (const Json st = m.value("steal_s", Json::object()); num(st, "total", 0) > 0) {
    md += fmt::format(
        "| Steal over the whole run (the hypervisor running something else while a vCPU had "
        "work) | {:.1f} % of the machine's time ({:.1f} vCPU-s) |\n",
        num(st, "steal", 0) / num(st, "total", 0) * 100, num(st, "steal", 0));
  }
  md += "\n";
}

void scenarios_section(std::string& md, const Json& r) {
  md += "## Scenarios\n\n| scenario | path | status | proxies measured (process: role) |\n";
  md += "|---|---|---|---|\n";
  for (const auto& s : r["scenarios"]) {
    std::string proxies;
    for (const auto& p : s["proxies"]) {
      proxies +=
          fmt::format("{}`{}`: {}", proxies.empty() ? "" : ", ", str(p, "process"), str(p, "role"));
    }
    std::string status = str(s, "status");
    if (status != "ok") status = "**FAILED**: " + str(s, "error");
    md += fmt::format("| {} | {} | {} | {} |\n", str(s, "name"), cell(str(s, "description")),
                      cell(status), proxies.empty() ? "none" : proxies);
  }
  md += "\n";
}

void targets_section(std::string& md, const Json& r) {
  md +=
      "## Targets (issue 7)\n\nAchieved values are from this run. \"n/a\": not measured in "
      "this run (the reason is in the last column).\n\n";
  md += "| target | achieved | goal | met | how |\n|---|---|---|---|---|\n";
  for (const auto& t : r["targets"]) {
    const std::string met = t["met"].is_null() ? "n/a" : (t["met"].get<bool>() ? "yes" : "**no**");
    md +=
        fmt::format("| {} | {} | {} | {} | {} |\n", cell(str(t, "name")), cell(str(t, "achieved")),
                    cell(str(t, "target")), met, cell(str(t, "detail")));
  }
  md += "\n";
}

void latency_section(std::string& md, const Json& r) {
  md += fmt::format(
      "## Latency (µs)\n\n{} KB requests (HTTP/1.1 POST, keep-alive), open loop at a fixed rate, "
      "latency from the scheduled send time. Each cell is the median of the kept repeats ({} "
      "repeat(s) per point; the worst p99 is dropped when there are more than 2); \"+\" columns "
      "are "
      "the latency added over no mesh at the same point (same percentile). \"late > 1 ms\": sends "
      "more than 1 ms behind schedule (client-side lateness, see tools/loadgen/README.md). "
      "\"steal\": the largest share of the machine's time the hypervisor took from this "
      "machine's vCPUs during a kept repeat's window (/proc/stat); a vCPU that is not running "
      "stalls every request queued on it, so where it is above 1 % the tails may say more about "
      "the host than about the path.\n\n",
      num(r["options"], "body_bytes", 0) / 1024, r["options"].value("repeats", 1));
  for (double rate : rates_of(r)) {
    for (int c : conns_of(r)) {
      md += fmt::format("### {:.0f} requests/s over {} connection(s)\n\n", rate, c);
      md +=
          "| scenario | completed | p50 | p90 | p99 | p99.9 | max | +p50 | +p90 | +p99 | +p99.9 | "
          "p99 spread (min–max) | late > 1 ms | steal | errors |\n";
      md += "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
      for (const auto& s : r["scenarios"]) {
        const Json* p = point_of(s, rate, c);
        if (!ok_point(p)) {
          std::string why = str(s, "status") != "ok" ? "scenario failed to start"
                            : p && !(*p)["failures"].empty()
                                ? "failed: " + (*p)["failures"][0].get<std::string>()
                                : "not run";
          md += fmt::format("| {} | {} ||||||||||||||\n", str(s, "name"), cell(why));
          continue;
        }
        const Json& l = (*p)["latency_us"];
        const Json added = p->value("added_us", Json::object());
        auto med = [&](const char* k) { return num(l[k], "median"); };
        md += fmt::format(
            "| {} | {:.0f} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {}–{} | {:.0f} "
            "| {} | {:.0f} |\n",
            str(s, "name"), num(*p, "completed", 0), fmt_us(med("p50")), fmt_us(med("p90")),
            fmt_us(med("p99")), fmt_us(med("p99.9")), fmt_us(med("max")),
            fmt_added(num(added, "p50")), fmt_added(num(added, "p90")),
            fmt_added(num(added, "p99")), fmt_added(num(added, "p99.9")),
            fmt_us(num(l["p99"], "min")), fmt_us(num(l["p99"], "max")),
            num(*p, "late_over_1ms_max", 0),
            p->contains("steal_fraction_max")
                ? fmt::format("{:.1f} %", num(*p, "steal_fraction_max", 0) * 100)
                : "–",
            num(*p, "request_errors", 0));
      }
      for (const auto& s : r["scenarios"]) {
        const Json* p = point_of(s, rate, c);
        if (str(s, "name") == "no-mesh" && ok_point(p) && num(*p, "late_fraction", 0) > 0.05) {
          md += fmt::format(
              "\n**Caution**: the no-mesh baseline itself sent {:.0f} % of its requests more than "
              "1 ms behind schedule at this point: the machine was too busy for loadgen to keep "
              "the rate, so the latencies here include client-side queueing and the differences "
              "between scenarios are mostly noise.\n",
              num(*p, "late_fraction", 0) * 100);
        }
      }
      md += "\n";
    }
  }
}

void cpu_section(std::string& md, const Json& r) {
  // Results of versions before steal was read apart (no machine.steal_s) counted it as busy.
  const bool steal_apart = r.value("machine", Json::object()).contains("steal_s");
  md += fmt::format(
      "## CPU seconds per 1,000 requests\n\nCPU time (utime + stime from /proc/<pid>/stat) of "
      "each proxy process over the measurement window (sampled when the warm-up ends and when "
      "the window ends), divided by the requests completed in that window, × 1,000. \"machine\": "
      "all non-idle, non-iowait CPU time of the whole machine from /proc/stat over the same "
      "window (softirq included; it also counts loadgen, the apps, the simulator and anything "
      "else running on the machine; steal, time the hypervisor gave to others, is not counted: "
      "it is in the latency tables{}); \"softirq\": its softirq part alone. /proc/stat is "
      "sampled at each scheduler tick (on kernels with tick-based CPU accounting, e.g. HZ=250, it "
      "misses short bursts between ticks), so \"cluster\" adds the exact figure: usage_usec of "
      "the simulated cluster's cgroup tree (cpu.stat: every pod's app and loadgen, every proxy, "
      "node agent and meshd; softirq work is included where it ran in those processes' context). "
      "\"vCPU\": the proxies' average CPU use during the window.\n\n",
      steal_apart ? "" : "; but this run's results are of an earlier version, which counted it");
  for (double rate : rates_of(r)) {
    for (int c : conns_of(r)) {
      md += fmt::format("### {:.0f} requests/s over {} connection(s)\n\n", rate, c);
      md +=
          "| scenario | per proxy | proxies total | proxies vCPU | cluster | machine | machine "
          "softirq |\n";
      md += "|---|---|---|---|---|---|---|\n";
      for (const auto& s : r["scenarios"]) {
        const Json* p = point_of(s, rate, c);
        if (!ok_point(p)) continue;
        const Json& cpu = (*p)["cpu_per_1000"];
        std::string each;
        const Json proxies = cpu.value("proxies", Json::object());
        for (const auto& [name, v] : proxies.items()) {
          each += fmt::format("{}{}: {:.3f}", each.empty() ? "" : ", ", name, v.get<double>());
        }
        md += fmt::format("| {} | {} | {} | {} | {} | {} | {} |\n", str(s, "name"),
                          each.empty() ? "–" : each, fmt_cpu(num(cpu, "total")),
                          fmt_cpu(num(cpu, "proxies_vcpu")),
                          cpu.contains("cluster") ? fmt_cpu(num(cpu, "cluster")) : "–",
                          fmt_cpu(num(cpu, "machine")), fmt_cpu(num(cpu, "machine_softirq")));
      }
      md += "\n";
    }
  }
}

// The CPU of the section above at ~1,000 rps, split into user and kernel time, with context
// switches per request: the evidence for where a proxy's cost per request comes from.
void cpu_split_section(std::string& md, const Json& r) {
  const double rate = nearest_rate(r, 1000);
  if (std::isnan(rate)) return;
  // results.json of earlier versions has no split: no section then.
  bool any = false;
  for (const auto& s : r["scenarios"]) {
    for (int c : conns_of(r)) {
      const Json* p = point_of(s, rate, c);
      if (ok_point(p) && ((*p)["cpu_per_1000"].contains("proxies_kernel") ||
                          (*p)["cpu_per_1000"].contains("cluster_user"))) {
        any = true;
      }
    }
  }
  if (!any) return;
  md += fmt::format(
      "## Where the proxies' CPU goes\n\nThe CPU time of the section above at {:.0f} requests/s, "
      "split into user space (utime) and kernel (stime: system calls, the TCP/IP and veth path, "
      "the scheduler's sleeps and wake-ups, and softirq work the kernel did in the process's "
      "context), per 1,000 requests, with the context switches of the process's threads per "
      "request (voluntary and involuntary, summed over /proc/<pid>/task/*/status; a thread "
      "that sleeps in epoll_wait and is woken by a packet counts one). A proxy relaying a "
      "request and its response must be woken at least twice per request, once per direction, "
      "unless requests arrive together. For comparison, \"cluster\" rows are the no-mesh "
      "run's whole cluster cgroup (cpu.stat: loadgen, the server app, the idle daemons), which "
      "pays the same kind of kernel cost without any proxy. The split comes from the kernel's "
      "tick-based accounting (each tick is charged to user or kernel time), so it is a sample: "
      "windows of a few seconds read coarsely.\n\n",
      rate);
  md +=
      "| connections | scenario | process | CPU per 1,000 requests | user | kernel | kernel share "
      "| "
      "switches per request |\n|---|---|---|---|---|---|---|---|\n";
  auto share = [](double user, double kernel) {
    return user + kernel > 0 ? fmt::format("{:.0f} %", 100 * kernel / (user + kernel))
                             : std::string("–");
  };
  for (int c : conns_of(r)) {
    for (const auto& s : r["scenarios"]) {
      const Json* p = point_of(s, rate, c);
      if (!ok_point(p)) continue;
      const Json& cpu = (*p)["cpu_per_1000"];
      if (str(s, "name") == "no-mesh" && cpu.contains("cluster_user")) {
        const double u = num(cpu, "cluster_user"), k = num(cpu, "cluster_kernel");
        md += fmt::format("| {} | no-mesh | cluster | {} | {} | {} | {} | – |\n", c,
                          fmt_cpu(num(cpu, "cluster")), fmt_cpu(u), fmt_cpu(k), share(u, k));
      }
      if (!cpu.contains("proxies_kernel")) continue;
      for (const auto& [name, kv] : cpu["proxies_kernel"].items()) {
        const double k = kv.get<double>();
        const double u = num(cpu["proxies_user"], name.c_str());
        const Json sw = cpu.value("switches_per_request", Json::object());
        md += fmt::format("| {} | {} | {} | {} | {} | {} | {} | {} |\n", c, str(s, "name"), name,
                          fmt_cpu(num(cpu["proxies"], name.c_str())), fmt_cpu(u), fmt_cpu(k),
                          share(u, k),
                          sw.contains(name) ? fmt::format("{:.2f}", num(sw, name.c_str())) : "–");
      }
    }
  }
  md += "\n";
}

// The wake-up cost probe's measurements (bench/common/wakeup.h), one row per measurement and
// placement: the CPU cost per wake-up the targets' details multiply the switches by.
void wakeup_section(std::string& md, const Json& r) {
  const Json m = r.value("machine", Json::object());
  if (!m.contains("wakeup_cost") || !m["wakeup_cost"].is_array() || m["wakeup_cost"].empty()) {
    return;  // results.json of earlier versions
  }
  md +=
      "## What a wake-up costs on this machine\n\nTwo processes hand one byte back and forth "
      "over two pipes, each blocking in read() until the other writes, so every hand-over is one "
      "sleep and one wake-up, as when a proxy asleep in epoll_wait is woken by a packet. \"CPU "
      "per wake-up\" is the user + system time of both processes over their loops (getrusage) "
      "divided by the hand-overs: the waker's side (its write, and sending the interrupt that "
      "wakes a CPU that was idle) and the wakee's (its switch back in and its read). A relay "
      "pays both sides, since each time it is woken it wakes the next hop once, so the CPU "
      "targets quote the proxies' switches per request times this cost as a rough scale, not a "
      "bound: these two processes are idle and woken through a pipe, the proxies through their "
      "sockets and under load, and the switch counts of the section above also hold "
      "preemptions. "
      "Measured with every scenario's proxies started and idle, where the scheduler places the "
      "two processes (as it places the proxies) and with both pinned to one CPU.\n\n"
      "| when | placement | round trips x repeats | CPU per wake-up (µs) | min–max | wall per "
      "round trip (µs) |\n|---|---|---|---|---|---|\n";
  for (const auto& w : m["wakeup_cost"]) {
    const Json summary = w.value("summary", Json::object());
    for (const char* placement : {"scheduler", "one_cpu"}) {
      const std::string where =
          std::string(placement) == "one_cpu"
              ? fmt::format("both pinned to CPU {}", w.value("pinned_cpu", -1))
              : std::string("where the scheduler places them");
      if (!summary.contains(placement)) continue;
      const Json& sp = summary[placement];
      const Json& c = sp["cpu_us_per_wakeup"];
      md += fmt::format("| {} | {} | {} x {} | {:.1f} | {:.1f}–{:.1f} | {:.1f} |\n",
                        cell(str(w, "when")), where, w.value("round_trips", 0),
                        sp.value("repeats", 0), num(c, "median", 0), num(c, "min", 0),
                        num(c, "max", 0), num(sp["wall_us_per_round_trip"], "median", 0));
    }
    if (w.contains("error")) {
      md += fmt::format("| {} | **failed**: {} | | | | |\n", cell(str(w, "when")),
                        cell(w["error"].get<std::string>()));
    }
  }
  md += "\n";
  // How late a sleeping thread is woken (results of earlier versions have no timer probe).
  bool any_timer = false;
  for (const auto& w : m["wakeup_cost"]) {
    any_timer = any_timer || w.contains("timer") || w.contains("timer_error");
  }
  if (!any_timer) return;
  md +=
      "**How late a sleeping thread is woken.** Then one thread sleeps 1 ms at a time "
      "(nanosleep) and measures how long past the end of each sleep it was woken: the kernel's "
      "timer slack (50 µs), the wait for a CPU, and, in a VM whose idle vCPUs halt (as they "
      "usually do when the machine is quiet), the wait until the hypervisor runs the halted vCPU "
      "again. A proxy asleep between packets is woken the same way, so a delay of a millisecond "
      "here is one for any request that has a process waiting at that moment; a path with more "
      "processes has more chances to meet one. The \"p99 added\" target turns the share into a "
      "rough share of requests.\n\n"
      "| when | wake-ups | more than 200 µs late | more than 1 ms late | late p50 (µs) | late p99 "
      "(µs) | longest (ms) |\n|---|---|---|---|---|---|---|\n";
  for (const auto& w : m["wakeup_cost"]) {
    if (w.contains("timer_error")) {
      md += fmt::format("| {} | **failed**: {} | | | | | |\n", cell(str(w, "when")),
                        cell(str(w, "timer_error")));
      continue;
    }
    if (!w.contains("timer")) continue;
    const Json& t = w["timer"];
    md += fmt::format("| {} | {} | {} | {} ({:.2f} %) | {:.0f} | {:.0f} | {:.1f} |\n",
                      cell(str(w, "when")), t.value("wakeups", 0),
                      // Not counted by the first version of the probe.
                      t.contains("late_over_200us") ? std::to_string(t.value("late_over_200us", 0))
                                                    : std::string("–"),
                      t.value("late_over_1ms", 0), num(t, "late_fraction", 0) * 100,
                      num(t, "p50_us", 0), num(t, "p99_us", 0), num(t, "max_us", 0) / 1000);
  }
  md += "\n";
}

void memory_section(std::string& md, const Json& r) {
  md +=
      "## Memory after the load runs\n\nVmRSS of each proxy process (/proc/<pid>/status), and "
      "the memory of the pods' cgroups (the app's, and the proxy's sibling cgroup where a "
      "sidecar or waypoint runs) and of the node ztunnels' cgroups: memory.current when the "
      "memory controller is enabled on the cgroup v2 hierarchy, otherwise (a hybrid host, "
      "where memory is a cgroup v1 controller) the sum of VmRSS of the processes in the "
      "cgroup (shared pages counted once per process). Read once every scenario's load runs "
      "were done.\n\n";
  md +=
      "RSS counts every resident page of the shared libraries a process maps (glibc; for HAProxy "
      "and the waypoint also OpenSSL, libstdc++ and others; ztunnel links them statically) in "
      "full, although one copy serves every process on the machine; "
      "\"private\" is the process's own anonymous memory (RssAnon: heap, stacks, buffers), what "
      "each additional proxy really adds; PSS divides shared pages among the processes that map "
      "them.\n\n";
  md +=
      "| scenario | proxy | role | RSS (MiB) | private (MiB) | PSS (MiB) |\n"
      "|---|---|---|---|---|---|\n";
  for (const auto& s : r["scenarios"]) {
    if (!s["memory"].is_object()) continue;
    const Json rss = s["memory"].value("proxy_rss_bytes", Json::object());
    const Json split = s["memory"].value("proxy_memory", Json::object());
    for (const auto& p : s["proxies"]) {
      const std::string name = str(p, "process");
      const Json one = split.value(name, Json::object());
      md += fmt::format("| {} | {} | {} | {} | {} | {} |\n", str(s, "name"), name, str(p, "role"),
                        fmt_mb(num(rss, name.c_str())),
                        one.contains("anon_bytes") ? fmt_mb(num(one, "anon_bytes")) : "–",
                        one.contains("pss_bytes") ? fmt_mb(num(one, "pss_bytes")) : "–");
    }
  }
  md += "\n| scenario | cgroup | memory (MiB) | measured as |\n|---|---|---|---|\n";
  for (const auto& s : r["scenarios"]) {
    if (!s["memory"].is_object()) continue;
    const Json cgroups = s["memory"].value("cgroup_memory_bytes", Json::object());
    for (const auto& [label, v] : cgroups.items()) {
      md += fmt::format("| {} | {} | {} | {} |\n", str(s, "name"), label, fmt_mb(num(v, "bytes")),
                        str(v, "source"));
    }
  }
  md += "\n";
}

void throughput_section(std::string& md, const Json& r) {
  md += fmt::format(
      "## Single-stream throughput\n\n`iperf3 -c <server> -t {:.0f} -J` in the client pod against "
      "`iperf3 -s` in the server pod (HAProxy: through its sidecar's bulk port); received "
      "Gbit/s. What the stream cost, read around the iperf3 run (its start and end included): "
      "\"busy\", the machine's non-idle share of its time (/proc/stat, steal not counted; "
      "\"steal\" is the hypervisor's share); then vCPU-seconds per GB received (10^9 bytes) of "
      "the whole machine and of the scenario's proxy processes. Where the machine is nearly fully "
      "busy (100 % less steal), the stream is likely held by the CPU, and its rate follows what "
      "each byte costs; at a lower average one process's vCPU can still be what holds it.\n\n"
      "| scenario | Gbit/s | vs no mesh | busy | steal | machine vCPU-s/GB | proxies "
      "vCPU-s/GB | target | note |\n|---|---|---|---|---|---|---|---|---|\n",
      std::max(1.0, std::round(num(r["options"], "bulk_duration_s", 1))));
  for (const auto& s : r["scenarios"]) {
    if (str(s, "status") != "ok") continue;
    const Json& t = s["throughput"];
    const Json c = t.value("cost", Json::object());
    auto pct = [&](const char* k) {
      return c.contains(k) ? fmt::format("{:.0f} %", num(c, k, 0) * 100) : std::string("–");
    };
    auto per_gb = [&](const char* k) {
      return c.contains(k) ? fmt::format("{:.2f}", num(c, k, 0)) : std::string("–");
    };
    md += fmt::format(
        "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n", str(s, "name"),
        fmt_gbit(num(t, "gbit_per_s")), fmt_ratio(num(t, "ratio_vs_no_mesh")),
        pct("machine_busy_fraction"),
        c.contains("steal_fraction") ? fmt::format("{:.1f} %", num(c, "steal_fraction", 0) * 100)
                                     : "–",
        per_gb("machine_vcpu_s_per_gb"), per_gb("proxies_vcpu_s_per_gb"), cell(str(t, "target")),
        t.contains("error") ? cell("failed: " + str(t, "error")) : cell(str(t, "path")));
  }
  md += "\n";
}

void conn_rate_section(std::string& md, const Json& r) {
  md +=
      "## New connections per second\n\n`loadgen --mode new-connection --rate 0 -c 4` (closed "
      "loop, a new TCP connection, and on meshed paths a new captured connection and HBONE "
      "stream, per request).\n\n| scenario | connections/s | vs no mesh | p50 (µs) | p99 (µs) | "
      "errors | note |\n|---|---|---|---|---|---|---|\n";
  for (const auto& s : r["scenarios"]) {
    if (str(s, "status") != "ok") continue;
    const Json& c = s["conn_rate"];
    const Json l = c.value("latency_us", Json::object());
    md += fmt::format("| {} | {} | {} | {} | {} | {} | {} |\n", str(s, "name"),
                      fmt_us(num(c, "achieved_rps")), fmt_ratio(num(c, "ratio_vs_no_mesh")),
                      fmt_us(num(l, "p50")), fmt_us(num(l, "p99")),
                      fmt_us(num(c, "errors", std::nan(""))),
                      c.contains("error") ? cell("failed: " + str(c, "error")) : "");
  }
  md += "\n";
}

void curves_section(std::string& md, const Json& r) {
  const Json& c = r["memory_vs_pods"];
  md +=
      "## Memory vs number of pods\n\nAmbient: the scale namespaces (`scale-<n>`, pod `app` on "
      "node-0) are labelled `istio.io/dataplane-mode=ambient` one count at a time, until node-0's "
      "ztunnel lists them in its /config_dump; then node-0's ztunnel VmRSS is read (it also "
      "serves the scenarios' own ambient pods on node-0: \"pods served\"). Sidecar: a dedicated "
      "ztunnel is started in each scale pod (a local config with that pod's workload); the sum "
      "of their VmRSS and of their cgroups' memory.current is read. \"Private\" is RssAnon (see "
      "the memory section): the sum of RSS counts the shared libraries once per sidecar, the sum "
      "of private memory does not count them at all; the truth for N sidecars lies between the "
      "sum of private memory plus one copy of the libraries and the sum of PSS.\n\n";
  for (const char* k : {"ambient", "sidecar"}) {
    if (c.contains(k) && !c[k]["error"].is_null()) {
      md += fmt::format("**{} curve failed**: {}\n\n", k, cell(c[k]["error"].get<std::string>()));
    }
  }
  md +=
      "| pods | ambient: node-0 ztunnel RSS (MiB) | ambient: private (MiB) | ambient: pods "
      "served | sidecar: sum of RSS (MiB) | sidecar: sum of private (MiB) | sidecar: sum of PSS "
      "(MiB) | sidecar: mean RSS per sidecar (MiB) | sidecar: sum of cgroup memory (MiB) |\n";
  md += "|---|---|---|---|---|---|---|---|---|\n";
  std::set<int> counts;
  for (const auto& x : r["options"]["pod_counts"]) counts.insert(x.get<int>());
  auto find = [&](const char* k, int n) -> const Json* {
    if (!c.contains(k)) return nullptr;
    for (const auto& p : c[k]["points"]) {
      if (p.value("pods", 0) == n) return &p;
    }
    return nullptr;
  };
  for (int n : counts) {
    const Json* a = find("ambient", n);
    const Json* s = find("sidecar", n);
    md += fmt::format(
        "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n", n,
        a ? fmt_mb(num(*a, "rss_bytes")) : "–", a ? fmt_mb(num(*a, "anon_bytes")) : "–",
        a ? fmt::format("{}", a->value("pods_served", 0)) : "–",
        s ? fmt_mb(num(*s, "rss_bytes")) : "–", s ? fmt_mb(num(*s, "anon_bytes")) : "–",
        s ? fmt_mb(num(*s, "pss_bytes")) : "–", s ? fmt_mb(num(*s, "rss_bytes") / n) : "–",
        s && !str(*s, "cgroup_memory_source").empty()
            ? fmt_mb(num(*s, "cgroup_memory_bytes")) + " (" + str(*s, "cgroup_memory_source") + ")"
            : "–");
  }
  md += "\n";
  for (const char* k : {"ambient", "sidecar"}) {
    if (c.contains(k) && c[k].contains("bytes_per_pod")) {
      md += fmt::format("- {}: {:+.1f} KiB per added pod\n", k,
                        c[k]["bytes_per_pod"].get<double>() / 1024);
    }
  }
  md += "\n";
}

// ---------------------------------------------------------------------------------------------
// Plots

struct Plot {
  std::string name;  // file stem
  std::string title;
};

std::string dat_value(double v) { return std::isnan(v) ? "NaN" : fmt::format("{:.6g}", v); }

bool write_file(const fs::path& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  return static_cast<bool>(out);
}

std::string gp_header(const std::string& stem, const std::string& title, const std::string& xl,
                      const std::string& yl) {
  return fmt::format(
      "# written by mesh_bench; render with: gnuplot {0}.gp (in this directory)\n"
      "set terminal svg size 900,540 dynamic background rgb 'white' font 'sans,12'\n"
      "set output '{0}.svg'\n"
      "set title \"{1}\"\n"
      "set xlabel \"{2}\"\n"
      "set ylabel \"{3}\"\n"
      "set grid\n"
      "set key outside right top\n"
      "set datafile missing 'NaN'\n",
      stem, title, xl, yl);
}

std::vector<Plot> write_plots(const Json& r, const fs::path& dir, std::string& problems) {
  std::vector<Plot> plots;
  const auto rates = rates_of(r);
  const auto conns = conns_of(r);
  // Latency percentiles vs rate, per scenario and connection count.
  for (const auto& s : r["scenarios"]) {
    if (str(s, "status") != "ok") continue;
    for (int c : conns) {
      const std::string stem = fmt::format("latency-{}-c{}", str(s, "name"), c);
      std::string dat = "# rate p50 p90 p99 p99.9 (us, medians of the kept repeats)\n";
      for (double rate : rates) {
        const Json* p = point_of(s, rate, c);
        dat += dat_value(rate);
        for (const char* k : {"p50", "p90", "p99", "p99.9"}) {
          dat += ' ';
          dat += dat_value(ok_point(p) ? num((*p)["latency_us"][k], "median") : std::nan(""));
        }
        dat += "\n";
      }
      std::string gp = gp_header(
          stem, fmt::format("{}: latency percentiles vs rate, {} connection(s)", str(s, "name"), c),
          "requests/s", "latency (µs)");
      gp += "set logscale y\n";
      gp += fmt::format(
          "plot '{0}.dat' using 1:2 with linespoints title 'p50', "
          "'{0}.dat' using 1:3 with linespoints title 'p90', "
          "'{0}.dat' using 1:4 with linespoints title 'p99', "
          "'{0}.dat' using 1:5 with linespoints title 'p99.9'\n",
          stem);
      if (!write_file(dir / (stem + ".dat"), dat) || !write_file(dir / (stem + ".gp"), gp)) {
        problems += "cannot write " + stem + "; ";
      }
      plots.push_back({stem, fmt::format("latency percentiles vs rate: {}, {} connection(s)",
                                         str(s, "name"), c)});
    }
  }
  // CPU per 1,000 requests vs rate, one line per scenario with proxies.
  for (int c : conns) {
    const std::string stem = fmt::format("cpu-per-1000-c{}", c);
    std::vector<std::string> names;
    for (const auto& s : r["scenarios"]) {
      if (str(s, "status") == "ok" && !s["proxies"].empty()) names.push_back(str(s, "name"));
    }
    if (names.empty()) continue;
    std::string dat = "# rate";
    for (const auto& n : names) dat += " " + n;
    dat += "   (proxy CPU seconds per 1,000 requests, all proxies of the scenario)\n";
    for (double rate : rates) {
      dat += dat_value(rate);
      for (const auto& s : r["scenarios"]) {
        if (str(s, "status") != "ok" || s["proxies"].empty()) continue;
        const Json* p = point_of(s, rate, c);
        dat += ' ';
        dat += dat_value(ok_point(p) ? num((*p)["cpu_per_1000"], "total") : std::nan(""));
      }
      dat += "\n";
    }
    std::string gp =
        gp_header(stem, fmt::format("proxy CPU seconds per 1,000 requests, {} connection(s)", c),
                  "requests/s", "CPU seconds per 1,000 requests");
    gp += "set yrange [0:*]\nplot ";
    for (size_t i = 0; i < names.size(); ++i) {
      gp += fmt::format("{}'{}.dat' using 1:{} with linespoints title '{}'", i ? ", " : "", stem,
                        i + 2, names[i]);
    }
    gp += "\n";
    if (!write_file(dir / (stem + ".dat"), dat) || !write_file(dir / (stem + ".gp"), gp)) {
      problems += "cannot write " + stem + "; ";
    }
    plots.push_back({stem, fmt::format("CPU per 1,000 requests, {} connection(s)", c)});
  }
  // Memory vs pods.
  {
    const Json& curves = r["memory_vs_pods"];
    const std::string stem = "memory-vs-pods";
    std::string a = "# pods node-0-ztunnel-RSS-MiB\n";
    for (const auto& p : curves["ambient"]["points"]) {
      a += fmt::format("{} {}\n", p.value("pods", 0),
                       dat_value(num(p, "rss_bytes") / (1024.0 * 1024.0)));
    }
    std::string s = "# pods sum-of-sidecar-RSS-MiB\n";
    for (const auto& p : curves["sidecar"]["points"]) {
      s += fmt::format("{} {}\n", p.value("pods", 0),
                       dat_value(num(p, "rss_bytes") / (1024.0 * 1024.0)));
    }
    std::string gp = gp_header(stem, "proxy memory vs number of pods on node-0", "pods",
                               "resident memory (MiB)");
    gp += "set yrange [0:*]\nset key inside left top\n";
    gp += fmt::format(
        "plot '{0}-ambient.dat' using 1:2 with linespoints title 'ambient: node-0 ztunnel', "
        "'{0}-sidecar.dat' using 1:2 with linespoints title 'sidecar: sum of the pods'' "
        "ztunnels'\n",
        stem);
    if (!write_file(dir / (stem + "-ambient.dat"), a) ||
        !write_file(dir / (stem + "-sidecar.dat"), s) || !write_file(dir / (stem + ".gp"), gp)) {
      problems += "cannot write " + stem + "; ";
    }
    plots.push_back({stem, "memory vs number of pods: ambient vs sidecar"});
  }
  return plots;
}

// Runs gnuplot on every .gp; returns what went wrong ("" when all rendered).
std::string render_plots(const fs::path& dir, const std::vector<Plot>& plots) {
  std::string problems;
  for (const auto& p : plots) {
    sim::SpawnSpec spec;
    spec.argv = {"sh", "-c", fmt::format("cd '{}' && gnuplot '{}.gp'", dir.string(), p.name)};
    spec.new_session = false;
    auto r = sim::run_captured(spec, std::chrono::seconds(60));
    if (!r) {
      problems += fmt::format("{}: {}; ", p.name, r.error().describe());
    } else if (r->exit_code != 0) {
      problems += fmt::format("{}: gnuplot exit {}: {}; ", p.name, r->exit_code, r->err);
    }
  }
  return problems;
}

}  // namespace

Status write_report(const Json& r, const fs::path& out_dir) {
  const fs::path plot_dir = out_dir / "plots";
  std::error_code ec;
  fs::create_directories(plot_dir, ec);
  std::string problems;
  const auto plots = write_plots(r, plot_dir, problems);
  const bool have_gnuplot = in_path("gnuplot");
  if (have_gnuplot) problems += render_plots(plot_dir, plots);

  std::string md;
  md += "# mesh_bench: ambient vs our sidecar mode vs HAProxy sidecars vs no mesh\n\n";
  md += fmt::format(
      "Run from {} to {} ({} mode) on the simulated cluster (two nodes; every "
      "client pod on node-0, every server pod and waypoint on node-1). Every number "
      "in this report comes from this run; results.json next to it holds them and "
      "the raw loadgen and iperf3 output.\n\n",
      str(r, "started_at"), str(r, "finished_at"), str(r, "mode"));
  md += fmt::format("Command:\n\n```\n{}\n```\n\n", str(r, "command_line"));
  const Json& o = r["options"];
  std::string rates, conns, pods;
  for (const auto& x : o["rates"])
    rates += fmt::format("{}{}", rates.empty() ? "" : ", ", x.get<double>());
  for (const auto& x : o["connections"])
    conns += fmt::format("{}{}", conns.empty() ? "" : ", ", x.get<int>());
  for (const auto& x : o["pod_counts"])
    pods += fmt::format("{}{}", pods.empty() ? "" : ", ", x.get<int>());
  md += fmt::format(
      "Settings: rates {} requests/s × connections {}; {} repeat(s) of {:.1f} s (+ {:.1f} s "
      "warm-up, not counted) per point; {} B request bodies; single stream {:.0f} s; connection "
      "rate {:.1f} s; memory curves at {} pods; node-0's ztunnel serves {} pods during the load "
      "runs. Proxies log at level warn (no access log).\n\n",
      rates, conns, o.value("repeats", 0), num(o, "duration_s", 0), num(o, "warmup_s", 0),
      o.value("body_bytes", 0), std::max(1.0, std::round(num(o, "bulk_duration_s", 1))),
      num(o, "conn_rate_duration_s", 0), pods, r.value("node0_pods_served_during_load", -1));
  machine_section(md, r);
  scenarios_section(md, r);
  targets_section(md, r);
  latency_section(md, r);
  cpu_section(md, r);
  cpu_split_section(md, r);
  wakeup_section(md, r);
  memory_section(md, r);
  throughput_section(md, r);
  conn_rate_section(md, r);
  curves_section(md, r);
  md += "## Plots\n\n";
  if (!have_gnuplot) {
    md +=
        "gnuplot is not installed (Debian: `apt-get install gnuplot-nox`, part of "
        "scripts/setup.sh), so the plots were not rendered: their data (.dat) and scripts (.gp) "
        "are in plots/ (`cd plots && gnuplot <name>.gp`).\n\n";
  } else if (!problems.empty()) {
    md += "Some plots failed: " + cell(problems) + "\n\n";
  }
  for (const auto& p : plots) {
    if (have_gnuplot) {
      md += fmt::format("![{}](plots/{}.svg)\n\n", p.title, p.name);
    } else {
      md += fmt::format("- {}: plots/{}.gp\n", p.title, p.name);
    }
  }
  md +=
      "\n## How this was measured\n\n"
      "- One simulated cluster (sim/, network namespaces, veths, a bridge, cgroups, the real "
      "eBPF capture) holds every scenario side by side; the load is applied to one scenario at "
      "a time, interleaved: at each rate × connections point every repeat runs every scenario "
      "once.\n"
      "- Load: build/bin/loadgen in the client pod (its cgroup and netns, so ambient and sidecar "
      "capture apply to it), open loop, latency measured from the scheduled send time (no "
      "coordinated omission), log-linear µs histograms (tools/loadgen/README.md).\n"
      "- CPU and memory: /proc/<pid>/stat and /proc/<pid>/status of each proxy process, "
      "/proc/stat for the machine, memory.current of cgroups (sim/cluster.h names them).\n"
      "- The machine is shared by every process of the cluster and by loadgen, so the "
      "machine-wide CPU includes the client and the apps; the load average above says how busy "
      "the machine was besides.\n";
  const fs::path path = out_dir / "report.md";
  if (!write_file(path, md)) return failf("cannot write {}", path.string());
  return {};
}

}  // namespace zt::bench::mesh
