// local_config_yaml: the ztunnel local config (LOCAL_XDS_PATH) of a sidecar-mode scenario. Written
// in YAML's flow style with JSON-quoted strings, so no value (a name, an address) can change the
// document's structure.
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "bench/mesh/sidecar/sidecar.h"

namespace zt::bench::mesh {
namespace {

// A double-quoted YAML scalar (the JSON subset of YAML).
std::string quote(std::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out += fmt::format("\\x{:02x}", static_cast<unsigned char>(c));
        } else {
          out += c;
        }
    }
  }
  out += '"';
  return out;
}

// Istio's workload uid layout: "<cluster>//Pod/<namespace>/<name>".
std::string workload_uid(const LocalWorkload& w) {
  return fmt::format("Kubernetes//Pod/{}/{}", w.namespace_, w.name);
}

// A waypoint on the default network, reached over HBONE.
std::string waypoint(const std::string& ip) {
  return fmt::format("{{destination: {}, hboneMtlsPort: 15008}}", quote("/" + ip));
}

}  // namespace

std::string local_config_yaml(const std::vector<LocalWorkload>& workloads,
                              const std::vector<LocalService>& services) {
  std::string out = "# ztunnel local config (LOCAL_XDS_PATH), written by mesh_bench\n";
  out += "workloads:";
  if (workloads.empty()) out += " []";
  out += '\n';
  for (const auto& w : workloads) {
    out += fmt::format("- uid: {}\n", quote(workload_uid(w)));
    out += fmt::format("  name: {}\n", quote(w.name));
    out += fmt::format("  namespace: {}\n", quote(w.namespace_));
    out += fmt::format("  serviceAccount: {}\n", quote(w.service_account));
    out += fmt::format("  workloadIps: [{}]\n", quote(w.ip));
    out += fmt::format("  protocol: {}\n", w.hbone ? "HBONE" : "TCP");
    if (!w.node.empty()) out += fmt::format("  node: {}\n", quote(w.node));
    if (!w.waypoint_ip.empty()) out += fmt::format("  waypoint: {}\n", waypoint(w.waypoint_ip));
  }
  out += "services:";
  if (services.empty()) out += " []";
  out += '\n';
  for (const auto& s : services) {
    uint16_t target = s.target_port != 0 ? s.target_port : s.port;
    out += fmt::format("- name: {}\n", quote(s.name));
    out += fmt::format("  namespace: {}\n", quote(s.namespace_));
    out += fmt::format("  hostname: {}\n",
                       quote(fmt::format("{}.{}.svc.cluster.local", s.name, s.namespace_)));
    out += fmt::format("  vips: [{}]\n", quote("/" + s.vip));
    out += fmt::format("  ports: {{{}: {}}}\n", s.port, target);
    if (!s.waypoint_ip.empty()) out += fmt::format("  waypoint: {}\n", waypoint(s.waypoint_ip));
    // Endpoints by the uid of the workload that has the IP; an IP no workload has cannot be an
    // endpoint in ztunnel's model (it would be dropped on load anyway), so it is noted only.
    std::string endpoints;
    std::string unknown;
    for (const auto& ip : s.endpoint_ips) {
      const LocalWorkload* found = nullptr;
      for (const auto& w : workloads) {
        if (w.ip == ip) {
          found = &w;
          break;
        }
      }
      if (!found) {
        unknown += fmt::format(" {}", ip);
        continue;
      }
      std::string uid = workload_uid(*found);
      endpoints += fmt::format("    {}: {{workloadUid: {}, port: {{{}: {}}}}}\n", quote(uid),
                               quote(uid), s.port, target);
    }
    if (!unknown.empty())
      out += fmt::format("  # not endpoints (no workload has the IP):{}\n", unknown);
    if (endpoints.empty()) {
      out += "  endpoints: {}\n";
    } else {
      out += "  endpoints:\n" + endpoints;
    }
  }
  return out;
}

}  // namespace zt::bench::mesh
