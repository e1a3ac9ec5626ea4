// The simulator's plan (which nodes and pods exist, their names and addresses) and its edits of
// the manifests directory, without touching the kernel.
#include <filesystem>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

#include "meshd/manifest/source.h"
#include "sim/echo/echo_server.h"
#include "sim/manifest_edit.h"
#include "sim/topology.h"
#include "tests/support/cluster_manifests.h"
#include "tests/support/mesh.h"

namespace zt::testing {
namespace {

namespace fs = std::filesystem;

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

meshd::manifest::ObjectSet load(const fs::path& dir) {
  meshd::manifest::ManifestSource source(dir);
  auto r = source.reload();
  EXPECT_TRUE(r.errors.empty());
  return *r.objects;
}

TEST(SimPlan, NodesAndPodsComeFromTheManifestsWithStableNames) {
  TempDir dir;
  ClusterManifestOptions o;
  o.nodes = {"node-0", "node-0", "node-1", "node-1"};
  o.namespaces = {"ambient", "plain"};
  o.pods = 8;
  o.apps_per_namespace = 1;
  auto cluster = write_cluster_manifests(dir.path(), o);
  auto plan = sim::plan_cluster(load(dir.path()), "zt7", {"node-9"});
  ASSERT_TRUE(plan) << plan.error().describe();
  ASSERT_EQ(plan->nodes.size(), 3u);
  EXPECT_EQ(plan->fabric_netns, "zt7-fabric");
  EXPECT_EQ(plan->nodes[0].name, "node-0");
  EXPECT_EQ(plan->nodes[0].ip, "172.30.0.10");
  EXPECT_EQ(plan->nodes[1].ip, "172.30.0.11");
  EXPECT_EQ(plan->nodes[1].netns, "zt7-node-1");
  EXPECT_EQ(plan->nodes[1].fabric_if, "v1");
  EXPECT_EQ(plan->nodes[2].name, "node-9");  // extra node without pods
  EXPECT_TRUE(plan->nodes[2].pods.empty());
  ASSERT_EQ(plan->nodes[0].pods.size(), 4u);
  for (const auto& g : cluster.pods) {
    const auto* p = plan->find_pod(g.namespace_ + "/" + g.name);
    ASSERT_NE(p, nullptr) << g.name;
    EXPECT_EQ(p->ip, g.ip);
    EXPECT_EQ(p->node, g.node);
    EXPECT_EQ(p->ports, std::vector<uint16_t>{8080});
    EXPECT_EQ(p->netns, fmt::format("zt7-{}-{}", g.node, p->index));
    EXPECT_EQ(p->node_if, fmt::format("p{}", p->index));
    EXPECT_EQ(p->cgroup_name, "pod" + p->uid);
    EXPECT_LE(p->netns.size(), 255u);
  }
}

TEST(SimPlan, SkipsPodsItCannotWireAndRejectsConflicts) {
  TempDir dir;
  write_file(dir.path() / "pods.yaml", R"(apiVersion: v1
kind: Pod
metadata: {name: unscheduled, namespace: a}
status: {podIP: 10.1.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: v6only, namespace: a}
spec: {nodeName: n1}
status: {podIP: "fd00::1"}
---
apiVersion: v1
kind: Pod
metadata: {name: host, namespace: a}
spec: {nodeName: n1, hostNetwork: true}
status: {podIP: 10.1.0.3}
---
apiVersion: v1
kind: Pod
metadata: {name: ok, namespace: a}
spec: {nodeName: n1}
status: {podIP: 10.1.0.4}
)");
  auto plan = sim::plan_cluster(load(dir.path()), "zsim");
  ASSERT_TRUE(plan) << plan.error().describe();
  ASSERT_EQ(plan->nodes.size(), 1u);
  EXPECT_EQ(plan->nodes[0].pods.size(), 1u);
  EXPECT_EQ(plan->skipped.size(), 3u);

  write_file(dir.path() / "dup.yaml", R"(apiVersion: v1
kind: Pod
metadata: {name: dup, namespace: b}
spec: {nodeName: n2}
status: {podIP: 10.1.0.4}
)");
  auto dup = sim::plan_cluster(load(dir.path()), "zsim");
  ASSERT_FALSE(dup);
  EXPECT_NE(dup.error().message.find("same IP 10.1.0.4"), std::string::npos) << dup.error().message;

  write_file(dir.path() / "dup.yaml", R"(apiVersion: v1
kind: Pod
metadata: {name: dup, namespace: b}
spec: {nodeName: n2}
status: {podIP: 172.30.0.10}
)");
  auto fabric = sim::plan_cluster(load(dir.path()), "zsim");
  ASSERT_FALSE(fabric);
  EXPECT_NE(fabric.error().message.find("fabric subnet"), std::string::npos);
}

// A container whose command is the waypoint makes a waypoint pod (the simulator runs
// build/bin/waypoint there), serving the Gateway its gateway-name label names; any other pod
// runs the echo app. Without that label, or without istio.io/dataplane-mode: none, the plan is
// refused, naming the pod and the label.
TEST(SimPlan, APodWhoseCommandIsTheWaypointServesTheGatewayItsLabelNames) {
  TempDir dir;
  write_file(dir.path() / "pods.yaml", R"(apiVersion: v1
kind: Pod
metadata:
  name: waypoint-0
  namespace: shop
  labels: {gateway.networking.k8s.io/gateway-name: east, istio.io/dataplane-mode: none}
spec:
  nodeName: n1
  containers:
  - {name: waypoint, image: x, command: ["/usr/local/bin/waypoint"], ports: [{containerPort: 15008}]}
status: {podIP: 10.1.0.1}
---
apiVersion: v1
kind: Pod
metadata:
  name: app
  namespace: shop
  labels: {gateway.networking.k8s.io/gateway-name: east}
spec:
  nodeName: n1
  containers:
  - {name: app, image: x, command: ["/bin/waypoint-helper"]}
  - {name: side, image: y}
status: {podIP: 10.1.0.2}
)");
  auto plan = sim::plan_cluster(load(dir.path()), "zsim");
  ASSERT_TRUE(plan) << plan.error().describe();
  const auto* wp = plan->find_pod("shop/waypoint-0");
  ASSERT_NE(wp, nullptr);
  EXPECT_EQ(wp->waypoint, "east");
  EXPECT_EQ(wp->ports, std::vector<uint16_t>{15008});
  const auto* app = plan->find_pod("shop/app");
  ASSERT_NE(app, nullptr);
  EXPECT_EQ(app->waypoint, "");

  // The plan's error for one more pod whose only container runs the waypoint, labelled `labels`.
  auto refused = [&](const std::string& name, const std::string& labels) {
    write_file(dir.path() / "bad.yaml", fmt::format(R"(apiVersion: v1
kind: Pod
metadata: {{name: {}, namespace: shop, labels: {{{}}}}}
spec:
  nodeName: n1
  containers: [{{name: w, image: x, command: [waypoint]}}]
status: {{podIP: 10.1.0.3}}
)",
                                                    name, labels));
    auto r = sim::plan_cluster(load(dir.path()), "zsim");
    return r ? std::string("accepted") : r.error().message;
  };
  auto unlabelled = refused("unlabelled", "istio.io/dataplane-mode: none");
  EXPECT_NE(unlabelled.find("shop/unlabelled"), std::string::npos) << unlabelled;
  EXPECT_NE(unlabelled.find("gateway.networking.k8s.io/gateway-name"), std::string::npos)
      << unlabelled;
  // One the node agent could enroll.
  auto enrollable = refused("enrollable", "gateway.networking.k8s.io/gateway-name: e");
  EXPECT_NE(enrollable.find("shop/enrollable"), std::string::npos) << enrollable;
  EXPECT_NE(enrollable.find("istio.io/dataplane-mode: none"), std::string::npos) << enrollable;
}

// A pod whose container's command is ext-authz is an authorizer (http-echo --ext-authz); a
// command that merely contains the word is not.
TEST(SimPlan, APodWhoseCommandIsExtAuthzIsAnAuthorizer) {
  TempDir dir;
  auto pod = [](const char* name, const char* command, const char* ip) {
    return fmt::format(
        "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {}, namespace: shop}}\nspec:\n"
        "  nodeName: n1\n  containers: [{{name: a, image: x, command: [\"{}\"]}}]\n"
        "status: {{podIP: {}}}\n",
        name, command, ip);
  };
  write_file(dir.path() / "pods.yaml", pod("authz", "/usr/local/bin/ext-authz", "10.1.0.4") +
                                           pod("other", "/bin/ext-authz-helper", "10.1.0.5"));
  auto plan = sim::plan_cluster(load(dir.path()), "zsim");
  ASSERT_TRUE(plan) << plan.error().describe();
  ASSERT_NE(plan->find_pod("shop/authz"), nullptr);
  EXPECT_TRUE(plan->find_pod("shop/authz")->ext_authz);
  EXPECT_TRUE(plan->find_pod("shop/authz")->waypoint.empty());
  ASSERT_NE(plan->find_pod("shop/other"), nullptr);
  EXPECT_FALSE(plan->find_pod("shop/other")->ext_authz);
}

TEST(SimPlan, PrefixesAreShortAndHaveNoDash) {
  EXPECT_TRUE(sim::validate_prefix("zsim"));
  EXPECT_TRUE(sim::validate_prefix("zs123456"));
  EXPECT_FALSE(sim::validate_prefix(""));
  EXPECT_FALSE(sim::validate_prefix("z-sim"));
  EXPECT_FALSE(sim::validate_prefix("z/../x"));
  EXPECT_FALSE(sim::validate_prefix("abcdefghijklm"));
}

TEST(SimManifestEdit, LabelsANamespaceAndKeepsTheOtherDocumentsVerbatim) {
  TempDir dir;
  auto file = dir.path() / "ns" / "namespace.yaml";
  fs::create_directories(file.parent_path());
  const std::string other =
      "---\napiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: sa   # comment kept\n"
      "  namespace: plain\n";
  write_file(file, namespace_manifest("plain") + other);

  auto changed =
      sim::set_namespace_label(dir.path(), "plain", "istio.io/dataplane-mode", "ambient");
  ASSERT_TRUE(changed) << changed.error().describe();
  EXPECT_EQ(*changed, file);
  auto text = slurp(file);
  EXPECT_NE(text.find(other), std::string::npos) << text;
  auto objects = load(dir.path());
  EXPECT_EQ(objects.namespaces.at("plain").meta.labels.at("istio.io/dataplane-mode"), "ambient");
  EXPECT_EQ(objects.service_accounts.size(), 1u);

  ASSERT_TRUE(
      sim::set_namespace_label(dir.path(), "plain", "istio.io/dataplane-mode", std::nullopt));
  objects = load(dir.path());
  EXPECT_TRUE(objects.namespaces.at("plain").meta.labels.empty());
  EXPECT_NE(slurp(file).find(other), std::string::npos);

  auto missing = sim::set_namespace_label(dir.path(), "nope", "k", "v");
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message.find("no Namespace \"nope\""), std::string::npos);
}

TEST(SimManifestEdit, ParsesLabelArguments) {
  auto set = sim::parse_label_edit("istio.io/dataplane-mode=ambient");
  ASSERT_TRUE(set);
  EXPECT_EQ(set->first, "istio.io/dataplane-mode");
  EXPECT_EQ(set->second, "ambient");
  auto del = sim::parse_label_edit("istio.io/dataplane-mode-");
  ASSERT_TRUE(del);
  EXPECT_EQ(del->first, "istio.io/dataplane-mode");
  EXPECT_FALSE(del->second);
  EXPECT_FALSE(sim::parse_label_edit("novalue"));
  EXPECT_FALSE(sim::parse_label_edit("=x"));
}

TEST(SimEcho, BodyReportsPeerLocalPodAndTheRequestBody) {
  EXPECT_EQ(sim::echo::echo_body("10.0.0.1:4000", "10.0.0.2:8080", "web", "hi"),
            "peer=10.0.0.1:4000 local=10.0.0.2:8080 pod=web\nhi");
}

}  // namespace
}  // namespace zt::testing
