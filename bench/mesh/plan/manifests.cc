#include "bench/mesh/plan/manifests.h"

#include <fstream>
#include <string>
#include <system_error>

#include <fmt/format.h>

#include "bench/mesh/plan/topology.h"

namespace zt::bench::mesh {
namespace fs = std::filesystem;

namespace {

std::string namespace_doc(const std::string& name, bool ambient) {
  std::string labels = ambient ? "  labels:\n    istio.io/dataplane-mode: ambient\n" : "";
  return fmt::format("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {}\n{}", name, labels);
}

std::string service_account_doc(const std::string& ns, const std::string& name) {
  return fmt::format(
      "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: {}\n  namespace: {}\n", name, ns);
}

struct PodDoc {
  std::string ns, name, node, ip, service_account = "default";
  uint16_t port = kAppPort;
  std::string extra_labels;  // indented "    key: value\n" lines
};

std::string pod_doc(const PodDoc& p) {
  return fmt::format(
      "apiVersion: v1\n"
      "kind: Pod\n"
      "metadata:\n"
      "  name: {name}\n"
      "  namespace: {ns}\n"
      "  labels:\n"
      "    app: {name}\n"
      "{labels}"
      "spec:\n"
      "  nodeName: {node}\n"
      "  serviceAccountName: {sa}\n"
      "  containers:\n"
      "  - name: app\n"
      "    image: http-echo\n"
      "    ports:\n"
      "    - containerPort: {port}\n"
      "status:\n"
      "  phase: Running\n"
      "  podIP: {ip}\n"
      "  podIPs:\n"
      "  - ip: {ip}\n",
      fmt::arg("name", p.name), fmt::arg("ns", p.ns), fmt::arg("labels", p.extra_labels),
      fmt::arg("node", p.node), fmt::arg("sa", p.service_account), fmt::arg("port", p.port),
      fmt::arg("ip", p.ip));
}

// The waypoint's Service VIP is routed through the waypoint by the use-waypoint label; the
// Gateway's status address is the waypoint pod's IP (what a Gateway controller publishes).
std::string waypoint_docs(const ScenarioPlan& s) {
  std::string out;
  out += "---\n" + service_account_doc(s.namespace_, kWaypointName);
  out += "---\n" + pod_doc({s.namespace_, kWaypointName, kServerNode, s.waypoint_ip, kWaypointName,
                            kWaypointPodEchoPort,
                            "    istio.io/dataplane-mode: none\n"
                            "    gateway.networking.k8s.io/gateway-name: waypoint\n"});
  out += fmt::format(
      "---\n"
      "apiVersion: gateway.networking.k8s.io/v1\n"
      "kind: Gateway\n"
      "metadata:\n"
      "  name: {wp}\n"
      "  namespace: {ns}\n"
      "  labels:\n"
      "    istio.io/waypoint-for: service\n"
      "spec:\n"
      "  gatewayClassName: istio-waypoint\n"
      "  listeners:\n"
      "  - name: mesh\n"
      "    port: 15008\n"
      "    protocol: HBONE\n"
      "status:\n"
      "  addresses:\n"
      "  - type: IPAddress\n"
      "    value: {ip}\n",
      fmt::arg("wp", kWaypointName), fmt::arg("ns", s.namespace_), fmt::arg("ip", s.waypoint_ip));
  return out;
}

std::string service_doc(const ScenarioPlan& s, bool use_waypoint) {
  std::string labels =
      use_waypoint ? fmt::format("  labels:\n    istio.io/use-waypoint: {}\n", kWaypointName) : "";
  return fmt::format(
      "apiVersion: v1\n"
      "kind: Service\n"
      "metadata:\n"
      "  name: server\n"
      "  namespace: {ns}\n"
      "{labels}"
      "spec:\n"
      "  type: ClusterIP\n"
      "  clusterIP: {vip}\n"
      "  selector:\n"
      "    app: server\n"
      "  ports:\n"
      "  - name: http\n"
      "    port: {port}\n"
      "    targetPort: {port}\n",
      fmt::arg("ns", s.namespace_), fmt::arg("labels", labels), fmt::arg("vip", s.service_vip),
      fmt::arg("port", kAppPort));
}

Status write_file(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
  out.flush();
  if (!out) return failf("cannot write {}", path.string());
  return {};
}

}  // namespace

Status write_bench_manifests(const fs::path& dir, int scale_pods) {
  if (scale_pods < 0 || scale_pods > kMaxScalePods) {
    return failf("scale pods: {} is outside 0..{}", scale_pods, kMaxScalePods);
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return failf("cannot create {}: {}", dir.string(), ec.message());
  for (const auto& s : scenario_plans()) {
    bool ambient = s.mode == Mode::kAmbient || s.mode == Mode::kAmbientWaypoint;
    std::string text = fmt::format("# mesh_bench scenario {}: {}\n", s.name, s.description);
    text += namespace_doc(s.namespace_, ambient);
    text += "---\n" + pod_doc({s.namespace_, "client", kClientNode, s.client_ip});
    text += "---\n" + pod_doc({s.namespace_, "server", kServerNode, s.server_ip});
    if (*s.service_vip) text += "---\n" + service_doc(s, s.mode == Mode::kAmbientWaypoint);
    if (*s.waypoint_ip) text += waypoint_docs(s);
    if (auto ok = write_file(dir / (std::string(s.namespace_) + ".yaml"), text); !ok) return ok;
  }
  for (int n = 1; n <= scale_pods; ++n) {
    std::string text = namespace_doc(scale_namespace(n), false);
    text += "---\n" + pod_doc({scale_namespace(n), "app", kClientNode, scale_pod_ip(n)});
    if (auto ok = write_file(dir / (scale_namespace(n) + ".yaml"), text); !ok) return ok;
  }
  return {};
}

}  // namespace zt::bench::mesh
