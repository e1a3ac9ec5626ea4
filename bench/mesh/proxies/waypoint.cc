#include "bench/mesh/proxies/waypoint.h"

#include <thread>

#include <fmt/format.h>
#include <signal.h>
#include <unistd.h>

#include "bench/mesh/proxies/pod_probe.h"
#include "sim/cluster.h"
#include "sim/host.h"

namespace zt::bench::mesh {
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

constexpr uint16_t kHbonePort = 15008;  // the waypoint is ready only once it listens here
constexpr uint16_t kReadinessPort = 15021;

}  // namespace

Result<StartedProxy> start_waypoint(sim::Cluster& cluster, const WaypointOptions& options) {
  const auto* pod = cluster.plan().find_pod(options.pod);
  if (!pod) return failf("waypoint: no pod {} in the simulated cluster", options.pod);
  auto binary = cluster.options().bin_dir / "waypoint";
  if (::access(binary.c_str(), X_OK) != 0) {
    return failf("waypoint: binary {} not found (build the waypoint target)", binary.string());
  }
  auto ca_cert = options.ca_dir / "ca-cert.pem";
  auto ca_key = options.ca_dir / "ca-key.pem";
  std::error_code ec;
  if (!fs::exists(ca_cert, ec) || !fs::exists(ca_key, ec)) {
    return failf("waypoint: no CA in {} (ca-cert.pem and ca-key.pem)", options.ca_dir.string());
  }
  if (!options.xds_address && options.local_config.empty()) {
    return fail("waypoint: neither an xDS address nor a local config file given");
  }
  if (!options.xds_address && !fs::exists(options.local_config, ec)) {
    return failf("waypoint: local config {} does not exist", options.local_config.string());
  }

  std::vector<std::string> argv = {binary.string(),
                                   "--instance-ip",
                                   pod->ip,
                                   "--hbone-address",
                                   fmt::format("{}:{}", pod->ip, kHbonePort),
                                   "--ca-cert",
                                   ca_cert.string(),
                                   "--ca-key",
                                   ca_key.string(),
                                   "--worker-threads",
                                   std::to_string(options.worker_threads),
                                   "--log-level",
                                   options.log_level};
  // Its identity is the pod's service account, as the peers' workload view expects.
  if (!pod->service_account.empty()) {
    argv.insert(argv.end(), {"--service-account", pod->service_account});
  }
  if (options.xds_address) {
    auto url = *options.xds_address;
    if (url.find("://") == std::string::npos) url = "http://" + url;
    argv.insert(argv.end(), {"--xds-address", url});
  } else {
    argv.insert(argv.end(), {"--local-xds-path", options.local_config.string()});
  }
  // The pod's namespace comes as POD_NAMESPACE from the simulator; the Gateway's name here.
  std::vector<std::string> env = {"WAYPOINT_NAME=" + options.name,
                                  "POD_NAMESPACE=" + pod->namespace_};

  auto name = pod_process_base(options.pod) + ".waypoint";
  auto pid = cluster.start_in_pod(options.pod, name, argv, env, sim::Cluster::PodCgroup::kSidecar);
  if (!pid) return tl::unexpected(wrap(pid.error(), "waypoint: starting " + name));

  auto ns = cluster.pod_netns(options.pod);
  if (!ns) return tl::unexpected(wrap(ns.error(), "waypoint: the netns of " + options.pod));
  auto timeout = cluster.options().ready_timeout;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string last;
  for (;;) {
    auto status = pod_http_status(*ns, "127.0.0.1", kReadinessPort, "/healthz/ready", 1s);
    if (status && *status == 200) break;
    last = status ? fmt::format("status {}", *status) : status.error().describe();
    if (!sim::process_alive(*pid)) {
      auto tail = process_log_tail(cluster.log_path(name));
      (void)cluster.stop_named(name, SIGKILL);  // reaps it; the log stays
      return failf("waypoint {} exited during start-up{}", name, tail);
    }
    if (std::chrono::steady_clock::now() > deadline) {
      auto tail = process_log_tail(cluster.log_path(name));
      (void)cluster.stop_named(name, SIGKILL);
      return failf("waypoint {} not ready after {} s (readiness: {}){}", name,
                   std::chrono::duration_cast<std::chrono::seconds>(timeout).count(), last, tail);
    }
    std::this_thread::sleep_for(50ms);
  }
  return StartedProxy{name, *pid, options.xds_address ? "waypoint" : "sidecar-waypoint",
                      options.pod};
}

}  // namespace zt::bench::mesh
