// A waypoint (build/bin/waypoint) in a pod of the simulated cluster, for the ambient-waypoint and
// sidecar-l7 scenarios of mesh_bench. The pod is a plain pod with the opt-out label (never
// captured); the waypoint runs in the pod's sidecar cgroup and netns and serves HBONE on
// <pod ip>:15008.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include "bench/mesh/plan/topology.h"
#include "common/base/result.h"

namespace zt::sim {
class Cluster;
}

namespace zt::bench::mesh {

struct WaypointOptions {
  std::string pod;                   // "ns/waypoint"
  std::string name = kWaypointName;  // the Gateway's name (WAYPOINT_NAME)
  std::filesystem::path ca_dir;      // meshd's CA: ca-cert.pem + ca-key.pem
  // ambient-waypoint: workloads and the WaypointConfig from meshd over Delta ADS
  // (cluster.meshd_address()); sidecar-l7: workloads from this local config file instead (no L7
  // configuration: every request goes to the destination itself).
  std::optional<std::string> xds_address;
  std::filesystem::path local_config;
  std::string log_level = "warn";
  int worker_threads = 2;  // --worker-threads (the waypoint's default)
};

// Starts the waypoint (process "<ns>.<pod>.waypoint") and waits until it is ready (its readiness
// endpoint inside the pod's netns). Fails naming the step, with the end of its log. The role of
// the result is "waypoint" with xds_address, else "sidecar-waypoint".
Result<StartedProxy> start_waypoint(sim::Cluster& cluster, const WaypointOptions& options);

}  // namespace zt::bench::mesh
