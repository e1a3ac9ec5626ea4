#include <fstream>
#include <iterator>

#include <gtest/gtest.h>

#include "meshd/ambient/compute.h"
#include "meshd/manifest/source.h"
#include "tests/support/cluster_manifests.h"
#include "tests/support/mesh.h"

namespace zt::meshd::ambient {
namespace {

TEST(GeneratedCluster, ThreeNamespacesTwentyPodsBecomeTheWorkloadApi) {
  testing::TempDir dir;
  testing::ClusterManifestOptions options;
  options.nodes = {"node-a", "node-b"};
  auto cluster = testing::write_cluster_manifests(dir.path(), options);
  manifest::ManifestSource source(dir.path());
  auto loaded = source.reload();
  ASSERT_TRUE(loaded.errors.empty()) << loaded.errors.front().message;
  auto s = compute(*loaded.objects, Options{});

  size_t workloads = 0, services = 0;
  for (const auto& [key, address] : s.addresses) {
    if (address.has_workload()) ++workloads;
    if (address.has_service()) ++services;
  }
  EXPECT_EQ(workloads, 20u);
  EXPECT_EQ(services, 6u);
  for (const auto& pod : cluster.pods) {
    auto it = s.addresses.find(pod_uid("Kubernetes", pod.namespace_, pod.name));
    ASSERT_NE(it, s.addresses.end()) << pod.name;
    const auto& w = it->second.workload();
    EXPECT_EQ(w.tunnel_protocol(), istio::workload::HBONE);
    EXPECT_EQ(w.node(), pod.node);
    EXPECT_EQ(w.service_account(), pod.service_account);
    EXPECT_EQ(w.workload_name(), pod.app);
    EXPECT_EQ(w.workload_type(), istio::workload::DEPLOYMENT);
    auto svc_key = pod.namespace_ + "/" + service_hostname(pod.app, pod.namespace_);
    ASSERT_EQ(w.services().count(svc_key), 1u) << pod.name;
    const auto& ports = w.services().at(svc_key).ports();
    ASSERT_EQ(ports.size(), 1);
    EXPECT_EQ(ports[0].service_port(), 80u);
    EXPECT_EQ(ports[0].target_port(), 8080u);
    EXPECT_TRUE(s.identities_by_node.at(pod.node).count(
        "spiffe://cluster.local/ns/" + pod.namespace_ + "/sa/" + pod.service_account));
  }
  for (const auto& svc : cluster.services) {
    auto it = s.addresses.find(svc.namespace_ + "/" + service_hostname(svc.name, svc.namespace_));
    ASSERT_NE(it, s.addresses.end());
    EXPECT_EQ(it->second.service().addresses_size(), 1);
  }
  EXPECT_EQ(s.identities_by_node.size(), 2u);
}

TEST(GeneratedCluster, RelabellingANamespaceFlipsItsPods) {
  testing::TempDir dir;
  auto cluster = testing::write_cluster_manifests(dir.path());
  manifest::ManifestSource source(dir.path());
  ASSERT_TRUE(source.reload().errors.empty());

  // Drop the ambient label from apps-1 (the Namespace document is first in namespace.yaml).
  auto ns_file = dir.path() / "apps-1" / "namespace.yaml";
  std::ifstream in(ns_file);
  std::string content((std::istreambuf_iterator<char>(in)), {});
  auto end_of_ns = content.find("---");
  testing::write_manifest_file(ns_file,
                               testing::namespace_manifest("apps-1") + content.substr(end_of_ns));
  auto loaded = source.reload();
  ASSERT_TRUE(loaded.errors.empty()) << loaded.errors.front().message;
  ASSERT_TRUE(loaded.changed);
  auto s = compute(*loaded.objects, Options{});
  for (const auto& pod : cluster.pods) {
    const auto& w = s.addresses.at(pod_uid("Kubernetes", pod.namespace_, pod.name)).workload();
    EXPECT_EQ(w.tunnel_protocol(),
              pod.namespace_ == "apps-1" ? istio::workload::NONE : istio::workload::HBONE)
        << pod.name;
  }
}

TEST(GeneratedCluster, CustomPodIpsAndNumericTargets) {
  testing::TempDir dir;
  testing::ClusterManifestOptions options;
  options.pods = 4;
  options.namespaces = {"one"};
  options.ambient_namespaces = {};
  options.named_target_port = false;
  options.pod_ip = [](size_t i, const std::string&) { return "127.0.1." + std::to_string(i + 1); };
  auto cluster = testing::write_cluster_manifests(dir.path(), options);
  EXPECT_EQ(cluster.pods[3].ip, "127.0.1.4");
  manifest::ManifestSource source(dir.path());
  auto loaded = source.reload();
  ASSERT_TRUE(loaded.errors.empty());
  auto s = compute(*loaded.objects, Options{});
  const auto& svc = s.addresses.at("one/" + service_hostname("app-0", "one")).service();
  EXPECT_EQ(svc.ports(0).target_port(), 8080u);
  const auto& w = s.addresses.at(pod_uid("Kubernetes", "one", cluster.pods[0].name)).workload();
  EXPECT_EQ(w.tunnel_protocol(), istio::workload::NONE);
  EXPECT_EQ(w.addresses(0), std::string("\x7f\x00\x01\x01", 4));
}

}  // namespace
}  // namespace zt::meshd::ambient
