// mesh_bench's local config (bench/mesh/sidecar/sidecar.h) is read by ztunnel's own parser: every
// field the sidecar scenarios rely on comes out as written, and odd names cannot break the YAML.
#include "ztunnel/state/local_config.h"

#include <variant>

#include <gtest/gtest.h>

#include "bench/mesh/sidecar/sidecar.h"

namespace zt::bench::mesh {
namespace {

using state::TunnelProtocol;

std::vector<LocalWorkload> two_sidecar_pods() {
  LocalWorkload client;
  client.namespace_ = "sidecar";
  client.name = "client";
  client.ip = "10.244.0.14";
  client.node = "node-0";
  client.service_account = "client-sa";
  LocalWorkload server;
  server.namespace_ = "sidecar";
  server.name = "server";
  server.ip = "10.244.1.14";
  server.node = "node-1";
  return {client, server};
}

TEST(MeshBenchLocalConfig, WorkloadsParseWithZtunnelsParser) {
  auto yaml = local_config_yaml(two_sidecar_pods());
  auto parsed = state::parse_local_config_objects(yaml);
  ASSERT_TRUE(parsed) << parsed.error().describe() << "\n" << yaml;
  ASSERT_EQ(parsed->workloads.size(), 2u);
  EXPECT_TRUE(parsed->services.empty());
  const auto& c = parsed->workloads[0];
  EXPECT_EQ(c.uid, "Kubernetes//Pod/sidecar/client");
  EXPECT_EQ(c.name, "client");
  EXPECT_EQ(c.namespace_name, "sidecar");
  EXPECT_EQ(c.service_account, "client-sa");
  ASSERT_EQ(c.workload_ips.size(), 1u);
  EXPECT_EQ(c.workload_ips[0].to_string(), "10.244.0.14");
  EXPECT_EQ(c.protocol, TunnelProtocol::kHbone);
  EXPECT_EQ(c.node, "node-0");
  EXPECT_FALSE(c.waypoint);
  EXPECT_EQ(c.identity(), "spiffe://cluster.local/ns/sidecar/sa/client-sa");
  const auto& s = parsed->workloads[1];
  EXPECT_EQ(s.service_account, "default");
  EXPECT_EQ(s.node, "node-1");
  EXPECT_EQ(s.workload_ips[0].to_string(), "10.244.1.14");

  // The whole file also passes State::build's checks (unique uids and IPs).
  auto snapshot = state::parse_local_config(yaml);
  ASSERT_TRUE(snapshot) << snapshot.error().describe();
  EXPECT_EQ((*snapshot)->workloads().size(), 2u);
}

TEST(MeshBenchLocalConfig, TcpWorkloadAndWorkloadWaypoint) {
  auto pods = two_sidecar_pods();
  pods[0].hbone = false;
  pods[1].waypoint_ip = "10.244.1.16";
  auto parsed = state::parse_local_config_objects(local_config_yaml(pods));
  ASSERT_TRUE(parsed) << parsed.error().describe();
  EXPECT_EQ(parsed->workloads[0].protocol, TunnelProtocol::kTcp);
  const auto& w = parsed->workloads[1];
  ASSERT_TRUE(w.waypoint);
  const auto* dest = std::get_if<state::NetworkAddress>(&w.waypoint->destination);
  ASSERT_NE(dest, nullptr);
  EXPECT_EQ(dest->network, "");
  EXPECT_EQ(dest->address.to_string(), "10.244.1.16");
  EXPECT_EQ(w.waypoint->hbone_mtls_port, 15008);
}

TEST(MeshBenchLocalConfig, ServiceWithEndpointsAndWaypoint) {
  auto pods = two_sidecar_pods();
  LocalService svc;
  svc.namespace_ = "ambient-wp";
  svc.name = "server";
  svc.vip = "10.96.0.12";
  svc.port = 8080;
  svc.target_port = 9090;
  svc.endpoint_ips = {"10.244.1.14", "10.9.9.9"};  // the second is no workload's
  svc.waypoint_ip = "10.244.1.13";
  LocalService plain;
  plain.namespace_ = "sidecar";
  plain.name = "echo";
  plain.vip = "10.96.0.14";
  plain.port = 80;  // target 0: same as the service port
  plain.endpoint_ips = {"10.244.0.14"};
  auto yaml = local_config_yaml(pods, {svc, plain});
  auto parsed = state::parse_local_config_objects(yaml);
  ASSERT_TRUE(parsed) << parsed.error().describe() << "\n" << yaml;
  ASSERT_EQ(parsed->services.size(), 2u);
  const auto& s = parsed->services[0];
  EXPECT_EQ(s.name, "server");
  EXPECT_EQ(s.namespace_name, "ambient-wp");
  EXPECT_EQ(s.hostname, "server.ambient-wp.svc.cluster.local");
  ASSERT_EQ(s.vips.size(), 1u);
  EXPECT_EQ(s.vips[0].to_string(), "/10.96.0.12");
  ASSERT_EQ(s.ports.size(), 1u);
  EXPECT_EQ(s.ports.at(8080), 9090);
  ASSERT_EQ(s.endpoints.size(), 1u);
  EXPECT_EQ(s.endpoints[0].workload_uid, "Kubernetes//Pod/sidecar/server");
  EXPECT_EQ(s.endpoints[0].ports.at(8080), 9090);
  ASSERT_TRUE(s.waypoint);
  EXPECT_EQ(std::get<state::NetworkAddress>(s.waypoint->destination).address.to_string(),
            "10.244.1.13");
  EXPECT_EQ(parsed->services[1].ports.at(80), 80);

  // The endpoint resolves to the workload in the built State.
  auto snapshot = state::parse_local_config(yaml);
  ASSERT_TRUE(snapshot) << snapshot.error().describe();
  const auto& endpoints = (*snapshot)->endpoints(s.key());
  ASSERT_EQ(endpoints.size(), 1u);
  EXPECT_EQ(endpoints[0].workload->name, "server");
}

TEST(MeshBenchLocalConfig, QuotesValuesThatLookLikeYaml) {
  LocalWorkload w;
  w.namespace_ = "ns: {x}";
  w.name = "a\"b\\c # d";
  w.ip = "10.0.0.1";
  w.service_account = "sa,[]";
  auto parsed = state::parse_local_config_objects(local_config_yaml({w}));
  ASSERT_TRUE(parsed) << parsed.error().describe();
  ASSERT_EQ(parsed->workloads.size(), 1u);
  EXPECT_EQ(parsed->workloads[0].namespace_name, "ns: {x}");
  EXPECT_EQ(parsed->workloads[0].name, "a\"b\\c # d");
  EXPECT_EQ(parsed->workloads[0].service_account, "sa,[]");
}

TEST(MeshBenchLocalConfig, EmptyConfigParses) {
  auto parsed = state::parse_local_config_objects(local_config_yaml({}));
  ASSERT_TRUE(parsed) << parsed.error().describe();
  EXPECT_TRUE(parsed->workloads.empty());
  EXPECT_TRUE(parsed->services.empty());
}

}  // namespace
}  // namespace zt::bench::mesh
