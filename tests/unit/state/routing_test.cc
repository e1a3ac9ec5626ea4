#include "ztunnel/state/routing.h"

#include <map>

#include <gtest/gtest.h>

#include "ztunnel/state/local_config.h"

namespace zt::state {
namespace {

constexpr std::string_view kMesh = R"(
workloads:
- uid: c1//Pod/default/client
  name: client
  namespace: default
  serviceAccount: client
  workloadIps: ["10.0.0.1"]
  protocol: HBONE
- uid: c1//Pod/default/hbone-server
  name: hbone-server
  namespace: default
  serviceAccount: server
  workloadIps: ["10.0.0.2", "fd00::2"]
  protocol: HBONE
  services:
    "default/echo.default.svc.cluster.local": {80: 8080, 81: 8181}
- uid: c1//Pod/default/tcp-server
  name: tcp-server
  namespace: default
  workloadIps: ["10.0.0.3"]
  protocol: TCP
  services:
    "default/plain.default.svc.cluster.local": {}
- {uid: wa, name: weighted-a, namespace: default, workloadIps: [10.0.1.1], protocol: HBONE,
   capacity: 1, services: {"default/weighted.default.svc.cluster.local": {}}}
- {uid: wb, name: weighted-b, namespace: default, workloadIps: [10.0.1.2], protocol: HBONE,
   capacity: 3, services: {"default/weighted.default.svc.cluster.local": {}}}
- {uid: ws, name: weighted-sick, namespace: default, workloadIps: [10.0.1.3], protocol: HBONE,
   capacity: 5, status: Unhealthy,
   services: {"default/weighted.default.svc.cluster.local": {},
              "default/sick.default.svc.cluster.local": {},
              "default/allow-all.default.svc.cluster.local": {}}}
- {uid: wz, name: weighted-zero, namespace: default, workloadIps: [10.0.1.4], protocol: HBONE,
   capacity: 0, services: {"default/weighted.default.svc.cluster.local": {}}}
- {uid: wo, name: weighted-other-net, namespace: default, network: far, workloadIps: [10.0.1.5],
   protocol: HBONE, services: {"default/weighted.default.svc.cluster.local": {}}}
services:
- name: echo
  namespace: default
  hostname: echo.default.svc.cluster.local
  vips: ["/10.96.0.1", "/fd00:96::1"]
  ports: {80: 8080, 81: 0}
  subjectAltNames: ["spiffe://cluster.local/ns/default/sa/echo-san"]
- {name: plain, namespace: default, hostname: plain.default.svc.cluster.local,
   vips: ["/10.96.0.2"], ports: {80: 9090}}
- {name: weighted, namespace: default, hostname: weighted.default.svc.cluster.local,
   vips: ["/10.96.0.3"], ports: {80: 8080}}
- {name: empty, namespace: default, hostname: empty.default.svc.cluster.local,
   vips: ["/10.96.0.4"], ports: {80: 8080}}
- {name: sick, namespace: default, hostname: sick.default.svc.cluster.local,
   vips: ["/10.96.0.5"], ports: {80: 8080}}
- {name: allow-all, namespace: default, hostname: allow-all.default.svc.cluster.local,
   vips: ["/10.96.0.6"], ports: {80: 8080}, loadBalancer: {healthPolicy: AllowAll}}
- {name: passthrough, namespace: default, hostname: passthrough.default.svc.cluster.local,
   vips: ["/10.0.0.3"], ports: {80: 8080}, loadBalancer: {mode: Passthrough}}
)";

class Routing : public ::testing::Test {
 protected:
  void SetUp() override {
    auto parsed = parse_local_config(kMesh);
    ASSERT_TRUE(parsed) << parsed.error().message;
    state_ = *parsed;
    client_ = state_->find_workload_by_uid("c1//Pod/default/client");
    ASSERT_TRUE(client_);
  }

  Result<Upstream> outbound(const char* ip, uint16_t port) {
    return resolve_outbound(*state_, client_.get(), dst(ip, port), rng_);
  }

  static tcp::endpoint dst(const char* ip, uint16_t port) {
    return tcp::endpoint(asio::ip::make_address(ip), port);
  }

  std::shared_ptr<const State> state_;
  std::shared_ptr<const Workload> client_;
  std::mt19937_64 rng_{12345};
};

TEST_F(Routing, HboneWorkloadByIp) {
  auto up = outbound("10.0.0.2", 8080);
  ASSERT_TRUE(up) << up.error().message;
  EXPECT_EQ(up->kind, UpstreamKind::kHbone);
  EXPECT_EQ(net::format_endpoint(up->connect), "10.0.0.2:15008");
  EXPECT_EQ(up->authority, "10.0.0.2:8080");
  EXPECT_EQ(up->expected_identities,
            std::vector<std::string>{"spiffe://cluster.local/ns/default/sa/server"});
  EXPECT_EQ(up->target_port, 8080);
  ASSERT_TRUE(up->workload);
  EXPECT_EQ(up->workload->name, "hbone-server");
  EXPECT_FALSE(up->service);
}

TEST_F(Routing, HboneWorkloadByV6Ip) {
  auto up = outbound("fd00::2", 8080);
  ASSERT_TRUE(up) << up.error().message;
  EXPECT_EQ(net::format_endpoint(up->connect), "[fd00::2]:15008");
  EXPECT_EQ(up->authority, "[fd00::2]:8080");
}

TEST_F(Routing, TcpWorkloadByIp) {
  auto up = outbound("10.0.0.3", 9090);
  ASSERT_TRUE(up) << up.error().message;
  EXPECT_EQ(up->kind, UpstreamKind::kTcp);
  EXPECT_EQ(net::format_endpoint(up->connect), "10.0.0.3:9090");
  EXPECT_TRUE(up->authority.empty());
  EXPECT_TRUE(up->expected_identities.empty());
  EXPECT_EQ(up->workload->name, "tcp-server");
}

TEST_F(Routing, ServiceVipMapsServicePortToTargetPort) {
  auto up = outbound("10.96.0.1", 80);
  ASSERT_TRUE(up) << up.error().message;
  EXPECT_EQ(up->kind, UpstreamKind::kHbone);
  EXPECT_EQ(net::format_endpoint(up->connect), "10.0.0.2:15008");
  EXPECT_EQ(up->authority, "10.0.0.2:8080");
  EXPECT_EQ(up->target_port, 8080);
  EXPECT_EQ(up->expected_identities,
            (std::vector<std::string>{"spiffe://cluster.local/ns/default/sa/server",
                                      "spiffe://cluster.local/ns/default/sa/echo-san"}));
  ASSERT_TRUE(up->service);
  EXPECT_EQ(up->service->name, "echo");
  EXPECT_EQ(net::format_endpoint(up->original_dst), "10.96.0.1:80");
}

TEST_F(Routing, NamedPortIsResolvedFromTheEndpoint) {
  auto up = outbound("10.96.0.1", 81);  // service says 0: the endpoint maps 81 -> 8181
  ASSERT_TRUE(up) << up.error().message;
  EXPECT_EQ(up->authority, "10.0.0.2:8181");
}

TEST_F(Routing, V6VipPicksTheV6Address) {
  auto up = outbound("fd00:96::1", 80);
  ASSERT_TRUE(up) << up.error().message;
  EXPECT_EQ(net::format_endpoint(up->connect), "[fd00::2]:15008");
  EXPECT_EQ(up->authority, "[fd00::2]:8080");
}

TEST_F(Routing, TcpServiceEndpointUsesTheServiceTargetPort) {
  auto up = outbound("10.96.0.2", 80);
  ASSERT_TRUE(up) << up.error().message;
  EXPECT_EQ(up->kind, UpstreamKind::kTcp);
  EXPECT_EQ(net::format_endpoint(up->connect), "10.0.0.3:9090");
  EXPECT_EQ(up->service->name, "plain");
}

TEST_F(Routing, WeightedPickFollowsCapacityAndSkipsUnhealthyZeroAndOtherNetworks) {
  std::map<std::string, int> picks;
  constexpr int kRounds = 8000;
  for (int i = 0; i < kRounds; ++i) {
    auto up = outbound("10.96.0.3", 80);
    ASSERT_TRUE(up) << up.error().message;
    picks[up->workload->name]++;
  }
  EXPECT_EQ(picks.size(), 2u) << "only weighted-a and weighted-b are eligible";
  // Capacity 1 vs 3: a quarter and three quarters, within a few standard deviations.
  EXPECT_NEAR(picks["weighted-a"], kRounds / 4, 200);
  EXPECT_NEAR(picks["weighted-b"], kRounds * 3 / 4, 200);
}

TEST_F(Routing, ServiceWithoutEndpointsIsAnError) {
  auto up = outbound("10.96.0.4", 80);
  ASSERT_FALSE(up);
  EXPECT_NE(up.error().message.find("no healthy upstream for default/empty.default.svc.cluster.local"),
            std::string::npos)
      << up.error().message;
}

TEST_F(Routing, ServiceWithOnlyUnhealthyEndpointsIsAnError) {
  auto up = outbound("10.96.0.5", 80);
  ASSERT_FALSE(up);
  EXPECT_NE(up.error().message.find("no healthy upstream"), std::string::npos);
}

TEST_F(Routing, ServicePortNotDeclaredIsAnError) {
  auto up = outbound("10.96.0.1", 9999);
  ASSERT_FALSE(up);
  EXPECT_NE(up.error().message.find("no healthy upstream"), std::string::npos);
}

TEST_F(Routing, AllowAllHealthPolicyUsesUnhealthyEndpoints) {
  auto up = outbound("10.96.0.6", 80);
  ASSERT_TRUE(up) << up.error().message;
  EXPECT_EQ(up->workload->name, "weighted-sick");
}

TEST_F(Routing, PassthroughServiceKeepsTheOriginalDestination) {
  auto up = outbound("10.0.0.3", 80);  // the service VIP is the workload's own IP
  ASSERT_TRUE(up) << up.error().message;
  EXPECT_EQ(up->kind, UpstreamKind::kTcp);
  EXPECT_EQ(net::format_endpoint(up->connect), "10.0.0.3:80");
  ASSERT_TRUE(up->service);
  EXPECT_EQ(up->service->name, "passthrough");
}

TEST_F(Routing, UnknownDestinationIsPassthrough) {
  auto up = outbound("192.168.7.7", 443);
  ASSERT_TRUE(up) << up.error().message;
  EXPECT_EQ(up->kind, UpstreamKind::kPassthrough);
  EXPECT_EQ(net::format_endpoint(up->connect), "192.168.7.7:443");
  EXPECT_FALSE(up->workload);
  EXPECT_FALSE(up->service);
}

TEST_F(Routing, UnknownSourceUsesTheDefaultNetwork) {
  auto up = resolve_outbound(*state_, nullptr, dst("10.0.0.2", 80), rng_);
  ASSERT_TRUE(up) << up.error().message;
  EXPECT_EQ(up->kind, UpstreamKind::kHbone);
}

TEST_F(Routing, LoopToOurOwnPortsIsRefused) {
  for (uint16_t port : kProxyPorts) {
    auto up = outbound("127.0.0.1", port);
    ASSERT_FALSE(up) << port;
    EXPECT_NE(up.error().message.find("recursive call to ourselves"), std::string::npos);
  }
  EXPECT_TRUE(outbound("127.0.0.1", 8080));
}

TEST_F(Routing, UpstreamOutlivesTheState) {
  auto up = outbound("10.96.0.1", 80);
  ASSERT_TRUE(up);
  state_.reset();
  EXPECT_EQ(up->workload->name, "hbone-server");
  EXPECT_EQ(up->service->hostname, "echo.default.svc.cluster.local");
}

class Inbound : public Routing {
 protected:
  Result<InboundTarget> inbound(const char* arrived, const char* authority) {
    auto a = hbone::parse_authority(authority);
    EXPECT_TRUE(a) << authority;
    return resolve_inbound(*state_, dst(arrived, 15008), *a);
  }
};

TEST_F(Inbound, KnownWorkloadGetsItsAppPort) {
  auto t = inbound("10.0.0.2", "10.0.0.2:8080");
  ASSERT_TRUE(t) << t.error().message;
  EXPECT_EQ(net::format_endpoint(t->app), "10.0.0.2:8080");
  EXPECT_EQ(t->workload->name, "hbone-server");
  EXPECT_FALSE(t->service);
}

TEST_F(Inbound, DualStackArrivalAddressIsUnmapped) {
  auto t = inbound("::ffff:10.0.0.2", "10.0.0.2:8080");
  ASSERT_TRUE(t) << t.error().message;
  EXPECT_EQ(net::format_endpoint(t->app), "10.0.0.2:8080");
}

TEST_F(Inbound, UnknownWorkloadIs503) {
  auto t = inbound("10.0.0.99", "10.0.0.99:8080");
  ASSERT_FALSE(t);
  EXPECT_NE(t.error().message.find("unknown target workload 10.0.0.99"), std::string::npos);
}

TEST_F(Inbound, SelfCallPortsAre503) {
  for (const char* authority : {"10.0.0.2:15001", "10.0.0.2:15006", "10.0.0.2:15008", "10.0.0.2:15080"}) {
    auto t = inbound("10.0.0.2", authority);
    ASSERT_FALSE(t) << authority;
    EXPECT_NE(t.error().message.find("self call"), std::string::npos) << t.error().message;
  }
}

TEST_F(Inbound, HostnameAuthorityMapsServicePort) {
  auto t = inbound("10.0.0.2", "echo.default.svc.cluster.local:80");
  ASSERT_TRUE(t) << t.error().message;
  EXPECT_EQ(net::format_endpoint(t->app), "10.0.0.2:8080");
  ASSERT_TRUE(t->service);
  EXPECT_EQ(t->service->name, "echo");
  auto named = inbound("10.0.0.2", "echo.default.svc.cluster.local:81");
  ASSERT_TRUE(named) << named.error().message;
  EXPECT_EQ(named->app.port(), 8181);
}

TEST_F(Inbound, HostnameErrorsAre503) {
  auto unknown = inbound("10.0.0.2", "nope.default.svc.cluster.local:80");
  ASSERT_FALSE(unknown);
  EXPECT_NE(unknown.error().message.find("no service for hostname"), std::string::npos);
  auto no_port = inbound("10.0.0.2", "echo.default.svc.cluster.local:99");
  ASSERT_FALSE(no_port);
  EXPECT_NE(no_port.error().message.find("no target port"), std::string::npos);
}

}  // namespace
}  // namespace zt::state
