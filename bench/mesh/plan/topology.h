// The benchmark cluster of mesh_bench (issue 7, DESIGN §10): which pods exist, where, with which
// addresses, for every scenario. One simulated cluster (sim/cluster.h) holds every scenario side
// by side; the load is applied to one scenario at a time, so idle proxies of the others cost
// (almost) nothing while a scenario is measured.
//
//   node-0: every scenario's client pod (and the scale pods); node-1: every server pod and the
//   waypoints. A request therefore always crosses the node link, as in Istio's published runs.
//
//   scenario          namespace    client (node-0)  server (node-1)  waypoint pod   label
//   no-mesh           nomesh       10.244.0.10      10.244.1.10      -              none
//   ambient           ambient      10.244.0.11      10.244.1.11      -              ambient
//   ambient-waypoint  ambient-wp   10.244.0.12      10.244.1.12      10.244.1.13    ambient;
//   Service
//                                                                                   "server"
//                                                                                   VIP 10.96.0.12
//                                                                                   uses waypoint
//   sidecar           sidecar      10.244.0.14      10.244.1.14      -              none (own
//   capture) sidecar-l7        sidecar-l7   10.244.0.15      10.244.1.15      10.244.1.16    none
//   (own capture) haproxy           haproxy      10.244.0.17      10.244.1.17      - none
//
// Pods are named "client", "server" and "waypoint"; every pod runs http-echo on kAppPort (the
// waypoint pods on kWaypointPodEchoPort, unused). Server pods additionally get an iperf3 server on
// kBulkPort (started by the runner). Waypoint pods carry istio.io/dataplane-mode=none and
// gateway.networking.k8s.io/gateway-name=waypoint, service account "waypoint".
// The scale pods ("scale-<n>/app", n = 1..N, node-0, 10.244.2.<n>) serve the memory-vs-pods
// curves: their namespaces start unlabelled; the runner labels them ambient one by one (ambient
// curve) or starts a sidecar ztunnel in each (sidecar curve).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace zt::bench::mesh {

inline constexpr const char* kClientNode = "node-0";
inline constexpr const char* kServerNode = "node-1";
inline constexpr uint16_t kAppPort = 8080;                // http-echo in every pod
inline constexpr uint16_t kBulkPort = 5201;               // iperf3 -s in server pods
inline constexpr uint16_t kWaypointPodEchoPort = 9000;    // the waypoint pods' (unused) echo
inline constexpr const char* kWaypointName = "waypoint";  // Gateway and pod name
inline constexpr int kMaxScalePods = 200;

enum class Mode { kNoMesh, kAmbient, kAmbientWaypoint, kSidecar, kSidecarL7, kHaproxy };

struct ScenarioPlan {
  Mode mode;
  const char* name;         // "no-mesh", "ambient", ... (report and --scenarios)
  const char* namespace_;   // Kubernetes namespace of its pods
  const char* client_ip;    // pod "client" on node-0
  const char* server_ip;    // pod "server" on node-1
  const char* waypoint_ip;  // pod "waypoint" on node-1, or "" (no waypoint)
  const char* service_vip;  // Service "server" (port kAppPort), or "" (no Service)
  const char* description;  // one line for the report

  std::string client_pod() const { return std::string(namespace_) + "/client"; }
  std::string server_pod() const { return std::string(namespace_) + "/server"; }
  std::string waypoint_pod() const { return std::string(namespace_) + "/" + kWaypointName; }
};

inline const std::vector<ScenarioPlan>& scenario_plans() {
  static const std::vector<ScenarioPlan> plans = {
      {Mode::kNoMesh, "no-mesh", "nomesh", "10.244.0.10", "10.244.1.10", "", "",
       "no mesh: pod to pod over the node link, plaintext"},
      {Mode::kAmbient, "ambient", "ambient", "10.244.0.11", "10.244.1.11", "", "",
       "ambient L4: eBPF capture, node-0 ztunnel -> HBONE mTLS -> node-1 ztunnel"},
      {Mode::kAmbientWaypoint, "ambient-waypoint", "ambient-wp", "10.244.0.12", "10.244.1.12",
       "10.244.1.13", "10.96.0.12",
       "ambient + waypoint: ztunnel -> waypoint (L7) -> ztunnel, addressed by the Service VIP"},
      {Mode::kSidecar, "sidecar", "sidecar", "10.244.0.14", "10.244.1.14", "", "",
       "our sidecar mode, L4: a dedicated ztunnel in each pod behind the same eBPF capture"},
      {Mode::kSidecarL7, "sidecar-l7", "sidecar-l7", "10.244.0.15", "10.244.1.15", "10.244.1.16",
       "", "our sidecar mode, L7: per-pod ztunnels plus a waypoint dedicated to the server pod"},
      {Mode::kHaproxy, "haproxy", "haproxy", "10.244.0.17", "10.244.1.17", "", "",
       "HAProxy sidecars (Debian's haproxy, mode tcp) with TLS 1.3 mTLS between them"},
  };
  return plans;
}

// Scale pod n (1-based): namespace "scale-<n>", pod "app", node-0, 10.244.2.<n>.
inline std::string scale_namespace(int n) { return "scale-" + std::to_string(n); }
inline std::string scale_pod(int n) { return scale_namespace(n) + "/app"; }
inline std::string scale_pod_ip(int n) { return "10.244.2." + std::to_string(n); }

// A proxy process a scenario charges its CPU and memory to.
struct StartedProxy {
  std::string process;  // its sim::Cluster process name (Cluster::pid_of, logs/<name>.log)
  pid_t pid = -1;
  std::string role;  // "ztunnel" (a node's), "waypoint", "sidecar-ztunnel", "sidecar-waypoint",
                     // "haproxy"
  std::string pod;   // the pod it runs next to ("ns/name"); empty for a node's ztunnel
};

}  // namespace zt::bench::mesh
