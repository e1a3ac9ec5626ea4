#include <gtest/gtest.h>

#include "tests/unit/meshd_ambient/objects.h"

namespace zt::meshd::ambient {
namespace {

using namespace test;

const Options kOptions{};

const std::string kShop = ns_yaml("shop", "{istio.io/dataplane-mode: ambient}");

std::string web_service(const std::string& labels = "{}") {
  return R"(---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop, labels: )" +
         labels + R"(}
spec:
  clusterIP: 10.96.0.10
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: http}
  - {name: admin, port: 9000, targetPort: 9090}
  - {name: metrics, port: 15020, targetPort: metrics}
)";
}

std::string web_pod(const std::string& name, const std::string& ip, bool metrics_port,
                    const std::string& extra_labels = "") {
  return "---\napiVersion: v1\nkind: Pod\nmetadata: {name: " + name +
         ", namespace: shop, labels: {app: web" + extra_labels +
         "}}\nspec:\n  nodeName: node-a\n  containers:\n  - ports:\n    - {name: http, "
         "containerPort: 8080}\n" +
         (metrics_port ? "    - {name: metrics, containerPort: 15090}\n" : "") +
         "status: {podIP: " + ip + "}\n";
}

TEST(Services, VipsPortsAndHostname) {
  auto s = compute(objects_from(kShop + web_service()), kOptions);
  const auto& svc = service(s, "shop", "web");
  EXPECT_EQ(svc.name(), "web");
  EXPECT_EQ(svc.namespace_(), "shop");
  EXPECT_EQ(svc.hostname(), "web.shop.svc.cluster.local");
  ASSERT_EQ(svc.addresses_size(), 1);
  EXPECT_EQ(svc.addresses(0).network(), "");
  EXPECT_EQ(svc.addresses(0).address(), bytes({10, 96, 0, 10}));
  ASSERT_EQ(svc.ports_size(), 3);
  EXPECT_EQ(svc.ports(0).service_port(), 80u);
  EXPECT_EQ(svc.ports(0).target_port(), 0u);  // named: resolved per workload
  EXPECT_EQ(svc.ports(1).target_port(), 9090u);
  EXPECT_FALSE(svc.has_waypoint());
  EXPECT_FALSE(svc.has_load_balancing());
  EXPECT_TRUE(s.addresses.count("shop/web.shop.svc.cluster.local"));
}

TEST(Services, EndpointsCarryTheirPortMapWithNamedPortsResolved) {
  auto s = compute(objects_from(kShop + web_service() + web_pod("w1", "10.0.0.1", true) +
                                web_pod("w2", "10.0.0.2", false)),
                   kOptions);
  const auto& w1 = workload(s, "shop", "w1");
  ASSERT_EQ(w1.services().count("shop/web.shop.svc.cluster.local"), 1u);
  const auto& ports1 = w1.services().at("shop/web.shop.svc.cluster.local").ports();
  ASSERT_EQ(ports1.size(), 3);
  EXPECT_EQ(ports1[0].service_port(), 80u);
  EXPECT_EQ(ports1[0].target_port(), 8080u);
  EXPECT_EQ(ports1[1].target_port(), 9090u);
  EXPECT_EQ(ports1[2].target_port(), 15090u);
  // w2 has no "metrics" container port: that service port is left out for it.
  const auto& ports2 =
      workload(s, "shop", "w2").services().at("shop/web.shop.svc.cluster.local").ports();
  ASSERT_EQ(ports2.size(), 2);
  EXPECT_EQ(ports2[1].service_port(), 9000u);
}

TEST(Services, SelectorMustMatchInTheSameNamespace) {
  auto s = compute(
      objects_from(kShop + web_service() + pod_yaml("shop", "other", "10.0.0.3", "{app: db}") +
                   pod_yaml("elsewhere", "web-x", "10.0.0.4", "{app: web}") +
                   "---\napiVersion: v1\nkind: Service\nmetadata: {name: manual, "
                   "namespace: shop}\nspec: {ports: [{port: 1}]}\n" +
                   "---\napiVersion: v1\nkind: Service\nmetadata: {name: empty, "
                   "namespace: shop}\nspec: {selector: {}, ports: [{port: 1}]}\n"),
      kOptions);
  EXPECT_TRUE(workload(s, "shop", "other").services().empty());
  EXPECT_TRUE(workload(s, "elsewhere", "web-x").services().empty());
  EXPECT_TRUE(s.addresses.count("shop/manual.shop.svc.cluster.local"));
}

TEST(Services, LoadBalancingFromTrafficPolicies) {
  auto s =
      compute(objects_from("apiVersion: v1\nkind: Service\nmetadata: {name: local, namespace: a}\n"
                           "spec: {internalTrafficPolicy: Local, ports: [{port: 1}]}\n---\n"
                           "apiVersion: v1\nkind: Service\nmetadata: {name: close, namespace: a}\n"
                           "spec: {trafficDistribution: PreferClose, ports: [{port: 1}]}\n"),
              kOptions);
  const auto& local = service(s, "a", "local").load_balancing();
  ASSERT_EQ(local.routing_preference_size(), 1);
  EXPECT_EQ(local.routing_preference(0), istio::workload::LoadBalancing::NODE);
  EXPECT_EQ(local.mode(), istio::workload::LoadBalancing::STRICT);
  const auto& close = service(s, "a", "close").load_balancing();
  EXPECT_EQ(close.routing_preference_size(), 4);
  EXPECT_EQ(close.mode(), istio::workload::LoadBalancing::FAILOVER);
}

// --- waypoints ---

std::string waypoint(const std::string& ns, const std::string& name, const std::string& for_label,
                     const std::string& status = "") {
  return "---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: " + name +
         ", namespace: " + ns +
         (for_label.empty() ? "" : ", labels: {istio.io/waypoint-for: " + for_label + "}") +
         "}\nspec:\n  gatewayClassName: istio-waypoint\n  listeners: [{name: mesh, port: 15008, "
         "protocol: HBONE}]\n" +
         status;
}

void expect_waypoint(const istio::workload::GatewayAddress& gw, const std::string& ns,
                     const std::string& host) {
  ASSERT_TRUE(gw.has_hostname());
  EXPECT_EQ(gw.hostname().namespace_(), ns);
  EXPECT_EQ(gw.hostname().hostname(), host);
  EXPECT_EQ(gw.hbone_mtls_port(), 15008u);
}

TEST(Waypoints, NamespaceLabelBindsServicesToAServiceWaypoint) {
  auto s =
      compute(objects_from(
                  ns_yaml("shop", "{istio.io/dataplane-mode: ambient, istio.io/use-waypoint: wp}") +
                  waypoint("shop", "wp", "") + web_service() + web_pod("w1", "10.0.0.1", true)),
              kOptions);
  expect_waypoint(service(s, "shop", "web").waypoint(), "shop", "wp.shop.svc.cluster.local");
  // Default traffic type is "service": the pod itself gets no waypoint.
  EXPECT_FALSE(workload(s, "shop", "w1").has_waypoint());
}

TEST(Waypoints, AllTrafficWaypointBindsWorkloadsToo) {
  auto s = compute(
      objects_from(ns_yaml("shop", "{istio.io/use-waypoint: wp}") + waypoint("shop", "wp", "all") +
                   web_service() + web_pod("w1", "10.0.0.1", true)),
      kOptions);
  expect_waypoint(service(s, "shop", "web").waypoint(), "shop", "wp.shop.svc.cluster.local");
  expect_waypoint(workload(s, "shop", "w1").waypoint(), "shop", "wp.shop.svc.cluster.local");
}

TEST(Waypoints, WorkloadOnlyWaypointSkipsServices) {
  auto s = compute(objects_from(ns_yaml("shop") + waypoint("shop", "wp", "workload") +
                                web_service("{istio.io/use-waypoint: wp}") +
                                web_pod("w1", "10.0.0.1", true, ", istio.io/use-waypoint: wp")),
                   kOptions);
  EXPECT_FALSE(service(s, "shop", "web").has_waypoint());
  expect_waypoint(workload(s, "shop", "w1").waypoint(), "shop", "wp.shop.svc.cluster.local");
}

TEST(Waypoints, NoneOptsOutOfTheNamespaceWaypoint) {
  auto s = compute(
      objects_from(ns_yaml("shop", "{istio.io/use-waypoint: wp}") + waypoint("shop", "wp", "all") +
                   web_service("{istio.io/use-waypoint: none}") +
                   web_pod("w1", "10.0.0.1", true, ", istio.io/use-waypoint: none")),
      kOptions);
  EXPECT_FALSE(service(s, "shop", "web").has_waypoint());
  EXPECT_FALSE(workload(s, "shop", "w1").has_waypoint());
}

TEST(Waypoints, ObjectLabelOverridesNamespaceAndCanCrossNamespaces) {
  auto s = compute(
      objects_from(
          ns_yaml("shop", "{istio.io/use-waypoint: wp}") + waypoint("shop", "wp", "") +
          waypoint("infra", "shared", "") +
          web_service("{istio.io/use-waypoint: shared, istio.io/use-waypoint-namespace: infra}")),
      kOptions);
  expect_waypoint(service(s, "shop", "web").waypoint(), "infra", "shared.infra.svc.cluster.local");
}

TEST(Waypoints, MissingGatewayMeansNoWaypoint) {
  auto s = compute(objects_from(ns_yaml("shop", "{istio.io/use-waypoint: ghost}") + web_service()),
                   kOptions);
  EXPECT_FALSE(service(s, "shop", "web").has_waypoint());
}

TEST(Waypoints, PublishedStatusAddressIsUsed) {
  auto s = compute(
      objects_from(ns_yaml("shop", "{istio.io/use-waypoint: wp}") +
                   waypoint("shop", "wp", "",
                            "status:\n  addresses: [{type: IPAddress, value: 10.96.9.9}]\n") +
                   web_service()),
      kOptions);
  const auto& gw = service(s, "shop", "web").waypoint();
  ASSERT_TRUE(gw.has_address());
  EXPECT_EQ(gw.address().address(), bytes({10, 96, 9, 9}));
  EXPECT_EQ(gw.hbone_mtls_port(), 15008u);
}

TEST(Waypoints, WaypointServiceAndInstancesDoNotPointAtThemselves) {
  auto s = compute(
      objects_from(
          ns_yaml("shop", "{istio.io/use-waypoint: wp}") + waypoint("shop", "wp", "all") +
          "---\napiVersion: v1\nkind: Service\nmetadata: {name: wp, namespace: shop, labels: "
          "{gateway.istio.io/managed: istio.io-mesh-controller}}\nspec: {clusterIP: 10.96.0.99, "
          "ports: [{port: 15008}]}\n" +
          pod_yaml("shop", "wp-pod", "10.0.0.50",
                   "{gateway.networking.k8s.io/gateway-name: wp, istio.io/dataplane-mode: none}")),
      kOptions);
  EXPECT_FALSE(service(s, "shop", "wp").has_waypoint());
  EXPECT_EQ(service(s, "shop", "wp").load_balancing().mode(),
            istio::workload::LoadBalancing::FAILOVER);
  EXPECT_FALSE(workload(s, "shop", "wp-pod").has_waypoint());
}

TEST(Waypoints, OtherGatewayClassesWithoutAddressAreNotWaypoints) {
  auto s = compute(
      objects_from(ns_yaml("shop", "{istio.io/use-waypoint: gw}") +
                   "---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\n"
                   "metadata: {name: gw, namespace: shop}\nspec: {gatewayClassName: istio}\n" +
                   web_service()),
      kOptions);
  EXPECT_FALSE(service(s, "shop", "web").has_waypoint());
}

}  // namespace
}  // namespace zt::meshd::ambient
