#include "tests/support/cluster_manifests.h"

#include <arpa/inet.h>

#include <fstream>
#include <stdexcept>

#include <fmt/format.h>

namespace zt::testing {
namespace {

std::string labels_yaml(const std::map<std::string, std::string>& labels, int indent) {
  if (labels.empty()) return "";
  std::string pad(indent, ' ');
  std::string out = pad + "labels:\n";
  for (const auto& [k, v] : labels) out += fmt::format("{}  {}: \"{}\"\n", pad, k, v);
  return out;
}

// A stable fake pod-template-hash / pod suffix from a number.
std::string hash_of(size_t n, size_t width) {
  static const char* kAlphabet = "bcdfghjklmnpqrstvwxz2456789";
  std::string out;
  size_t x = n * 7 + 3;  // bijective below 27^width: names stay unique
  for (size_t i = 0; i < width; ++i) {
    out += kAlphabet[x % 27];
    x /= 27;
  }
  return out;
}

}  // namespace

std::string ipv4_plus(const std::string& start, size_t n) {
  in_addr addr{};
  if (inet_pton(AF_INET, start.c_str(), &addr) != 1) {
    throw std::runtime_error("not an IPv4 address: " + start);
  }
  uint32_t host = ntohl(addr.s_addr) + static_cast<uint32_t>(n);
  addr.s_addr = htonl(host);
  char text[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &addr, text, sizeof(text));
  return text;
}

void write_manifest_file(const std::filesystem::path& path, const std::string& content) {
  std::filesystem::create_directories(path.parent_path());
  // Built in steps: g++ 12 reports a false -Wrestrict for `"." + std::string`.
  std::string name(".");
  name.append(path.filename().string()).append(".tmp");
  auto temp = path.parent_path() / name;
  {
    std::ofstream out(temp, std::ios::trunc | std::ios::binary);
    out << content;
    if (!out) throw std::runtime_error("cannot write " + temp.string());
  }
  std::filesystem::rename(temp, path);
}

std::string namespace_manifest(const std::string& name,
                               const std::map<std::string, std::string>& labels) {
  return fmt::format("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {}\n{}", name,
                     labels_yaml(labels, 2));
}

ClusterManifests write_cluster_manifests(const std::filesystem::path& dir,
                                         const ClusterManifestOptions& options) {
  ClusterManifests out;
  out.namespaces = options.namespaces;
  if (options.namespaces.empty() || options.nodes.empty() || options.apps_per_namespace == 0) {
    throw std::runtime_error("cluster manifests need namespaces, nodes and apps");
  }
  std::map<std::string, std::string> ns_docs, workload_docs;
  size_t service_index = 0;
  for (const auto& ns : options.namespaces) {
    std::map<std::string, std::string> labels;
    for (const auto& a : options.ambient_namespaces) {
      if (a == ns) labels["istio.io/dataplane-mode"] = "ambient";
    }
    std::string doc = namespace_manifest(ns, labels);
    for (size_t app = 0; app < options.apps_per_namespace; ++app) {
      auto name = fmt::format("app-{}", app);
      doc += fmt::format(
          "---\napiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: {}\n"
          "  namespace: {}\n",
          name, ns);
      GeneratedService svc{name,
                           ns,
                           ipv4_plus(options.service_ip_start, service_index++),
                           name,
                           options.service_port,
                           options.target_port};
      workload_docs[ns] += fmt::format(
          "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: {0}\n  namespace: {1}\n"
          "  labels:\n    app: {0}\nspec:\n  type: ClusterIP\n  clusterIP: {2}\n"
          "  clusterIPs: [{2}]\n  selector:\n    app: {0}\n  ports:\n  - name: http\n"
          "    port: {3}\n    targetPort: {4}\n    protocol: TCP\n",
          name, ns, svc.cluster_ip, svc.port,
          options.named_target_port ? std::string("http") : std::to_string(svc.target_port));
      out.services.push_back(std::move(svc));
    }
    ns_docs[ns] = std::move(doc);
  }
  for (size_t i = 0; i < options.pods; ++i) {
    const auto& ns = options.namespaces[i % options.namespaces.size()];
    const auto& node = options.nodes[i % options.nodes.size()];
    size_t app_index = (i / options.namespaces.size()) % options.apps_per_namespace;
    auto app = fmt::format("app-{}", app_index);
    auto template_hash = hash_of(app_index * 31 + ns.size(), 9);
    auto replica_set = fmt::format("{}-{}", app, template_hash);
    auto name = fmt::format("{}-{}", replica_set, hash_of(i, 5));
    auto ip = options.pod_ip ? options.pod_ip(i, node) : ipv4_plus(options.pod_ip_start, i);
    workload_docs[ns] += fmt::format(
        "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  generateName: {rs}-\n"
        "  namespace: {ns}\n  labels:\n    app: {app}\n    version: v1\n"
        "    pod-template-hash: {hash}\n  ownerReferences:\n  - apiVersion: apps/v1\n"
        "    kind: ReplicaSet\n    name: {rs}\n    controller: true\n    blockOwnerDeletion: true\n"
        "spec:\n  nodeName: {node}\n  serviceAccountName: {app}\n  containers:\n"
        "  - name: app\n    image: example/app:1\n    ports:\n    - name: http\n"
        "      containerPort: {port}\n      protocol: TCP\n"
        "status:\n  phase: Running\n  podIP: {ip}\n  podIPs:\n  - ip: {ip}\n"
        "  conditions:\n  - type: Ready\n    status: \"True\"\n",
        fmt::arg("name", name), fmt::arg("rs", replica_set), fmt::arg("ns", ns),
        fmt::arg("app", app), fmt::arg("hash", template_hash), fmt::arg("node", node),
        fmt::arg("port", options.target_port), fmt::arg("ip", ip));
    out.pods.push_back({name, ns, node, ip, app, app});
  }
  for (const auto& ns : options.namespaces) {
    auto ns_file = dir / ns / "namespace.yaml";
    write_manifest_file(ns_file, ns_docs[ns]);
    out.files.push_back(ns_file);
    auto workloads_file = dir / ns / "workloads.yaml";
    write_manifest_file(workloads_file, workload_docs[ns]);
    out.files.push_back(workloads_file);
  }
  return out;
}

}  // namespace zt::testing
