// Our sidecar mode, for the comparison with ambient (issue 7): one ztunnel per pod in dedicated
// mode (PROXY_MODE=dedicated, the pod's own workload), in a cgroup next to the pod's
// (sim::Cluster::PodCgroup::kSidecar) and inside the pod's netns, behind the same eBPF capture as
// ambient but with the pod's own programs pointing at its own listeners (one sidecar pin root per
// node, apart from the node agent's), so the capture points at the pod's own proxy instead of the
// node's:
//   outbound: the app's connect -> 127.0.0.1:15001 in the pod -> this ztunnel -> HBONE;
//   inbound:  sk_lookup assigns <pod ip>:15008 / any other port to this ztunnel's listeners.
// Workloads come from a ztunnel local config file (the workloads of both ends), certificates
// from the built-in CA loaded from the simulated cluster's CA directory (meshd's, so every
// proxy of the cluster shares one trust root).
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "bench/mesh/plan/topology.h"
#include "common/base/result.h"

namespace zt::sim {
class Cluster;
}

namespace zt::bench::mesh {

// One workload of a ztunnel local config (LOCAL_XDS_PATH, ztunnel's camelCase YAML).
struct LocalWorkload {
  std::string namespace_, name, ip, node;
  std::string service_account = "default";
  bool hbone = true;        // protocol HBONE (captured pod) or TCP
  std::string waypoint_ip;  // non-empty: the workload's waypoint (HBONE on 15008)
};
// A Service of the local config: VIP:port -> endpoints (workloads by ip), optional waypoint.
struct LocalService {
  std::string namespace_, name, vip;
  uint16_t port = 0, target_port = 0;
  std::vector<std::string> endpoint_ips;
  std::string waypoint_ip;
};

// The local config YAML for these workloads and services (what ztunnel and the waypoint read
// from LOCAL_XDS_PATH).
std::string local_config_yaml(const std::vector<LocalWorkload>& workloads,
                              const std::vector<LocalService>& services = {});

struct SidecarOptions {
  std::string pod;                     // "ns/name" in the cluster's plan
  std::filesystem::path local_config;  // written by the caller (local_config_yaml)
  std::filesystem::path ca_dir;        // ca-cert.pem + ca-key.pem (cluster.state_dir() / "ca")
  std::string log_level = "warn";
};

// Enrolls the pod in the node's sidecar capture (pins under sidecar_pin_root(), removed by the
// cluster's down()), starts the sidecar ztunnel (process "<ns>.<pod>.ztunnel") and
// waits until it is ready (readiness inside the pod's netns). Fails naming the step, with the
// end of the sidecar's log.
Result<StartedProxy> start_sidecar_ztunnel(sim::Cluster& cluster, const SidecarOptions& options);

// The pin root of the sidecar capture of the pod's node (cluster.bpf_pin_root("sc<node
// index>")), shared by the node's sidecar pods, e.g. to read its counters with
// bpf::CaptureMaps::open(...)->counters(). Empty for a pod the cluster does not have.
std::filesystem::path sidecar_pin_root(const sim::Cluster& cluster, const std::string& pod);

}  // namespace zt::bench::mesh
