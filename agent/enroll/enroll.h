// Which pods this node's agent captures (DESIGN §3): a pure function of the objects and the node
// name, so every rule is unit-tested without a kernel.
//
// A pod is enrolled when all of these hold:
//   - spec.nodeName is this node;
//   - not hostNetwork (its sockets are the node's: nothing of its own to capture);
//   - not terminating (metadata.deletionTimestamp) and status.phase is not Succeeded/Failed;
//   - the pod's label istio.io/dataplane-mode is not "none" (any other pod value is ignored);
//   - its namespace exists and has the label istio.io/dataplane-mode=ambient.
// Pods are keyed by kube_uid("Pod", meta): the key of their pinned links and their ZDS uid.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "meshd/manifest/objects.h"

namespace zt::agent {

inline constexpr std::string_view kDataplaneModeLabel = "istio.io/dataplane-mode";

struct DesiredPod {
  std::string uid;
  std::string namespace_name;
  std::string name;
  std::string service_account;
  std::vector<std::string> ips;  // status.podIPs as written (may be empty)

  std::string describe() const { return namespace_name + "/" + name; }  // "ns/name"
  bool operator==(const DesiredPod&) const = default;
};

struct Decision {
  bool enroll = false;
  std::string reason;  // why not, when !enroll ("namespace not ambient", ...)
};

// The rule above for one pod; `objects` supplies the namespace.
Decision decide(const meshd::manifest::Pod& pod, const meshd::manifest::ObjectSet& objects,
                std::string_view node);

// Every pod of `objects` that `node` enrolls, by uid.
std::map<std::string, DesiredPod> desired_pods(const meshd::manifest::ObjectSet& objects,
                                               std::string_view node);

// Why the pod with `uid` is not (or no longer) enrolled on `node`: decide()'s reason, or
// "pod deleted" when no pod of `objects` has that uid.
std::string release_reason(const meshd::manifest::ObjectSet& objects, std::string_view uid,
                           std::string_view node);

}  // namespace zt::agent
