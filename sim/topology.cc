#include "sim/topology.h"

#include <arpa/inet.h>

#include <algorithm>
#include <map>
#include <set>

namespace zt::sim {

const PodPlan* Plan::find_pod(const std::string& key) const {
  for (const auto& n : nodes) {
    for (const auto& p : n.pods) {
      if (p.key() == key) return &p;
    }
  }
  return nullptr;
}

const NodePlan* Plan::find_node(const std::string& name) const {
  for (const auto& n : nodes) {
    if (n.name == name) return &n;
  }
  return nullptr;
}

Status validate_prefix(const std::string& prefix) {
  if (prefix.empty() || prefix.size() > 12) {
    return failf("prefix \"{}\" must be 1 to 12 characters", prefix);
  }
  for (char c : prefix) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (!ok) return failf("prefix \"{}\" may contain only letters and digits", prefix);
  }
  return {};
}

namespace {

bool parse_v4(const std::string& text, uint32_t& out) {
  in_addr a{};
  if (::inet_pton(AF_INET, text.c_str(), &a) != 1) return false;
  out = ntohl(a.s_addr);
  return true;
}

}  // namespace

Result<Plan> plan_cluster(const meshd::manifest::ObjectSet& objects, const std::string& prefix,
                          const std::vector<std::string>& extra_nodes) {
  if (auto ok = validate_prefix(prefix); !ok) return tl::unexpected(ok.error());
  Plan plan;
  plan.prefix = prefix;
  plan.fabric_netns = prefix + "-fabric";

  uint32_t fabric = 0;
  parse_v4("172.30.0.0", fabric);
  std::map<std::string, std::vector<PodPlan>> by_node;
  std::map<std::string, std::string> ip_owner;
  for (const auto& [key, pod] : objects.pods) {
    if (pod.node_name.empty()) {
      plan.skipped.push_back(key + ": not scheduled (no spec.nodeName)");
      continue;
    }
    if (pod.host_network) {
      plan.skipped.push_back(key + ": hostNetwork pods are not simulated");
      continue;
    }
    if (pod.terminating) {
      plan.skipped.push_back(key + ": terminating");
      continue;
    }
    std::string ip;
    for (const auto& candidate : pod.ips) {
      uint32_t v = 0;
      if (parse_v4(candidate, v)) {
        if ((v & 0xffffff00u) == fabric) {
          return failf("pod {}: IP {} is inside the simulator's fabric subnet {}", key, candidate,
                       kFabricSubnet);
        }
        ip = candidate;
        break;
      }
    }
    if (ip.empty()) {
      plan.skipped.push_back(key + ": no IPv4 pod IP (status.podIP)");
      continue;
    }
    if (auto [it, fresh] = ip_owner.emplace(ip, key); !fresh) {
      return failf("pods {} and {} have the same IP {}", it->second, key, ip);
    }
    PodPlan p;
    p.namespace_ = pod.meta.namespace_;
    p.name = pod.meta.name;
    p.uid = meshd::manifest::kube_uid("Pod", pod.meta);
    p.node = pod.node_name;
    p.service_account = pod.service_account_name;
    p.ip = ip;
    for (const auto& port : pod.ports) {
      if (port.protocol == "TCP" && port.container_port > 0 && port.container_port < 65536) {
        auto v = static_cast<uint16_t>(port.container_port);
        if (std::find(p.ports.begin(), p.ports.end(), v) == p.ports.end()) p.ports.push_back(v);
      }
    }
    if (p.ports.empty()) p.ports.push_back(kDefaultAppPort);
    const bool runs_waypoint = std::any_of(
        pod.commands.begin(), pod.commands.end(),
        [](const std::string& c) { return c == "waypoint" || c.ends_with("/waypoint"); });
    p.ext_authz = std::any_of(pod.commands.begin(), pod.commands.end(), [](const std::string& c) {
      return c == "ext-authz" || c.ends_with("/ext-authz");
    });
    if (runs_waypoint) {
      auto label = pod.meta.labels.find(kGatewayNameLabel);
      if (label == pod.meta.labels.end() || label->second.empty()) {
        return failf("pod {} runs the waypoint but has no label {} naming its Gateway", key,
                     kGatewayNameLabel);
      }
      p.waypoint = label->second;
      // Enrolled, its node agent would steer the waypoint's own HBONE port to ztunnel.
      auto mode = pod.meta.labels.find("istio.io/dataplane-mode");
      if (mode == pod.meta.labels.end() || mode->second != "none") {
        return failf(
            "pod {} runs the waypoint but lacks the label istio.io/dataplane-mode: none "
            "(a waypoint terminates HBONE itself and must never be captured)",
            key);
      }
    }
    p.cgroup_name = "pod" + p.uid;
    by_node[pod.node_name].push_back(std::move(p));
  }
  std::set<std::string> names;
  for (const auto& [name, _] : by_node) names.insert(name);
  for (const auto& n : extra_nodes) names.insert(n);
  if (names.size() > 200) return failf("{} nodes: the simulator supports up to 200", names.size());

  size_t i = 0;
  for (const auto& name : names) {
    NodePlan node;
    node.name = name;
    node.index = i;
    node.ip = fmt::format("172.30.0.{}", 10 + i);
    node.netns = prefix + "-" + name;
    node.fabric_if = fmt::format("v{}", i);
    auto it = by_node.find(name);
    if (it != by_node.end()) {
      size_t n = 0;
      for (auto& p : it->second) {
        p.index = n;
        p.netns = fmt::format("{}-{}", node.netns, n);
        p.node_if = fmt::format("p{}", n);
        ++n;
        node.pods.push_back(std::move(p));
      }
    }
    plan.nodes.push_back(std::move(node));
    ++i;
  }
  return plan;
}

}  // namespace zt::sim
