// mesh_bench's runner (issue 7, DESIGN §10): builds the benchmark cluster (plan/topology.h) in
// the simulator, starts every scenario's proxies, applies the load of each scenario in turn with
// build/bin/loadgen inside the client pod, samples CPU (per proxy process from /proc/<pid>/stat,
// whole machine from /proc/stat including softirq) and memory (RSS per proxy, memory.current per
// pod cgroup), and writes the results (results.json), the report (report.md) and its plots
// (gnuplot SVGs). Every number in the report comes from this run.
#pragma once

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include "common/base/result.h"

namespace zt::bench::mesh {

struct RunOptions {
  std::filesystem::path out_dir;       // report.md, results.json, plots/ (created)
  std::filesystem::path bin_dir;       // build/bin (ztunnel, meshd, node-agent, waypoint, ...)
  std::string prefix = "zmb";          // simulator prefix (netns, cgroups, pins)
  std::vector<std::string> scenarios;  // names from scenario_plans(); empty = all
  std::vector<double> rates = {500, 1000, 2000};
  std::vector<int> connections = {1, 4, 16};
  int repeats = 3;  // per point; the worst (highest p99) is dropped when > 2
  std::chrono::milliseconds duration = std::chrono::seconds(10);
  std::chrono::milliseconds warmup = std::chrono::seconds(2);
  int body_bytes = 1024;
  std::vector<int> pod_counts = {1, 10, 25, 50};  // memory-vs-pods curves
  std::chrono::milliseconds bulk_duration = std::chrono::seconds(5);
  std::chrono::milliseconds conn_rate_duration = std::chrono::seconds(5);
  // What a wake-up costs on this machine (bench/common/wakeup.h), measured before and after the
  // load runs: this many round trips per repeat, where the scheduler places the two processes
  // and with both on one CPU.
  int wakeup_round_trips = 20000;
  int wakeup_repeats = 3;
  // Then how late a thread sleeping 1 ms at a time is woken, over this long (0: not measured).
  std::chrono::milliseconds timer_probe = std::chrono::seconds(10);
  std::string command_line;        // recorded in the report verbatim
  std::string mode_name = "full";  // "full", "short", "smoke"
};

// Presets: full (the defaults), short (< 5 minutes on 2 cores), smoke (the test suite's: < 90 s).
RunOptions full_options();
RunOptions short_options();
RunOptions smoke_options();

Status run_mesh_bench(const RunOptions& options);

// Reads <out_dir>/results.json of an earlier run, derives the summaries and targets again from
// its raw measurements and rewrites results.json, report.md and plots/ (no cluster, no root).
Status rerender_report(const std::filesystem::path& out_dir);

// Asks a running run_mesh_bench to stop at its next step (the cluster is then torn down).
// Async-signal-safe: a SIGINT/SIGTERM handler may call it.
void interrupt_mesh_bench();

}  // namespace zt::bench::mesh
