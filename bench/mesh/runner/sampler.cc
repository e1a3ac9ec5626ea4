#include "bench/mesh/runner/sampler.h"

namespace zt::bench::mesh {

CpuSnapshot take_cpu_snapshot(const std::vector<std::pair<std::string, pid_t>>& processes,
                              const std::filesystem::path& cluster_cgroup) {
  CpuSnapshot s;
  s.at = std::chrono::steady_clock::now();
  s.machine = machine_cpu();
  s.cluster = cgroup_cpu(cluster_cgroup);
  for (const auto& [name, pid] : processes) s.process[name] = process_cpu(pid);
  // After the CPU readings, so they stay as close together in time as before.
  for (const auto& [name, pid] : processes) s.rss_bytes[name] = process_rss_bytes(pid);
  return s;
}

WindowSampler::WindowSampler(std::vector<std::pair<std::string, pid_t>> processes,
                             std::chrono::steady_clock::time_point start,
                             std::chrono::milliseconds warmup, std::chrono::milliseconds duration,
                             std::filesystem::path cluster_cgroup)
    : processes_(std::move(processes)), cluster_cgroup_(std::move(cluster_cgroup)) {
  thread_ = std::thread([this, b = start + warmup, e = start + warmup + duration] { run(b, e); });
}

WindowSampler::~WindowSampler() { finish(); }

void WindowSampler::finish() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void WindowSampler::run(std::chrono::steady_clock::time_point begin,
                        std::chrono::steady_clock::time_point end) {
  std::unique_lock lock(mu_);
  if (cv_.wait_until(lock, begin, [this] { return stop_; })) return;
  lock.unlock();
  auto first = take_cpu_snapshot(processes_, cluster_cgroup_);
  lock.lock();
  begin_ = std::move(first);
  if (cv_.wait_until(lock, end, [this] { return stop_; })) return;
  lock.unlock();
  auto last = take_cpu_snapshot(processes_, cluster_cgroup_);
  lock.lock();
  end_ = std::move(last);
}

std::optional<std::pair<CpuSnapshot, CpuSnapshot>> WindowSampler::window() const {
  std::lock_guard lock(mu_);
  if (!begin_ || !end_) return std::nullopt;
  return std::make_pair(*begin_, *end_);
}

}  // namespace zt::bench::mesh
