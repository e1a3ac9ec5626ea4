// mesh_bench's runner: the cluster, the scenarios, the load, the sampling and results.json; the
// summaries, targets and report are derived from results.json by analysis.cc and report.cc.
#include "bench/mesh/runner/runner.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include "bench/common/procfs.h"
#include "bench/common/wakeup.h"
#include "bench/mesh/plan/manifests.h"
#include "bench/mesh/plan/topology.h"
#include "bench/mesh/proxies/haproxy.h"
#include "bench/mesh/proxies/waypoint.h"
#include "bench/mesh/runner/analysis.h"
#include "bench/mesh/runner/report.h"
#include "bench/mesh/runner/sampler.h"
#include "bench/mesh/sidecar/sidecar.h"
#include "sim/cluster.h"

namespace zt::bench::mesh {
namespace fs = std::filesystem;
using Json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

RunOptions full_options() {
  RunOptions o;
  o.mode_name = "full";
  return o;
}

RunOptions short_options() {
  RunOptions o;
  o.mode_name = "short";
  o.rates = {500, 1000, 2000};
  o.connections = {4};
  o.repeats = 1;
  o.duration = 3s;
  o.warmup = 1s;
  o.pod_counts = {1, 5, 10};
  o.bulk_duration = 2s;
  o.conn_rate_duration = 2s;
  o.timer_probe = 3s;
  return o;
}

RunOptions smoke_options() {
  RunOptions o;
  o.mode_name = "smoke";
  o.rates = {500};
  o.connections = {2};
  o.repeats = 1;
  o.duration = 1s;
  o.warmup = 500ms;
  o.pod_counts = {1, 2};
  o.bulk_duration = 1s;
  o.conn_rate_duration = 1s;
  o.wakeup_round_trips = 5000;
  o.wakeup_repeats = 1;
  o.timer_probe = 500ms;
  return o;
}

namespace {

std::atomic<bool> g_interrupted{false};

// node-0's ztunnel serves this many pods during the load runs (the RSS target's condition).
constexpr int kPodsServedDuringLoad = 10;

void progress(const std::string& line) {
  std::cerr << fmt::format("[mesh_bench {}] {}\n", utc_now().substr(11, 8), line) << std::flush;
}

std::string ms_arg(std::chrono::milliseconds d) { return fmt::format("{}ms", d.count()); }

std::string first_lines(const std::string& text, size_t max_chars = 600) {
  if (text.size() <= max_chars) return text;
  return text.substr(0, max_chars) + "...";
}

Status check_interrupted() {
  if (g_interrupted) return failf("interrupted (SIGINT/SIGTERM)");
  return {};
}

struct Scenario {
  const ScenarioPlan* plan = nullptr;
  std::string url;
  bool started = false;
  std::string error;  // why it could not start
  std::vector<StartedProxy> proxies;
  Json runs = Json::array();  // one object per (rate, connections, repeat)
  Json throughput, conn_rate, memory;
  std::string iperf_process;  // the iperf3 server's process name, once started
};

class Runner {
 public:
  explicit Runner(RunOptions o) : o_(std::move(o)) {}
  Status run();

 private:
  Status validate();
  Status setup_cluster();
  Status set_ztunnel_log_levels();
  Result<Json> node0_config_dump();
  Result<int> node0_scale_pods_served(int* total = nullptr);
  Status wait_node0_scale_pods(int n);
  Status label_scale(int from, int to, bool ambient);
  void start_scenario(Scenario& s);
  Status start_scenario_proxies(Scenario& s);
  Status check_request(Scenario& s);
  Json load_run(Scenario& s, double rate, int connections, int repeat);
  void measure_latency();
  void measure_wakeup_cost(const std::string& when);
  void measure_round_trips(Json& j, const std::string& when);
  void measure_throughput(Scenario& s, const Scenario* baseline);
  void measure_conn_rate(Scenario& s);
  Json memory_snapshot(const Scenario& s);
  void memory_curves();
  Json machine_json();
  std::vector<std::pair<std::string, pid_t>> proxy_pids(const Scenario& s) const;
  Status write_results();

  RunOptions o_;
  std::unique_ptr<sim::Cluster> cluster_;
  std::vector<Scenario> scenarios_;
  fs::path config_dir_;
  int scale_pods_ = 0;
  Json results_;
  Json curves_ = Json::object();
  int node0_pods_during_load_ = -1;
  std::optional<MachineCpu> cpu_at_start_;  // /proc/stat when the run started
};

Status Runner::validate() {
  if (o_.out_dir.empty()) return failf("--out: an output directory is required");
  if (o_.rates.empty()) return failf("--rates: at least one rate is required");
  for (double r : o_.rates) {
    if (!(r > 0)) return failf("--rates: every rate must be > 0, got {}", r);
  }
  if (o_.connections.empty()) return failf("--connections: at least one count is required");
  for (int c : o_.connections) {
    if (c < 1) return failf("--connections: every count must be >= 1, got {}", c);
  }
  if (o_.repeats < 1) return failf("--repeats: must be >= 1, got {}", o_.repeats);
  if (o_.duration < 100ms) return failf("--duration: must be at least 100ms");
  if (o_.pod_counts.empty()) return failf("--pods: at least one pod count is required");
  for (int n : o_.pod_counts) {
    if (n < 1 || n > kMaxScalePods) {
      return failf("--pods: every count must be 1..{}, got {}", kMaxScalePods, n);
    }
  }
  std::sort(o_.pod_counts.begin(), o_.pod_counts.end());
  o_.pod_counts.erase(std::unique(o_.pod_counts.begin(), o_.pod_counts.end()), o_.pod_counts.end());
  const auto& plans = scenario_plans();
  std::set<std::string> wanted(o_.scenarios.begin(), o_.scenarios.end());
  for (const auto& name : wanted) {
    bool known = std::any_of(plans.begin(), plans.end(),
                             [&](const ScenarioPlan& p) { return name == p.name; });
    if (!known) {
      std::string names;
      for (const auto& p : plans) names += std::string(names.empty() ? "" : ", ") + p.name;
      return failf("--scenarios: unknown scenario \"{}\" (known: {})", name, names);
    }
  }
  // The no-mesh baseline is part of every run: added latency and ratios are relative to it.
  for (const auto& p : plans) {
    if (wanted.empty() || wanted.count(p.name) || p.mode == Mode::kNoMesh) {
      Scenario s;
      s.plan = &p;
      scenarios_.push_back(std::move(s));
    }
  }
  if (o_.bin_dir.empty()) {
    std::error_code ec;
    o_.bin_dir = fs::read_symlink("/proc/self/exe", ec).parent_path();
  }
  for (const char* bin : {"loadgen", "ztunnel", "meshd", "node-agent", "http-echo", "waypoint"}) {
    if (::access((o_.bin_dir / bin).c_str(), X_OK) != 0) {
      return failf("{} is not built: {} is missing (build it, or point --bin-dir elsewhere)", bin,
                   (o_.bin_dir / bin).string());
    }
  }
  if (::geteuid() != 0) {
    return failf(
        "mesh_bench must run as root: the simulated cluster creates network namespaces, "
        "cgroups and eBPF programs");
  }
  return {};
}

Status Runner::setup_cluster() {
  std::error_code ec;
  fs::create_directories(o_.out_dir / "plots", ec);
  if (ec) return failf("cannot create {}: {}", (o_.out_dir / "plots").string(), ec.message());
  config_dir_ = o_.out_dir / "config";
  fs::create_directories(config_dir_, ec);
  const fs::path manifests = o_.out_dir / "manifests";
  fs::remove_all(manifests, ec);
  scale_pods_ = std::max(o_.pod_counts.back(), kPodsServedDuringLoad);
  if (auto st = write_bench_manifests(manifests, scale_pods_); !st) {
    return tl::unexpected(wrap(st.error(), "writing the benchmark manifests"));
  }
  sim::ClusterOptions co;
  co.manifests = manifests;
  co.prefix = o_.prefix;
  co.state_dir = sim::default_state_dir(o_.prefix);
  co.bin_dir = o_.bin_dir;
  co.ready_timeout = 120s;
  co.log_level = "info";  // meshd's readiness line is an info line; ztunnels go to warn below
  co.progress = [](std::string_view m) { progress(fmt::format("cluster: {}", m)); };
  progress(fmt::format("starting the simulated cluster (prefix {}, {} scale pods)", o_.prefix,
                       scale_pods_));
  const auto t0 = Clock::now();
  auto cluster = sim::Cluster::up(co);
  if (!cluster) return tl::unexpected(wrap(cluster.error(), "starting the simulated cluster"));
  cluster_ = std::move(*cluster);
  progress(fmt::format("cluster up in {:.1f} s",
                       std::chrono::duration<double>(Clock::now() - t0).count()));
  return set_ztunnel_log_levels();
}

// The node ztunnels log every connection at info (the access log); the sidecars, the waypoints
// and HAProxy run without one, so every proxy is measured at level warn.
Status Runner::set_ztunnel_log_levels() {
  for (const char* node : {kClientNode, kServerNode}) {
    auto r = cluster_->exec_in_node(
        node, {"curl", "-s", "-m", "5", "-X", "POST", "http://127.0.0.1:15000/logging?level=warn"},
        10s);
    if (!r || r->exit_code != 0) {
      return failf("setting {}'s ztunnel log level to warn: {}", node,
                   r ? r->err + r->out : r.error().describe());
    }
  }
  return {};
}

Result<Json> Runner::node0_config_dump() {
  auto r = cluster_->exec_in_node(
      kClientNode, {"curl", "-s", "-m", "5", "http://127.0.0.1:15000/config_dump"}, 10s);
  if (!r) return tl::unexpected(r.error());
  if (r->exit_code != 0) return failf("curl /config_dump: exit {} {}", r->exit_code, r->err);
  try {
    return Json::parse(r->out);
  } catch (const std::exception& e) {
    return failf("node-0's /config_dump is not JSON: {}", e.what());
  }
}

// How many scale pods ("scale-<n>/app") node-0's ztunnel has enrolled (its /config_dump "pods").
Result<int> Runner::node0_scale_pods_served(int* total) {
  auto dump = node0_config_dump();
  if (!dump) return tl::unexpected(dump.error());
  int n = 0;
  const Json pods = dump->value("pods", Json::array());
  for (const auto& p : pods) {
    if (p.value("workload", "").starts_with("scale-")) ++n;
  }
  if (total) *total = static_cast<int>(pods.size());
  return n;
}

Status Runner::wait_node0_scale_pods(int n) {
  const auto deadline = Clock::now() + 90s;
  int last = -1;
  for (;;) {
    if (auto st = check_interrupted(); !st) return st;
    auto served = node0_scale_pods_served();
    if (served && *served == n) return {};
    if (served) last = *served;
    if (Clock::now() > deadline) {
      return failf("node-0's ztunnel serves {} scale pods after 90 s, expected {}{}", last, n,
                   served ? "" : ": " + served.error().describe());
    }
    std::this_thread::sleep_for(250ms);
  }
}

// Labels (ambient) or unlabels scale-<from>..scale-<to>.
Status Runner::label_scale(int from, int to, bool ambient) {
  for (int i = from; i <= to; ++i) {
    auto st =
        cluster_->label_namespace(scale_namespace(i), "istio.io/dataplane-mode",
                                  ambient ? std::optional<std::string>("ambient") : std::nullopt);
    if (!st) return tl::unexpected(wrap(st.error(), "labelling " + scale_namespace(i)));
  }
  return {};
}

std::vector<std::pair<std::string, pid_t>> Runner::proxy_pids(const Scenario& s) const {
  std::vector<std::pair<std::string, pid_t>> out;
  for (const auto& p : s.proxies) out.emplace_back(p.process, p.pid);
  return out;
}

Status Runner::start_scenario_proxies(Scenario& s) {
  const ScenarioPlan& p = *s.plan;
  const fs::path ca_dir = cluster_->state_dir() / "ca";
  auto node_ztunnels = [&]() -> Status {
    for (const char* node : {kClientNode, kServerNode}) {
      const std::string name = std::string(node) + ".ztunnel";
      auto pid = cluster_->pid_of(name);
      if (!pid) return failf("the cluster has no process {}", name);
      s.proxies.push_back({name, *pid, "ztunnel", ""});
    }
    return {};
  };
  auto write_config = [&](const std::string& file, const std::string& yaml) -> Result<fs::path> {
    const fs::path path = config_dir_ / file;
    std::ofstream out(path);
    out << yaml;
    if (!out) return failf("cannot write {}", path.string());
    return path;
  };
  auto sidecars = [&](const fs::path& config) -> Status {
    for (const std::string& pod : {p.client_pod(), p.server_pod()}) {
      SidecarOptions so;
      so.pod = pod;
      so.local_config = config;
      so.ca_dir = ca_dir;
      auto started = start_sidecar_ztunnel(*cluster_, so);
      if (!started) return tl::unexpected(wrap(started.error(), "sidecar ztunnel of " + pod));
      s.proxies.push_back(*started);
    }
    return {};
  };
  switch (p.mode) {
    case Mode::kNoMesh:
      s.url = fmt::format("http://{}:{}/", p.server_ip, kAppPort);
      return {};
    case Mode::kAmbient:
      s.url = fmt::format("http://{}:{}/", p.server_ip, kAppPort);
      return node_ztunnels();
    case Mode::kAmbientWaypoint: {
      s.url = fmt::format("http://{}:{}/", p.service_vip, kAppPort);
      if (auto st = node_ztunnels(); !st) return st;
      WaypointOptions wo;
      wo.pod = p.waypoint_pod();
      wo.ca_dir = ca_dir;
      wo.xds_address = cluster_->meshd_address();
      auto wp = start_waypoint(*cluster_, wo);
      if (!wp) return tl::unexpected(wrap(wp.error(), "waypoint of " + p.waypoint_pod()));
      s.proxies.push_back(*wp);
      return {};
    }
    case Mode::kSidecar: {
      s.url = fmt::format("http://{}:{}/", p.server_ip, kAppPort);
      std::vector<LocalWorkload> w = {
          {.namespace_ = p.namespace_, .name = "client", .ip = p.client_ip, .node = kClientNode},
          {.namespace_ = p.namespace_, .name = "server", .ip = p.server_ip, .node = kServerNode}};
      auto config = write_config(std::string(p.name) + ".yaml", local_config_yaml(w));
      if (!config) return tl::unexpected(config.error());
      return sidecars(*config);
    }
    case Mode::kSidecarL7: {
      s.url = fmt::format("http://{}:{}/", p.server_ip, kAppPort);
      std::vector<LocalWorkload> w = {
          {.namespace_ = p.namespace_, .name = "client", .ip = p.client_ip, .node = kClientNode},
          {.namespace_ = p.namespace_,
           .name = "server",
           .ip = p.server_ip,
           .node = kServerNode,
           .waypoint_ip = p.waypoint_ip},
          {.namespace_ = p.namespace_,
           .name = kWaypointName,
           .ip = p.waypoint_ip,
           .node = kServerNode,
           .service_account = kWaypointName}};
      auto config = write_config(std::string(p.name) + ".yaml", local_config_yaml(w));
      if (!config) return tl::unexpected(config.error());
      WaypointOptions wo;
      wo.pod = p.waypoint_pod();
      wo.ca_dir = ca_dir;
      wo.local_config = *config;
      auto wp = start_waypoint(*cluster_, wo);
      if (!wp) return tl::unexpected(wrap(wp.error(), "waypoint of " + p.waypoint_pod()));
      if (auto st = sidecars(*config); !st) return st;
      s.proxies.push_back(*wp);
      return {};
    }
    case Mode::kHaproxy: {
      s.url = fmt::format("http://127.0.0.1:{}/", kHaproxyAppPort);
      HaproxyOptions ho;
      ho.client_pod = p.client_pod();
      ho.server_pod = p.server_pod();
      ho.server_ip = p.server_ip;
      ho.ca_dir = ca_dir;
      ho.work_dir = config_dir_ / "haproxy";
      auto pair = start_haproxy_pair(*cluster_, ho);
      if (!pair) return tl::unexpected(wrap(pair.error(), "HAProxy sidecars"));
      for (auto& proxy : *pair) s.proxies.push_back(proxy);
      return {};
    }
  }
  return failf("unknown scenario mode");
}

// One request through the scenario's path before it is measured, so a broken path is reported
// as such and not as a run full of errors.
Status Runner::check_request(Scenario& s) {
  std::string last;
  for (int attempt = 0; attempt < 10; ++attempt) {
    auto r = cluster_->exec_in_pod(
        s.plan->client_pod(),
        {"curl", "-s", "-m", "5", "-o", "/dev/null", "-w", "%{http_code}", s.url}, 15s);
    if (r && r->exit_code == 0 && r->out == "200") return {};
    last = r ? fmt::format("curl exit {}, status \"{}\" {}", r->exit_code, r->out, r->err)
             : r.error().describe();
    std::this_thread::sleep_for(500ms);
  }
  return failf("a request from {} to {} failed: {}", s.plan->client_pod(), s.url, last);
}

void Runner::start_scenario(Scenario& s) {
  progress(fmt::format("starting scenario {}", s.plan->name));
  auto st = start_scenario_proxies(s);
  if (st) st = check_request(s);
  if (!st) {
    s.error = st.error().describe();
    progress(fmt::format("scenario {} FAILED to start: {}", s.plan->name, s.error));
    return;
  }
  s.started = true;
  std::string names;
  for (const auto& p : s.proxies) names += fmt::format(" {}[{}]", p.process, p.pid);
  progress(
      fmt::format("scenario {} ready; proxies:{}", s.plan->name, names.empty() ? " none" : names));
}

Json latency_json(const Json& lg) {
  Json l = lg.value("latency_us", Json::object());
  Json out = Json::object();
  for (const char* k : {"p50", "p90", "p99", "p99.9", "max", "mean", "min"}) {
    if (l.contains(k)) out[k] = l[k];
  }
  return out;
}

Json Runner::load_run(Scenario& s, double rate, int connections, int repeat) {
  Json run = {{"rate", rate}, {"connections", connections}, {"repeat", repeat}};
  const std::vector<std::string> argv = {(o_.bin_dir / "loadgen").string(),
                                         "--rate",
                                         fmt::format("{}", rate),
                                         "-c",
                                         std::to_string(connections),
                                         "--duration",
                                         ms_arg(o_.duration),
                                         "--warmup",
                                         ms_arg(o_.warmup),
                                         "--body-size",
                                         std::to_string(o_.body_bytes),
                                         s.url};
  const auto procs = proxy_pids(s);
  const auto t0 = Clock::now();
  WindowSampler sampler(procs, t0, o_.warmup, o_.duration, cluster_->cgroup_root());
  auto r = cluster_->exec_in_pod(s.plan->client_pod(), argv, o_.warmup + o_.duration + 60s);
  sampler.finish();
  if (!r || r->exit_code != 0) {
    run["ok"] = false;
    run["error"] = r ? fmt::format("loadgen exit {}: {}", r->exit_code, first_lines(r->err))
                     : r.error().describe();
    return run;
  }
  Json lg;
  try {
    lg = Json::parse(r->out);
  } catch (const std::exception& e) {
    run["ok"] = false;
    run["error"] = fmt::format("loadgen's JSON does not parse: {}", e.what());
    return run;
  }
  const Json req = lg.value("requests", Json::object());
  const double completed = req.value("completed", 0.0);
  run["completed"] = completed;
  run["errors"] = req.value("errors", 0.0);
  run["achieved_rps"] = lg.value("achieved_rps", 0.0);
  run["late_over_1ms"] = lg.value("late_send_us", Json::object()).value("over_1ms", 0);
  run["loadgen_cpu_s"] = lg.value("loadgen_cpu_s", 0.0);
  run["latency_us"] = latency_json(lg);
  run["ok"] = completed > 0;
  if (completed <= 0) run["error"] = "no request completed";
  if (auto w = sampler.window()) {
    const auto& [a, b] = *w;
    run.update(cpu_window_json(a, b));
    // Memory while the connections are open and busy (the window ends before the load does).
    Json under_load = Json::object();
    for (const auto& [name, v] : b.rss_bytes) {
      if (v) under_load[name] = *v;
    }
    run["rss_under_load_bytes"] = under_load;
  } else {
    run["cpu_error"] = "the load ended before its measurement window did";
  }
  Json rss = Json::object();
  for (const auto& [name, pid] : procs) {
    if (auto v = process_rss_bytes(pid)) rss[name] = *v;
  }
  run["rss_bytes"] = rss;
  run["cgroup_memory"] = memory_snapshot(s)["cgroup_memory_bytes"];
  run["loadgen"] = std::move(lg);
  return run;
}

void Runner::measure_latency() {
  // Interleaved: at each rate x connections point, every repeat runs every scenario once, so the
  // scenarios compared at a point were measured minutes apart at most.
  const size_t points = o_.rates.size() * o_.connections.size();
  size_t point = 0;
  for (double rate : o_.rates) {
    for (int conns : o_.connections) {
      ++point;
      for (int rep = 0; rep < o_.repeats; ++rep) {
        for (auto& s : scenarios_) {
          if (!s.started || g_interrupted) continue;
          Json run = load_run(s, rate, conns, rep);
          if (run.value("ok", false)) {
            const Json& l = run["latency_us"];
            double cpu = 0;
            const Json cpu_s = run.value("cpu_s", Json::object());
            for (const auto& [k, v] : cpu_s.items()) {
              cpu += v.get<double>();
            }
            progress(fmt::format(
                "[{}/{}] {:<16} {:>5.0f} rps x {:>2} conn, repeat {}/{}: {:.0f} done, p50 {} "
                "p99 {} max {} us, proxies {:.3f} CPU-s",
                point, points, s.plan->name, rate, conns, rep + 1, o_.repeats,
                run.value("completed", 0.0), l.value("p50", 0), l.value("p99", 0),
                l.value("max", 0), cpu));
          } else {
            progress(fmt::format("[{}/{}] {} {:.0f} rps x {} conn, repeat {}: FAILED: {}", point,
                                 points, s.plan->name, rate, conns, rep + 1,
                                 run.value("error", "")));
          }
          s.runs.push_back(std::move(run));
        }
      }
    }
  }
}

void Runner::measure_throughput(Scenario& s, const Scenario* baseline) {
  (void)baseline;
  const ScenarioPlan& p = *s.plan;
  Json t = Json::object();
  if (s.iperf_process.empty()) {
    std::string name = p.server_pod() + ".iperf3";
    std::replace(name.begin(), name.end(), '/', '.');
    auto pid = cluster_->start_in_pod(p.server_pod(), name,
                                      {"iperf3", "-s", "-p", std::to_string(kBulkPort)});
    if (!pid) {
      t["error"] = "starting iperf3 -s: " + pid.error().describe();
      s.throughput = t;
      return;
    }
    s.iperf_process = name;
  }
  const bool haproxy = p.mode == Mode::kHaproxy;
  const std::string host = haproxy ? "127.0.0.1" : p.server_ip;
  const uint16_t port = haproxy ? kHaproxyBulkPort : kBulkPort;
  const long secs =
      std::max<long>(1, std::lround(std::chrono::duration<double>(o_.bulk_duration).count()));
  std::string last_error;
  const auto procs = proxy_pids(s);
  for (int attempt = 0; attempt < 5; ++attempt) {
    if (attempt > 0) std::this_thread::sleep_for(500ms);
    // What the stream cost, read around the whole iperf3 run: its start and end are included,
    // which lowers the busy share of short runs.
    const CpuSnapshot before = take_cpu_snapshot(procs, cluster_->cgroup_root());
    auto r = cluster_->exec_in_pod(
        p.client_pod(),
        {"iperf3", "-c", host, "-p", std::to_string(port), "-t", std::to_string(secs), "-J"},
        std::chrono::seconds(secs + 40));
    const CpuSnapshot after = take_cpu_snapshot(procs, cluster_->cgroup_root());
    if (!r) {
      last_error = r.error().describe();
      continue;
    }
    Json j;
    try {
      j = Json::parse(r->out);
    } catch (const std::exception&) {
      last_error = fmt::format("iperf3 exit {}: {}", r->exit_code, first_lines(r->out + r->err));
      continue;
    }
    if (j.contains("error")) {
      last_error = "iperf3: " + j["error"].get<std::string>();
      continue;
    }
    const Json received = j["end"].value("sum_received", Json::object());
    const double bps = received.value("bits_per_second", 0.0);
    t["gbit_per_s"] = bps / 1e9;
    t["bytes"] = received.value("bytes", 0.0);
    t["cpu"] = cpu_window_json(before, after);
    t["seconds"] = secs;
    t["target"] = fmt::format("{}:{}", host, port);
    switch (p.mode) {
      case Mode::kAmbientWaypoint:
        t["path"] =
            "to the server pod's IP: the ambient L4 path (the waypoint serves the Service "
            "VIP, whose only port is the app's)";
        break;
      case Mode::kSidecarL7:
        t["path"] = "through the waypoint of the server workload (and both sidecar ztunnels)";
        break;
      case Mode::kHaproxy:
        t["path"] = "through the client HAProxy's bulk port, TLS to the server HAProxy";
        break;
      default:
        break;
    }
    t["iperf3"] = j;
    s.throughput = t;
    progress(fmt::format("{:<16} single stream: {:.2f} Gbit/s", p.name, bps / 1e9));
    return;
  }
  t["error"] = last_error;
  s.throughput = t;
  progress(fmt::format("{} single stream FAILED: {}", p.name, last_error));
}

void Runner::measure_conn_rate(Scenario& s) {
  const std::vector<std::string> argv = {(o_.bin_dir / "loadgen").string(),
                                         "--mode",
                                         "new-connection",
                                         "--rate",
                                         "0",
                                         "-c",
                                         "4",
                                         "--duration",
                                         ms_arg(o_.conn_rate_duration),
                                         "--warmup",
                                         ms_arg(std::min<std::chrono::milliseconds>(o_.warmup, 1s)),
                                         s.url};
  Json c = Json::object();
  auto r =
      cluster_->exec_in_pod(s.plan->client_pod(), argv, o_.conn_rate_duration + o_.warmup + 60s);
  if (!r || r->exit_code != 0) {
    c["error"] = r ? fmt::format("loadgen exit {}: {}", r->exit_code, first_lines(r->err))
                   : r.error().describe();
  } else {
    try {
      Json lg = Json::parse(r->out);
      c["achieved_rps"] = lg.value("achieved_rps", 0.0);
      c["completed"] = lg.value("requests", Json::object()).value("completed", 0.0);
      c["errors"] = lg.value("requests", Json::object()).value("errors", 0.0);
      c["latency_us"] = latency_json(lg);
      c["loadgen"] = lg;
    } catch (const std::exception& e) {
      c["error"] = fmt::format("loadgen's JSON does not parse: {}", e.what());
    }
  }
  if (c.contains("error")) {
    progress(fmt::format("{} new connections/s FAILED: {}", s.plan->name,
                         c["error"].get<std::string>()));
  } else {
    progress(fmt::format("{:<16} new connections: {:.0f}/s", s.plan->name,
                         c["achieved_rps"].get<double>()));
  }
  s.conn_rate = c;
}

Json Runner::memory_snapshot(const Scenario& s) {
  Json m = Json::object();
  Json rss = Json::object();
  for (const auto& p : s.proxies) {
    if (auto v = process_rss_bytes(p.pid)) rss[p.process] = *v;
  }
  m["proxy_rss_bytes"] = rss;
  Json split = Json::object();
  for (const auto& p : s.proxies) {
    if (auto v = process_memory(p.pid)) {
      split[p.process] = {{"rss_bytes", v->rss}, {"anon_bytes", v->anon}, {"pss_bytes", v->pss}};
    }
  }
  m["proxy_memory"] = split;
  Json cg = Json::object();
  auto add = [&](const std::string& label, const fs::path& path) {
    if (auto v = cgroup_memory(path)) cg[label] = {{"bytes", v->bytes}, {"source", v->source}};
  };
  std::vector<std::string> pods = {s.plan->client_pod(), s.plan->server_pod()};
  if (*s.plan->waypoint_ip) pods.push_back(s.plan->waypoint_pod());
  for (const auto& pod : pods) {
    add(pod + " (pod)", cluster_->pod_cgroup(pod));
    std::error_code ec;
    if (fs::exists(cluster_->sidecar_cgroup(pod), ec)) {
      add(pod + " (proxy cgroup)", cluster_->sidecar_cgroup(pod));
    }
  }
  if (s.plan->mode == Mode::kAmbient || s.plan->mode == Mode::kAmbientWaypoint) {
    for (const char* node : {kClientNode, kServerNode}) {
      add(std::string(node) + " ztunnel cgroup", cluster_->node_cgroup(node) / "ztunnel");
    }
  }
  m["cgroup_memory_bytes"] = cg;
  return m;
}

void Runner::memory_curves() {
  // Ambient: node-0's ztunnel serving 1..N scale pods (plus the scenarios' own node-0 pods).
  Json ambient = Json::array();
  Json ambient_error;
  auto ambient_curve = [&]() -> Status {
    progress("memory vs pods, ambient: unlabelling the scale namespaces");
    if (auto st = label_scale(1, scale_pods_, false); !st) return st;
    if (auto st = wait_node0_scale_pods(0); !st) return st;
    auto pid = cluster_->pid_of(std::string(kClientNode) + ".ztunnel");
    if (!pid) return failf("node-0's ztunnel is not known to the cluster");
    int labelled = 0;
    for (int n : o_.pod_counts) {
      if (auto st = label_scale(labelled + 1, n, true); !st) return st;
      labelled = n;
      if (auto st = wait_node0_scale_pods(n); !st) return st;
      std::this_thread::sleep_for(1s);  // certificates for new identities, settled allocations
      int total = 0;
      auto served = node0_scale_pods_served(&total);
      auto mem = process_memory(*pid);
      if (!mem) return failf("node-0's ztunnel (pid {}) is gone", *pid);
      ambient.push_back({{"pods", n},
                         {"pods_served", total},
                         {"rss_bytes", mem->rss},
                         {"anon_bytes", mem->anon},
                         {"pss_bytes", mem->pss}});
      progress(fmt::format(
          "memory vs pods, ambient: {} scale pods ({} served): ztunnel RSS {:.1f} MiB, private "
          "{:.1f} MiB",
          n, total, static_cast<double>(mem->rss) / 1048576.0,
          static_cast<double>(mem->anon) / 1048576.0));
      (void)served;
    }
    progress("memory vs pods, ambient: unlabelling the scale namespaces again");
    if (auto st = label_scale(1, scale_pods_, false); !st) return st;
    return wait_node0_scale_pods(0);
  };
  if (auto st = ambient_curve(); !st) {
    ambient_error = st.error().describe();
    progress("memory vs pods, ambient FAILED: " + ambient_error.get<std::string>());
  }

  // Sidecar: one dedicated ztunnel per scale pod, each with a local config of its own workload.
  Json sidecar = Json::array();
  Json sidecar_error;
  std::vector<StartedProxy> started;
  auto sidecar_curve = [&]() -> Status {
    const fs::path dir = config_dir_ / "scale";
    std::error_code ec;
    fs::create_directories(dir, ec);
    int running = 0;
    for (int n : o_.pod_counts) {
      for (int i = running + 1; i <= n; ++i) {
        if (auto st = check_interrupted(); !st) return st;
        LocalWorkload w{.namespace_ = scale_namespace(i),
                        .name = "app",
                        .ip = scale_pod_ip(i),
                        .node = kClientNode};
        const fs::path config = dir / (scale_namespace(i) + ".yaml");
        std::ofstream(config) << local_config_yaml({w});
        SidecarOptions so;
        so.pod = scale_pod(i);
        so.local_config = config;
        so.ca_dir = cluster_->state_dir() / "ca";
        auto proxy = start_sidecar_ztunnel(*cluster_, so);
        if (!proxy) return tl::unexpected(wrap(proxy.error(), "sidecar ztunnel of " + so.pod));
        started.push_back(*proxy);
      }
      running = n;
      std::this_thread::sleep_for(1s);
      uint64_t total = 0, anon = 0, pss = 0, cgroups = 0;
      std::string source;
      Json each = Json::array();
      for (const auto& p : started) {
        auto mem = process_memory(p.pid);
        if (!mem) return failf("{} (pid {}) is gone", p.process, p.pid);
        const auto* rss = &mem->rss;
        total += mem->rss;
        anon += mem->anon;
        pss += mem->pss;
        if (auto m = cgroup_memory(cluster_->sidecar_cgroup(p.pod))) {
          cgroups += m->bytes;
          source = m->source;
        }
        each.push_back({{"process", p.process}, {"rss_bytes", *rss}});
      }
      sidecar.push_back({{"pods", n},
                         {"rss_bytes", total},
                         {"anon_bytes", anon},
                         {"pss_bytes", pss},
                         {"cgroup_memory_bytes", cgroups},
                         {"cgroup_memory_source", source},
                         {"each", each}});
      progress(fmt::format("memory vs pods, sidecar: {} pods: sum of sidecar RSS {:.1f} MiB", n,
                           static_cast<double>(total) / 1048576.0));
    }
    return {};
  };
  if (auto st = sidecar_curve(); !st) {
    sidecar_error = st.error().describe();
    progress("memory vs pods, sidecar FAILED: " + sidecar_error.get<std::string>());
  }
  for (const auto& p : started) (void)cluster_->stop_named(p.process);
  curves_ = {{"ambient", {{"points", ambient}, {"error", ambient_error}}},
             {"sidecar", {{"points", sidecar}, {"error", sidecar_error}}}};
}

std::string build_type_of(const fs::path& bin_dir) {
  std::istringstream in(read_text_file(bin_dir.parent_path() / "CMakeCache.txt"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with("CMAKE_BUILD_TYPE:")) {
      auto eq = line.find('=');
      if (eq != std::string::npos && eq + 1 < line.size()) return line.substr(eq + 1);
    }
  }
#ifdef NDEBUG
  return "unknown (mesh_bench itself: NDEBUG)";
#else
  return "unknown (mesh_bench itself: assertions on)";
#endif
}

std::string cmake_cache_value(const fs::path& bin_dir, const std::string& key) {
  std::istringstream in(read_text_file(bin_dir.parent_path() / "CMakeCache.txt"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with(key + ":")) {
      auto eq = line.find('=');
      if (eq != std::string::npos) return line.substr(eq + 1);
    }
  }
  return {};
}

// Two processes handing a byte back and forth (bench/common/wakeup.h), where the scheduler places
// them and pinned to one CPU, o_.wakeup_repeats times each, then a thread sleeping 1 ms at a time
// for o_.timer_probe, with every scenario's proxies idle. A failure is recorded in place of the
// numbers; the run goes on.
void Runner::measure_wakeup_cost(const std::string& when) {
  const bool round_trips = o_.wakeup_repeats >= 1 && o_.wakeup_round_trips >= 1;
  const bool timer = o_.timer_probe.count() > 0;
  if (!round_trips && !timer) return;
  Json j = {{"when", when}};
  if (round_trips) measure_round_trips(j, when);
  if (timer && !g_interrupted) {
    auto t = measure_timer_lateness(std::chrono::milliseconds(1), o_.timer_probe, &g_interrupted);
    if (t) {
      j["timer"] = {{"period_us", t->period.count()},
                    {"wakeups", t->wakeups},
                    {"late_over_200us", t->late_over_200us},
                    {"late_over_1ms", t->late_over_1ms},
                    {"late_fraction", t->late_fraction()},
                    {"p50_us", t->p50_us},
                    {"p99_us", t->p99_us},
                    {"max_us", t->max_us}};
      progress(fmt::format("timer wake-ups {}: {} of {} more than 1 ms late, longest {:.1f} ms",
                           when, t->late_over_1ms, t->wakeups, t->max_us / 1000));
    } else {
      j["timer_error"] = t.error().describe();
    }
  }
  results_["machine"]["wakeup_cost"].push_back(std::move(j));
}

void Runner::measure_round_trips(Json& j, const std::string& when) {
  j["round_trips"] = o_.wakeup_round_trips;
  const auto cpu = first_allowed_cpu();
  if (cpu) j["pinned_cpu"] = *cpu;
  std::vector<std::string> errors;
  int measured = 0;
  for (const char* placement : {"scheduler", "one_cpu"}) {
    const bool pinned = std::string_view(placement) == "one_cpu";
    Json repeats = Json::array();
    if (pinned && !cpu) errors.push_back("one_cpu: this process's CPU affinity could not be read");
    for (int i = 0; i < o_.wakeup_repeats && !g_interrupted && (!pinned || cpu); ++i) {
      auto cost =
          bench::measure_wakeup_cost(o_.wakeup_round_trips, pinned ? cpu : std::optional<int>{});
      if (!cost) {
        errors.push_back(fmt::format("{}: {}", placement, cost.error().describe()));
        break;
      }
      repeats.push_back({{"cpu_s", cost->cpu_s},
                         {"wall_s", cost->wall_s},
                         {"cpu_us_per_wakeup", cost->cpu_us_per_wakeup()},
                         {"wall_us_per_round_trip", cost->wall_us_per_round_trip()}});
      ++measured;
    }
    j[placement] = repeats;
  }
  if (!errors.empty()) j["error"] = fmt::format("{}", fmt::join(errors, "; "));
  progress(fmt::format("wake-up cost {}: {} repeat(s) of {} round trips{}", when, measured,
                       o_.wakeup_round_trips,
                       errors.empty() ? std::string() : "; " + j["error"].get<std::string>()));
}

Json Runner::machine_json() {
  const MachineInfo m = machine_info();
  Json j = {{"cpu_model", m.cpu_model}, {"cores", m.cores},
            {"kernel", m.kernel},       {"debian_version", m.debian_version},
            {"os", m.os_pretty_name},   {"memory_total_bytes", m.memory_total_bytes},
            {"hostname", m.hostname},   {"wakeup_cost", Json::array()}};
  return j;
}

Status Runner::write_results() {
  const fs::path path = o_.out_dir / "results.json";
  std::ofstream out(path);
  out << results_.dump(1) << "\n";
  if (!out) return failf("cannot write {}", path.string());
  return {};
}

Status Runner::run() {
  if (auto st = validate(); !st) return st;
  std::error_code ec;
  fs::create_directories(o_.out_dir, ec);
  if (ec) return failf("--out: cannot create {}: {}", o_.out_dir.string(), ec.message());
  results_ = {{"tool", "mesh_bench"},    {"version", 1},
              {"started_at", utc_now()}, {"command_line", o_.command_line},
              {"mode", o_.mode_name},    {"load_average_start", load_average()}};
  const std::string source_dir = cmake_cache_value(o_.bin_dir, "CMAKE_HOME_DIRECTORY");
  std::string commit = "unknown";
  if (!source_dir.empty()) {
    commit = tool_version({"git", "-C", source_dir, "rev-parse", "--short", "HEAD"});
    if (commit.find(' ') != std::string::npos) commit = "unknown";
  }
  results_["build"] = {
      {"build_type", build_type_of(o_.bin_dir)},
      {"compiler",
       fmt::format("{} ({})", cmake_cache_value(o_.bin_dir, "CMAKE_CXX_COMPILER"), __VERSION__)},
      {"bin_dir", o_.bin_dir.string()},
      {"source_commit", commit}};
  results_["machine"] = machine_json();
  cpu_at_start_ = machine_cpu();
  results_["versions"] = {{"haproxy", tool_version({"haproxy", "-v"})},
                          {"iperf3", tool_version({"iperf3", "--version"})},
                          {"gnuplot", tool_version({"gnuplot", "--version"})},
                          {"curl", tool_version({"curl", "--version"})}};
  results_["options"] = {
      {"rates", o_.rates},
      {"connections", o_.connections},
      {"repeats", o_.repeats},
      {"duration_s", std::chrono::duration<double>(o_.duration).count()},
      {"warmup_s", std::chrono::duration<double>(o_.warmup).count()},
      {"body_bytes", o_.body_bytes},
      {"pod_counts", o_.pod_counts},
      {"bulk_duration_s", std::chrono::duration<double>(o_.bulk_duration).count()},
      {"conn_rate_duration_s", std::chrono::duration<double>(o_.conn_rate_duration).count()},
      {"wakeup_round_trips", o_.wakeup_round_trips},
      {"wakeup_repeats", o_.wakeup_repeats},
      {"timer_probe_s", std::chrono::duration<double>(o_.timer_probe).count()},
      {"prefix", o_.prefix}};

  if (auto st = setup_cluster(); !st) return st;

  // node-0's ztunnel serves kPodsServedDuringLoad pods while the load runs: the scenarios' own
  // node-0 pods plus as many scale pods as that takes.
  {
    int total = 0;
    auto scale = node0_scale_pods_served(&total);
    if (!scale) return tl::unexpected(wrap(scale.error(), "reading node-0's /config_dump"));
    const int extra = std::clamp(kPodsServedDuringLoad - (total - *scale), 0, scale_pods_);
    progress(
        fmt::format("node-0's ztunnel serves {} pods; labelling {} scale namespaces ambient "
                    "so it serves {} during the load",
                    total, extra, kPodsServedDuringLoad));
    if (auto st = label_scale(1, extra, true); !st) return st;
    if (auto st = wait_node0_scale_pods(extra); !st) return st;
    (void)node0_scale_pods_served(&node0_pods_during_load_);
    results_["node0_pods_served_during_load"] = node0_pods_during_load_;
  }

  for (auto& s : scenarios_) {
    if (auto st = check_interrupted(); !st) return st;
    start_scenario(s);
  }
  measure_wakeup_cost("before the load runs");
  measure_latency();
  if (auto st = check_interrupted(); !st) return st;
  measure_wakeup_cost("after the load runs");
  for (auto& s : scenarios_) {
    if (s.started) s.memory = memory_snapshot(s);
  }
  for (auto& s : scenarios_) {
    if (!s.started || g_interrupted) continue;
    measure_throughput(s, nullptr);
    measure_conn_rate(s);
  }
  if (auto st = check_interrupted(); !st) return st;
  memory_curves();
  if (auto st = check_interrupted(); !st) return st;

  Json scenarios = Json::array();
  for (const auto& s : scenarios_) {
    Json proxies = Json::array();
    for (const auto& p : s.proxies) {
      proxies.push_back({{"process", p.process}, {"pid", p.pid}, {"role", p.role}, {"pod", p.pod}});
    }
    scenarios.push_back({{"name", s.plan->name},
                         {"description", s.plan->description},
                         {"status", s.started ? "ok" : "failed"},
                         {"error", s.error},
                         {"url", s.url},
                         {"client_pod", s.plan->client_pod()},
                         {"server_pod", s.plan->server_pod()},
                         {"proxies", proxies},
                         {"runs", s.runs},
                         {"throughput", s.throughput},
                         {"conn_rate", s.conn_rate},
                         {"memory", s.memory}});
  }
  results_["scenarios"] = scenarios;
  results_["memory_vs_pods"] = curves_;
  results_["finished_at"] = utc_now();
  results_["load_average_end"] = load_average();
  if (auto end = machine_cpu(); end && cpu_at_start_) {
    // Over the whole run from its start, cluster set-up included (read before the teardown).
    results_["machine"]["steal_s"] = {{"steal", end->steal - cpu_at_start_->steal},
                                      {"total", end->total - cpu_at_start_->total}};
  }
  analyze(results_);  // summaries per point, ratios, targets
  if (auto st = write_results(); !st) return st;

  progress("tearing the cluster down");
  if (auto st = cluster_->down(); !st) {
    progress("teardown: " + st.error().describe());
  }
  cluster_.reset();
  if (auto st = write_report(results_, o_.out_dir); !st) return st;
  std::cout << targets_table_text(results_) << "\n";
  std::cout << "report: " << (o_.out_dir / "report.md").string() << "\n";
  std::cout << "results: " << (o_.out_dir / "results.json").string() << "\n";
  return {};
}

}  // namespace

void interrupt_mesh_bench() { g_interrupted = true; }

Status rerender_report(const fs::path& out_dir) {
  const fs::path path = out_dir / "results.json";
  Json results;
  try {
    std::ifstream in(path);
    if (!in) return failf("cannot read {}", path.string());
    results = Json::parse(in);
    analyze(results);
  } catch (const std::exception& e) {
    return failf("{}: {}", path.string(), e.what());
  }
  {
    std::ofstream out(path);
    out << results.dump(1) << "\n";
    if (!out) return failf("cannot write {}", path.string());
  }
  if (auto st = write_report(results, out_dir); !st) return st;
  std::cout << targets_table_text(results) << "\n";
  std::cout << "report: " << (out_dir / "report.md").string() << "\n";
  return {};
}

Status run_mesh_bench(const RunOptions& options) {
  // Runner's destructor tears the cluster down, so nothing may leave run() other than by return.
  Runner runner(options);
  try {
    return runner.run();
  } catch (const std::exception& e) {
    return failf("internal error: {}", e.what());
  }
}

}  // namespace zt::bench::mesh
