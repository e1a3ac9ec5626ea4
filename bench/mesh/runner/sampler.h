// CPU and memory sampling over a load run's measurement window: a thread that reads the proxies'
// CPU time and VmRSS (memory under load), the cluster cgroup's CPU and the machine's
// (/proc/stat) when the warm-up ends and again when the window ends, timed from the moment the
// load generator was started. The load generator runs to completion on the calling thread
// meanwhile (sim::Cluster::exec_in_pod), so the thread only reads /proc.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench/common/procfs.h"

namespace zt::bench::mesh {

struct CpuSnapshot {
  std::chrono::steady_clock::time_point at;
  std::map<std::string, std::optional<ProcessCpu>> process;  // by process name
  std::optional<MachineCpu> machine;
  std::optional<CgroupCpu> cluster;  // cpu.stat of the cluster's cgroup tree
  std::map<std::string, std::optional<uint64_t>> rss_bytes;  // VmRSS, by process name
};

CpuSnapshot take_cpu_snapshot(const std::vector<std::pair<std::string, pid_t>>& processes,
                              const std::filesystem::path& cluster_cgroup);

// What was used between two snapshots, as results.json records it for a run:
//   window_s; cpu_s {process: user + system}; cpu_split {process: {user_s, system_s, switches}};
//   machine_cpu_s {busy, softirq, steal, total} (/proc/stat); cluster_cpu_s and
//   cluster_cpu_split {user_s, system_s} (the cluster's cgroup tree).
// A process missing from either snapshot, or a reading that failed, is left out.
nlohmann::json cpu_window_json(const CpuSnapshot& a, const CpuSnapshot& b);

class WindowSampler {
 public:
  WindowSampler(std::vector<std::pair<std::string, pid_t>> processes,
                std::chrono::steady_clock::time_point start, std::chrono::milliseconds warmup,
                std::chrono::milliseconds duration, std::filesystem::path cluster_cgroup);
  ~WindowSampler();
  WindowSampler(const WindowSampler&) = delete;
  WindowSampler& operator=(const WindowSampler&) = delete;

  // Stops waiting (the load ended early) and joins the thread.
  void finish();
  // Both snapshots, when the window was sampled completely.
  std::optional<std::pair<CpuSnapshot, CpuSnapshot>> window() const;

 private:
  void run(std::chrono::steady_clock::time_point begin, std::chrono::steady_clock::time_point end);

  std::vector<std::pair<std::string, pid_t>> processes_;
  std::filesystem::path cluster_cgroup_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::optional<CpuSnapshot> begin_, end_;
  std::thread thread_;
};

}  // namespace zt::bench::mesh
