#include <gtest/gtest.h>

#include "tests/unit/meshd_ambient/objects.h"

namespace zt::meshd::ambient {
namespace {

using namespace test;
using istio::workload::HBONE;
using istio::workload::NONE;

const Options kOptions{};

TEST(Enrollment, AmbientNamespaceMakesHbone) {
  auto s = compute(objects_from(ns_yaml("shop", "{istio.io/dataplane-mode: ambient}") +
                                pod_yaml("shop", "web", "10.0.0.1") + ns_yaml("legacy") +
                                pod_yaml("legacy", "old", "10.0.0.2")),
                   kOptions);
  EXPECT_EQ(workload(s, "shop", "web").tunnel_protocol(), HBONE);
  EXPECT_EQ(workload(s, "legacy", "old").tunnel_protocol(), NONE);  // still a Workload
}

TEST(Enrollment, PodOptOutWins) {
  auto s =
      compute(objects_from(ns_yaml("shop", "{istio.io/dataplane-mode: ambient}") +
                           pod_yaml("shop", "web", "10.0.0.1", "{istio.io/dataplane-mode: none}")),
              kOptions);
  EXPECT_EQ(workload(s, "shop", "web").tunnel_protocol(), NONE);
}

TEST(Enrollment, PodLabelEnrollsInAPlainNamespace) {
  auto s = compute(objects_from(ns_yaml("shop") + pod_yaml("shop", "web", "10.0.0.1",
                                                           "{istio.io/dataplane-mode: ambient}")),
                   kOptions);
  EXPECT_EQ(workload(s, "shop", "web").tunnel_protocol(), HBONE);
}

TEST(Enrollment, RemovingTheNamespaceLabelFlipsBackToTcp) {
  auto with = compute(objects_from(ns_yaml("shop", "{istio.io/dataplane-mode: ambient}") +
                                   pod_yaml("shop", "web", "10.0.0.1")),
                      kOptions);
  auto without =
      compute(objects_from(ns_yaml("shop") + pod_yaml("shop", "web", "10.0.0.1")), kOptions);
  EXPECT_EQ(workload(with, "shop", "web").tunnel_protocol(), HBONE);
  EXPECT_EQ(workload(without, "shop", "web").tunnel_protocol(), NONE);
}

TEST(Enrollment, HostNetworkAndSidecarPodsAreNotCaptured) {
  auto s = compute(
      objects_from(ns_yaml("shop", "{istio.io/dataplane-mode: ambient}") +
                   pod_yaml("shop", "host", "192.168.1.5", "{}", ", hostNetwork: true") +
                   "---\napiVersion: v1\nkind: Pod\nmetadata: {name: side, namespace: shop, "
                   "annotations: {sidecar.istio.io/status: '{}'}}\nstatus: {podIP: 10.0.0.3}\n"),
      kOptions);
  const auto& host = workload(s, "shop", "host");
  EXPECT_EQ(host.network_mode(), istio::workload::HOST_NETWORK);
  EXPECT_EQ(host.tunnel_protocol(), NONE);
  EXPECT_EQ(workload(s, "shop", "side").tunnel_protocol(), NONE);
}

TEST(Enrollment, PodsWithoutIpOrFinishedAreSkipped) {
  auto s = compute(
      objects_from(ns_yaml("shop") +
                   "---\napiVersion: v1\nkind: Pod\nmetadata: {name: pending, namespace: shop}\n" +
                   "---\napiVersion: v1\nkind: Pod\nmetadata: {name: done, namespace: shop}\n"
                   "status: {phase: Succeeded, podIP: 10.0.0.9}\n"),
      kOptions);
  EXPECT_TRUE(s.addresses.empty());
  EXPECT_TRUE(s.identities_by_node.empty());
}

TEST(WorkloadFields, AreFilledAsIstiodDoes) {
  auto s = compute(objects_from(R"(
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: Pod
metadata:
  name: web-5d8f7c9b6-x2k4q
  generateName: web-5d8f7c9b6-
  namespace: shop
  labels: {app: web, version: v3, pod-template-hash: 5d8f7c9b6}
  ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: web-5d8f7c9b6, controller: true}]
spec: {nodeName: node-b, serviceAccountName: web-sa}
status:
  phase: Running
  podIPs: [{ip: 10.1.2.3}, {ip: "fd00::3"}]
  conditions: [{type: Ready, status: "True"}]
)"),
                   Options{.trust_domain = "example.org", .cluster_id = "c1", .network = "net1"});
  auto it = s.addresses.find("c1//Pod/shop/web-5d8f7c9b6-x2k4q");
  ASSERT_NE(it, s.addresses.end());
  const auto& w = it->second.workload();
  EXPECT_EQ(w.uid(), "c1//Pod/shop/web-5d8f7c9b6-x2k4q");
  EXPECT_EQ(w.name(), "web-5d8f7c9b6-x2k4q");
  EXPECT_EQ(w.namespace_(), "shop");
  ASSERT_EQ(w.addresses_size(), 2);
  EXPECT_EQ(w.addresses(0), bytes({10, 1, 2, 3}));
  EXPECT_EQ(w.addresses(1).size(), 16u);
  EXPECT_EQ(w.network(), "net1");
  EXPECT_EQ(w.service_account(), "web-sa");
  EXPECT_EQ(w.trust_domain(), "example.org");
  EXPECT_EQ(w.node(), "node-b");
  EXPECT_EQ(w.cluster_id(), "c1");
  EXPECT_EQ(w.workload_name(), "web");
  EXPECT_EQ(w.workload_type(), istio::workload::DEPLOYMENT);
  EXPECT_EQ(w.canonical_name(), "web");
  EXPECT_EQ(w.canonical_revision(), "v3");
  EXPECT_EQ(w.status(), istio::workload::HEALTHY);
  EXPECT_EQ(w.network_mode(), istio::workload::STANDARD);
  EXPECT_FALSE(w.has_waypoint());
  EXPECT_EQ(s.identities_by_node.at("node-b"),
            std::set<std::string>{"spiffe://example.org/ns/shop/sa/web-sa"});
}

TEST(WorkloadFields, DefaultTrustDomainIsLeftEmptyLikeIstiod) {
  auto s = compute(objects_from(ns_yaml("shop") + pod_yaml("shop", "web", "10.0.0.1")), kOptions);
  const auto& w = workload(s, "shop", "web");
  EXPECT_EQ(w.trust_domain(), "");
  EXPECT_EQ(w.service_account(), "default");
  EXPECT_EQ(w.cluster_id(), "Kubernetes");
  EXPECT_EQ(s.identities_by_node.at("node-a"),
            std::set<std::string>{"spiffe://cluster.local/ns/shop/sa/default"});
}

struct OwnerCase {
  const char* name;
  const char* metadata;  // extra metadata fields
  const char* workload_name;
  istio::workload::WorkloadType type;
};

class WorkloadNameAndType : public ::testing::TestWithParam<OwnerCase> {};

TEST_P(WorkloadNameAndType, FollowsTheOwnerHeuristics) {
  const auto& c = GetParam();
  auto s = compute(objects_from(std::string("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p-1\n"
                                            "  namespace: shop\n") +
                                c.metadata + "status: {podIP: 10.0.0.1}\n"),
                   kOptions);
  const auto& w = workload(s, "shop", "p-1");
  EXPECT_EQ(w.workload_name(), c.workload_name);
  EXPECT_EQ(w.workload_type(), c.type);
}

INSTANTIATE_TEST_SUITE_P(
    Table, WorkloadNameAndType,
    ::testing::Values(
        OwnerCase{"BarePod", "", "p-1", istio::workload::POD},
        OwnerCase{"Deployment",
                  "  generateName: web-abc-\n  labels: {pod-template-hash: abc}\n"
                  "  ownerReferences: [{kind: ReplicaSet, name: web-abc, controller: true}]\n",
                  "web", istio::workload::DEPLOYMENT},
        OwnerCase{"ReplicaSetWithoutHash",
                  "  generateName: rs-\n"
                  "  ownerReferences: [{kind: ReplicaSet, name: rs, controller: true}]\n",
                  "p-1", istio::workload::POD},
        OwnerCase{"Job",
                  "  generateName: batch-\n"
                  "  ownerReferences: [{kind: Job, name: batch, controller: true}]\n",
                  "batch", istio::workload::JOB},
        OwnerCase{"CronJob",
                  "  generateName: nightly-28391920-\n"
                  "  ownerReferences: [{kind: Job, name: nightly-28391920, controller: true}]\n",
                  "nightly", istio::workload::CRONJOB},
        OwnerCase{"StatefulSetIsAPod",
                  "  generateName: db-\n"
                  "  ownerReferences: [{kind: StatefulSet, name: db, controller: true}]\n",
                  "p-1", istio::workload::POD},
        OwnerCase{"NameNotGenerated",
                  "  labels: {pod-template-hash: abc}\n"
                  "  ownerReferences: [{kind: ReplicaSet, name: web-abc, controller: true}]\n",
                  "p-1", istio::workload::POD}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(WorkloadFields, CanonicalNamesPreferIstioLabels) {
  auto s = compute(
      objects_from(
          pod_yaml("shop", "a", "10.0.0.1",
                   "{service.istio.io/canonical-name: cn, app.kubernetes.io/name: k, app: x, "
                   "service.istio.io/canonical-revision: r1, version: v9}") +
          pod_yaml("shop", "b", "10.0.0.2",
                   "{app.kubernetes.io/name: k, app: x, "
                   "app.kubernetes.io/version: '2.0'}") +
          pod_yaml("shop", "c", "10.0.0.3")),
      kOptions);
  EXPECT_EQ(workload(s, "shop", "a").canonical_name(), "cn");
  EXPECT_EQ(workload(s, "shop", "a").canonical_revision(), "r1");
  EXPECT_EQ(workload(s, "shop", "b").canonical_name(), "k");
  EXPECT_EQ(workload(s, "shop", "b").canonical_revision(), "2.0");
  EXPECT_EQ(workload(s, "shop", "c").canonical_name(), "c");
  EXPECT_EQ(workload(s, "shop", "c").canonical_revision(), "latest");
}

TEST(WorkloadFields, ReadyFalseIsUnhealthy) {
  auto s = compute(objects_from("apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: shop}\n"
                                "status: {podIP: 10.0.0.1, conditions: [{type: Ready, status: "
                                "'False'}]}\n"),
                   kOptions);
  EXPECT_EQ(workload(s, "shop", "p").status(), istio::workload::UNHEALTHY);
}

TEST(Identities, GroupedByNodeOnlyForScheduledPods) {
  auto s =
      compute(objects_from(pod_yaml("a", "p1", "10.0.0.1", "{}", ", serviceAccountName: x", "n1") +
                           pod_yaml("a", "p2", "10.0.0.2", "{}", ", serviceAccountName: x", "n1") +
                           pod_yaml("b", "p3", "10.0.0.3", "{}", ", serviceAccountName: y", "n1") +
                           pod_yaml("b", "p4", "10.0.0.4", "{}", ", serviceAccountName: y", "n2") +
                           "---\napiVersion: v1\nkind: Pod\nmetadata: {name: p5, namespace: b}\n"
                           "status: {podIP: 10.0.0.5}\n"),
              kOptions);
  ASSERT_EQ(s.identities_by_node.size(), 2u);
  EXPECT_EQ(s.identities_by_node.at("n1"),
            (std::set<std::string>{"spiffe://cluster.local/ns/a/sa/x",
                                   "spiffe://cluster.local/ns/b/sa/y"}));
  EXPECT_EQ(s.identities_by_node.at("n2"),
            std::set<std::string>{"spiffe://cluster.local/ns/b/sa/y"});
}

}  // namespace
}  // namespace zt::meshd::ambient
