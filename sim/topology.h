// The simulated cluster as a plan: which nodes and pods exist, their addresses, and the names of
// every network namespace, interface and cgroup the simulator creates for them. Pure: computed
// from the manifests' objects, so it can be unit-tested and serialised into state.json.
//
// Addressing (DESIGN §9):
//   fabric netns "<prefix>-fabric": bridge "br0" 172.30.0.1/24 (meshd listens there);
//   node i: netns "<prefix>-<node>", eth0 172.30.0.<10+i>/24 (veth "v<i>" on the bridge side);
//   pod n on a node: netns "<prefix>-<node>-<n>", eth0 <pod ip>/32 (veth "p<n>" on the node side),
//   default route via the link-local gateway 169.254.1.1 (as Calico does): every node-side pod
//   veth carries 169.254.1.1/32 and the node routes <pod ip>/32 to that veth; other nodes route
//   <pod ip>/32 via this node's IP. So any pod IPs from the manifests work, no per-node CIDR. The
//   node's route to its pod has "src <node ip>": connections from the node (probes) come from the
//   node IP, as in a real cluster.
// Only IPv4 pod IPs are wired; a pod with none (or hostNetwork, or unscheduled) is skipped and
// listed in Plan::skipped with the reason.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/base/result.h"
#include "meshd/manifest/objects.h"

namespace zt::sim {

inline constexpr const char* kBridgeIp = "172.30.0.1";
inline constexpr const char* kFabricSubnet = "172.30.0.0/24";
inline constexpr const char* kPodGateway = "169.254.1.1";
inline constexpr uint16_t kMeshdPort = 15012;
inline constexpr uint16_t kDefaultAppPort = 8080;
inline constexpr const char* kGatewayNameLabel = "gateway.networking.k8s.io/gateway-name";

struct PodPlan {
  std::string namespace_, name, uid, node, service_account;
  std::string ip;               // IPv4, textual
  std::vector<uint16_t> ports;  // TCP container ports the echo app listens on (unused: waypoint)
  // A waypoint pod (a container whose command is our `waypoint`, e.g. "/usr/local/bin/waypoint",
  // as in deploy/daemonset/waypoint): the Gateway it serves, from its label
  // gateway.networking.k8s.io/gateway-name. The simulator runs build/bin/waypoint there instead
  // of the echo app. "" for every other pod.
  std::string waypoint;
  // A pod whose container's command is `ext-authz` (e.g. "/usr/local/bin/ext-authz"): an HTTP
  // authorizer (http-echo --ext-authz, as Istio's sample ext-authz server decides).
  bool ext_authz = false;
  size_t index = 0;         // n: position on its node
  std::string netns;        // "<prefix>-<node>-<n>"
  std::string node_if;      // node-side veth, "p<n>"
  std::string cgroup_name;  // "pod<uid>", below the node's cgroup
  std::string key() const { return namespace_ + "/" + name; }
};

struct NodePlan {
  std::string name;
  size_t index = 0;
  std::string ip;         // 172.30.0.<10+i>
  std::string netns;      // "<prefix>-<node>"
  std::string fabric_if;  // bridge-side veth, "v<i>"
  std::vector<PodPlan> pods;
};

struct Plan {
  std::string prefix;
  std::string fabric_netns;  // "<prefix>-fabric"
  std::vector<NodePlan> nodes;
  std::vector<std::string> skipped;  // "ns/pod: reason"

  const PodPlan* find_pod(const std::string& key) const;  // "namespace/name"
  const NodePlan* find_node(const std::string& name) const;
};

// Prefixes are 1-12 letters or digits: no '-', so "<prefix>-" never matches another prefix's
// names, and interface/netns names stay short.
Status validate_prefix(const std::string& prefix);

// The plan for the objects' pods. `extra_nodes` adds nodes that have no pod (listed after the
// nodes named by pods, all sorted by name). Fails on duplicate pod IPs, a pod IP inside the
// fabric subnet, or more than 200 nodes.
Result<Plan> plan_cluster(const meshd::manifest::ObjectSet& objects, const std::string& prefix,
                          const std::vector<std::string>& extra_nodes = {});

}  // namespace zt::sim
