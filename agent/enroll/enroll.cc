#include "agent/enroll/enroll.h"

#include <fmt/format.h>

namespace zt::agent {

namespace manifest = meshd::manifest;

namespace {

std::string_view label(const manifest::Labels& labels, std::string_view key) {
  auto it = labels.find(std::string(key));
  return it == labels.end() ? std::string_view{} : std::string_view(it->second);
}

}  // namespace

Decision decide(const manifest::Pod& pod, const manifest::ObjectSet& objects,
                std::string_view node) {
  if (pod.node_name != node) {
    return {false,
            pod.node_name.empty() ? "not scheduled" : fmt::format("on node {}", pod.node_name)};
  }
  if (pod.host_network) return {false, "hostNetwork"};
  if (pod.terminating) return {false, "terminating"};
  if (pod.phase == "Succeeded" || pod.phase == "Failed") {
    return {false, fmt::format("phase {}", pod.phase)};
  }
  if (label(pod.meta.labels, kDataplaneModeLabel) == "none") {
    return {false, fmt::format("pod label {}=none", kDataplaneModeLabel)};
  }
  auto ns = objects.namespaces.find(pod.meta.namespace_);
  if (ns == objects.namespaces.end()) {
    return {false, fmt::format("namespace {} not found", pod.meta.namespace_)};
  }
  if (label(ns->second.meta.labels, kDataplaneModeLabel) != "ambient") {
    return {false, "namespace not ambient"};
  }
  return {true, ""};
}

std::map<std::string, DesiredPod> desired_pods(const manifest::ObjectSet& objects,
                                               std::string_view node) {
  std::map<std::string, DesiredPod> out;
  for (const auto& [_, pod] : objects.pods) {
    if (!decide(pod, objects, node).enroll) continue;
    auto uid = manifest::kube_uid("Pod", pod.meta);
    out[uid] = DesiredPod{
        .uid = uid,
        .namespace_name = pod.meta.namespace_,
        .name = pod.meta.name,
        .service_account = pod.service_account_name,
        .ips = pod.ips,
    };
  }
  return out;
}

std::string release_reason(const manifest::ObjectSet& objects, std::string_view uid,
                           std::string_view node) {
  for (const auto& [_, pod] : objects.pods) {
    if (manifest::kube_uid("Pod", pod.meta) != uid) continue;
    auto d = decide(pod, objects, node);
    return d.enroll ? "replaced" : d.reason;
  }
  return "pod deleted";
}

}  // namespace zt::agent
