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

nlohmann::json cpu_window_json(const CpuSnapshot& a, const CpuSnapshot& b) {
  using Json = nlohmann::json;
  Json j = Json::object();
  j["window_s"] = std::chrono::duration<double>(b.at - a.at).count();
  Json cpu = Json::object();
  Json split = Json::object();
  for (const auto& [name, before] : a.process) {
    const auto it = b.process.find(name);
    if (it == b.process.end() || !before || !it->second) continue;
    const ProcessCpu& after = *it->second;
    const double user = after.user_s - before->user_s;
    const double system = after.system_s - before->system_s;
    cpu[name] = user + system;
    // A thread that exited in the window takes its switches out of the sum: never negative.
    const double switches = after.switches >= before->switches
                                ? static_cast<double>(after.switches - before->switches)
                                : 0.0;
    split[name] = {{"user_s", user}, {"system_s", system}, {"switches", switches}};
  }
  j["cpu_s"] = cpu;
  j["cpu_split"] = split;
  if (a.machine && b.machine) {
    j["machine_cpu_s"] = {{"busy", b.machine->busy - a.machine->busy},
                          {"softirq", b.machine->softirq - a.machine->softirq},
                          {"steal", b.machine->steal - a.machine->steal},
                          {"total", b.machine->total - a.machine->total}};
  }
  if (a.cluster && b.cluster) {
    j["cluster_cpu_s"] = b.cluster->usage_s - a.cluster->usage_s;
    j["cluster_cpu_split"] = {{"user_s", b.cluster->user_s - a.cluster->user_s},
                              {"system_s", b.cluster->system_s - a.cluster->system_s}};
  }
  return j;
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
