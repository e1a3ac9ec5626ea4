// Outbound routing through waypoints (facts §1.4 steps 4 and 7): service and workload
// waypoints, referenced by workload IP, waypoint service VIP or namespaced hostname; no loop
// when the source is the waypoint; an unresolvable waypoint fails instead of being bypassed.
#include <gtest/gtest.h>

#include "ztunnel/state/local_config.h"
#include "ztunnel/state/routing.h"

namespace zt::state {
namespace {

constexpr std::string_view kMesh = R"(
workloads:
- {uid: client, name: client, namespace: default, serviceAccount: client,
   workloadIps: ["10.0.0.1"], protocol: HBONE}
- {uid: server, name: server, namespace: default, serviceAccount: server,
   workloadIps: ["10.0.0.2", "fd00::2"], protocol: HBONE,
   services: {"default/by-ip.default.svc.cluster.local": {},
              "default/by-host.default.svc.cluster.local": {},
              "default/by-vip.default.svc.cluster.local": {},
              "default/unknown-ip.default.svc.cluster.local": {},
              "default/unknown-host.default.svc.cluster.local": {},
              "default/plain.default.svc.cluster.local": {},
              "default/custom-port.default.svc.cluster.local": {},
              "default/empty-waypoint.default.svc.cluster.local": {}}}
- {uid: pod-with-waypoint, name: pod-with-waypoint, namespace: default, serviceAccount: pod,
   workloadIps: ["10.0.0.3"], protocol: HBONE, waypoint: {destination: "/10.0.0.10"}}
- {uid: pod-unknown-waypoint, name: pod-unknown-waypoint, namespace: default,
   workloadIps: ["10.0.0.4"], protocol: HBONE, waypoint: {destination: "/10.0.0.99"}}
- {uid: waypoint, name: waypoint, namespace: default, serviceAccount: waypoint,
   workloadIps: ["10.0.0.10", "fd00::10"], protocol: HBONE,
   services: {"default/waypoint.default.svc.cluster.local": {}}}
- {uid: waypoint2, name: waypoint2, namespace: default, serviceAccount: waypoint2,
   workloadIps: ["10.0.0.11"], protocol: HBONE,
   services: {"default/waypoint2.default.svc.cluster.local": {}}}
services:
- {name: waypoint, namespace: default, hostname: waypoint.default.svc.cluster.local,
   vips: ["/10.96.9.1", "/fd00:96::9:1"], ports: {15008: 15008}}
- {name: waypoint2, namespace: default, hostname: waypoint2.default.svc.cluster.local,
   vips: ["/10.96.9.2"]}
- {name: no-endpoints, namespace: default, hostname: no-endpoints.default.svc.cluster.local,
   vips: ["/10.96.9.3"], ports: {15008: 15008}}
- {name: by-ip, namespace: default, hostname: by-ip.default.svc.cluster.local,
   vips: ["/10.96.1.1"], ports: {80: 8080}, waypoint: {destination: "/10.0.0.10"}}
- {name: by-host, namespace: default, hostname: by-host.default.svc.cluster.local,
   vips: ["/10.96.1.2", "/fd00:96::1:2"], ports: {80: 8080},
   waypoint: {destination: {namespace: default, hostname: waypoint.default.svc.cluster.local}}}
- {name: by-vip, namespace: default, hostname: by-vip.default.svc.cluster.local,
   vips: ["/10.96.1.3"], ports: {80: 8080}, waypoint: {destination: "/10.96.9.2"}}
- {name: unknown-ip, namespace: default, hostname: unknown-ip.default.svc.cluster.local,
   vips: ["/10.96.1.4"], ports: {80: 8080}, waypoint: {destination: "/10.0.0.99"}}
- {name: unknown-host, namespace: default, hostname: unknown-host.default.svc.cluster.local,
   vips: ["/10.96.1.5"], ports: {80: 8080},
   waypoint: {destination: {namespace: default, hostname: missing.default.svc.cluster.local}}}
- {name: plain, namespace: default, hostname: plain.default.svc.cluster.local,
   vips: ["/10.96.1.6"], ports: {80: 8080}}
- {name: custom-port, namespace: default, hostname: custom-port.default.svc.cluster.local,
   vips: ["/10.96.1.7"], ports: {80: 8080},
   waypoint: {destination: "/10.0.0.10", hboneMtlsPort: 15009}}
- {name: empty-waypoint, namespace: default, hostname: empty-waypoint.default.svc.cluster.local,
   vips: ["/10.96.1.8"], ports: {80: 8080}, waypoint: {destination: "/10.96.9.3"}}
- {name: passthrough, namespace: default, hostname: passthrough.default.svc.cluster.local,
   vips: ["/10.0.0.20"], ports: {80: 8080}, loadBalancer: {mode: Passthrough},
   waypoint: {destination: "/10.0.0.10"}}
)";

constexpr const char* kWaypointId = "spiffe://cluster.local/ns/default/sa/waypoint";

class RoutingWaypoint : public ::testing::Test {
 protected:
  void SetUp() override {
    auto parsed = parse_local_config(kMesh);
    ASSERT_TRUE(parsed) << parsed.error().message;
    state_ = *parsed;
  }

  Result<Upstream> from(const char* source_uid, const char* ip, uint16_t port) {
    auto source = state_->find_workload_by_uid(source_uid);
    EXPECT_TRUE(source) << source_uid;
    return resolve_outbound(*state_, source.get(), tcp::endpoint(asio::ip::make_address(ip), port),
                            rng_);
  }
  Result<Upstream> outbound(const char* ip, uint16_t port) { return from("client", ip, port); }

  std::shared_ptr<const State> state_;
  std::mt19937_64 rng_{777};
};

TEST_F(RoutingWaypoint, ServiceWaypointByIpKeepsTheVipAuthorityAndExpectsTheWaypointIdentity) {
  auto up = outbound("10.96.1.1", 80);
  ASSERT_TRUE(up) << up.error().message;
  EXPECT_EQ(up->kind, UpstreamKind::kHbone);
  EXPECT_TRUE(up->via_waypoint);
  EXPECT_EQ(net::format_endpoint(up->connect), "10.0.0.10:15008");
  EXPECT_EQ(up->waypoint_address(), "10.0.0.10:15008");
  EXPECT_EQ(up->authority, "10.96.1.1:80");
  EXPECT_EQ(up->expected_identities, std::vector<std::string>{kWaypointId});
  EXPECT_EQ(up->target_port, 80);
  ASSERT_TRUE(up->workload);
  EXPECT_EQ(up->workload->name, "waypoint");
  ASSERT_TRUE(up->service);
  EXPECT_EQ(up->service->name, "by-ip");
  EXPECT_FALSE(up->addressed_workload);
  EXPECT_EQ(net::format_endpoint(up->original_dst), "10.96.1.1:80");
}

TEST_F(RoutingWaypoint, ServiceWaypointByHostnameGoesToAnEndpointOfTheWaypointService) {
  auto up = outbound("10.96.1.2", 80);
  ASSERT_TRUE(up) << up.error().message;
  EXPECT_TRUE(up->via_waypoint);
  EXPECT_EQ(net::format_endpoint(up->connect), "10.0.0.10:15008");
  EXPECT_EQ(up->authority, "10.96.1.2:80");
  EXPECT_EQ(up->expected_identities, std::vector<std::string>{kWaypointId});
  EXPECT_EQ(up->service->name, "by-host");
}

TEST_F(RoutingWaypoint, HostnameWaypointFollowsTheClientsAddressFamily) {
  auto up = outbound("fd00:96::1:2", 80);
  ASSERT_TRUE(up) << up.error().message;
  EXPECT_EQ(net::format_endpoint(up->connect), "[fd00::10]:15008");
  EXPECT_EQ(up->authority, "[fd00:96::1:2]:80");
}

TEST_F(RoutingWaypoint, ServiceWaypointByWaypointServiceVipUsesItsEndpointOnTheHbonePort) {
  auto up = outbound("10.96.1.3", 80);  // waypoint2's service lists no port: 15008 is kept
  ASSERT_TRUE(up) << up.error().message;
  EXPECT_TRUE(up->via_waypoint);
  EXPECT_EQ(net::format_endpoint(up->connect), "10.0.0.11:15008");
  EXPECT_EQ(up->authority, "10.96.1.3:80");
  EXPECT_EQ(up->expected_identities,
            std::vector<std::string>{"spiffe://cluster.local/ns/default/sa/waypoint2"});
  EXPECT_EQ(up->workload->name, "waypoint2");
}

TEST_F(RoutingWaypoint, HboneMtlsPortOfTheGatewayAddressIsUsed) {
  auto up = outbound("10.96.1.7", 80);
  ASSERT_TRUE(up) << up.error().message;
  EXPECT_EQ(net::format_endpoint(up->connect), "10.0.0.10:15009");
  EXPECT_EQ(up->authority, "10.96.1.7:80");
}

TEST_F(RoutingWaypoint, ServiceWithoutWaypointGoesDirect) {
  auto up = outbound("10.96.1.6", 80);
  ASSERT_TRUE(up) << up.error().message;
  EXPECT_FALSE(up->via_waypoint);
  EXPECT_EQ(up->waypoint_address(), "");
  EXPECT_EQ(net::format_endpoint(up->connect), "10.0.0.2:15008");
  EXPECT_EQ(up->authority, "10.0.0.2:8080");
}

TEST_F(RoutingWaypoint, WorkloadWaypointKeepsThePodAuthority) {
  auto up = outbound("10.0.0.3", 9000);
  ASSERT_TRUE(up) << up.error().message;
  EXPECT_TRUE(up->via_waypoint);
  EXPECT_EQ(net::format_endpoint(up->connect), "10.0.0.10:15008");
  EXPECT_EQ(up->authority, "10.0.0.3:9000");
  EXPECT_EQ(up->expected_identities, std::vector<std::string>{kWaypointId});
  EXPECT_EQ(up->workload->name, "waypoint");
  ASSERT_TRUE(up->addressed_workload);
  EXPECT_EQ(up->addressed_workload->name, "pod-with-waypoint");
  EXPECT_FALSE(up->service);
}

TEST_F(RoutingWaypoint, WorkloadWithoutWaypointGoesDirect) {
  auto up = outbound("10.0.0.2", 8080);
  ASSERT_TRUE(up) << up.error().message;
  EXPECT_FALSE(up->via_waypoint);
  EXPECT_EQ(net::format_endpoint(up->connect), "10.0.0.2:15008");
  EXPECT_EQ(up->authority, "10.0.0.2:8080");
}

TEST_F(RoutingWaypoint, PassthroughServiceWithWaypointStillGoesThroughIt) {
  auto up = outbound("10.0.0.20", 80);
  ASSERT_TRUE(up) << up.error().message;
  EXPECT_TRUE(up->via_waypoint);
  EXPECT_EQ(up->authority, "10.0.0.20:80");
  EXPECT_EQ(up->service->name, "passthrough");
}

TEST_F(RoutingWaypoint, TheWaypointItselfGoesDirectToAServiceAndAWorkload) {
  // Source IP is the waypoint's address (by-ip, workload waypoint).
  auto svc = from("waypoint", "10.96.1.1", 80);
  ASSERT_TRUE(svc) << svc.error().message;
  EXPECT_FALSE(svc->via_waypoint);
  EXPECT_EQ(svc->authority, "10.0.0.2:8080");
  auto pod = from("waypoint", "10.0.0.3", 9000);
  ASSERT_TRUE(pod) << pod.error().message;
  EXPECT_FALSE(pod->via_waypoint);
  EXPECT_EQ(net::format_endpoint(pod->connect), "10.0.0.3:15008");
  EXPECT_EQ(pod->authority, "10.0.0.3:9000");
  // Source is an endpoint of the waypoint's service (referenced by hostname).
  auto host = from("waypoint", "10.96.1.2", 80);
  ASSERT_TRUE(host) << host.error().message;
  EXPECT_FALSE(host->via_waypoint);
  EXPECT_EQ(host->authority, "10.0.0.2:8080");
  // Source is an endpoint of the waypoint's service (referenced by its VIP).
  auto vip = from("waypoint2", "10.96.1.3", 80);
  ASSERT_TRUE(vip) << vip.error().message;
  EXPECT_FALSE(vip->via_waypoint);
  EXPECT_EQ(vip->authority, "10.0.0.2:8080");
}

TEST_F(RoutingWaypoint, AnotherWaypointIsNotExemptFromThisOne) {
  auto up = from("waypoint2", "10.96.1.1", 80);
  ASSERT_TRUE(up) << up.error().message;
  EXPECT_TRUE(up->via_waypoint);
  EXPECT_EQ(net::format_endpoint(up->connect), "10.0.0.10:15008");
}

TEST_F(RoutingWaypoint, UnresolvableWaypointFailsTheConnectionInsteadOfBypassingIt) {
  auto by_ip = outbound("10.96.1.4", 80);
  ASSERT_FALSE(by_ip);
  EXPECT_EQ(by_ip.error().message,
            "service default/unknown-ip.default.svc.cluster.local: waypoint 10.0.0.99 not found");
  auto by_host = outbound("10.96.1.5", 80);
  ASSERT_FALSE(by_host);
  EXPECT_EQ(by_host.error().message,
            "service default/unknown-host.default.svc.cluster.local: waypoint "
            "default/missing.default.svc.cluster.local not found");
  auto pod = outbound("10.0.0.4", 80);
  ASSERT_FALSE(pod);
  EXPECT_EQ(pod.error().message, "workload pod-unknown-waypoint: waypoint 10.0.0.99 not found");
}

TEST_F(RoutingWaypoint, WaypointServiceWithoutEndpointsFails) {
  auto up = outbound("10.96.1.8", 80);
  ASSERT_FALSE(up);
  EXPECT_NE(up.error().message.find(
                "no healthy upstream for waypoint default/no-endpoints.default.svc.cluster.local"),
            std::string::npos)
      << up.error().message;
}

TEST_F(RoutingWaypoint, UnknownSourceStillGoesThroughTheWaypoint) {
  auto up = resolve_outbound(*state_, nullptr,
                             tcp::endpoint(asio::ip::make_address("10.96.1.1"), 80), rng_);
  ASSERT_TRUE(up) << up.error().message;
  EXPECT_TRUE(up->via_waypoint);
}

}  // namespace
}  // namespace zt::state
