// A generated Kubernetes cluster as manifest files for meshd: Namespaces (optionally labelled
// istio.io/dataplane-mode=ambient), ServiceAccounts, Deployment-style Pods (generateName,
// ReplicaSet owner, pod-template-hash, spec.nodeName, status.podIP, Ready) and one Service per
// app. Unit tests compute snapshots from it; end-to-end tests point meshd at the directory.
//
// Layout: <dir>/<namespace>/namespace.yaml (Namespace + ServiceAccounts) and
// <dir>/<namespace>/workloads.yaml (Services + Pods), so the manifest source's recursion is used.
// Files are written atomically (temp file + rename), as an editor or a ConfigMap update would.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace zt::testing {

struct ClusterManifestOptions {
  std::vector<std::string> nodes{"node-0", "node-1"};
  std::vector<std::string> namespaces{"apps-0", "apps-1", "apps-2"};
  // Namespaces labelled istio.io/dataplane-mode=ambient (default: all of them).
  std::vector<std::string> ambient_namespaces{"apps-0", "apps-1", "apps-2"};
  size_t pods = 20;
  size_t apps_per_namespace = 2;  // each app: a ServiceAccount, a Service, a "Deployment" of pods
  // Pod i is on nodes[i % nodes.size()] in namespaces[i % namespaces.size()]. Its IP is
  // pod_ip(i, node) when set, else pod_ip_start + i (IPv4, counting up).
  std::string pod_ip_start = "10.244.0.10";
  std::function<std::string(size_t index, const std::string& node)> pod_ip;
  std::string service_ip_start = "10.96.0.10";  // Service k gets service_ip_start + k
  uint32_t service_port = 80;
  uint32_t target_port = 8080;
  bool named_target_port = true;  // targetPort: http (the pods' container port name)
};

struct GeneratedPod {
  std::string name, namespace_, node, ip, service_account, app;
};

struct GeneratedService {
  std::string name, namespace_, cluster_ip, app;
  uint32_t port = 0, target_port = 0;
};

struct ClusterManifests {
  std::vector<std::string> namespaces;
  std::vector<GeneratedPod> pods;
  std::vector<GeneratedService> services;
  std::vector<std::filesystem::path> files;
};

// Writes the cluster under `dir` (created if needed). Throws std::runtime_error on I/O failure
// or a bad IP option (test set-up code).
ClusterManifests write_cluster_manifests(const std::filesystem::path& dir,
                                         const ClusterManifestOptions& options = {});

// One Namespace document with the given labels.
std::string namespace_manifest(const std::string& name,
                               const std::map<std::string, std::string>& labels = {});

// Writes `content` to `path` atomically (temp file in the same directory, then rename).
void write_manifest_file(const std::filesystem::path& path, const std::string& content);

// IPv4 text `start` plus `n` ("10.0.0.250" + 10 = "10.0.1.4").
std::string ipv4_plus(const std::string& start, size_t n);

}  // namespace zt::testing
