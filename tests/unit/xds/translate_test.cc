#include "ztunnel/xds/translate.h"

#include <functional>

#include <gtest/gtest.h>

namespace zt::xds {
namespace {

namespace pb = istio::workload;
namespace sec = istio::security;

std::string raw(std::string_view text) {
  auto ip = net::parse_ip(text).value();
  if (ip.is_v4()) {
    auto b = ip.to_v4().to_bytes();
    return std::string(b.begin(), b.end());
  }
  auto b = ip.to_v6().to_bytes();
  return std::string(b.begin(), b.end());
}

asio::ip::address ip(std::string_view text) { return net::parse_ip(text).value(); }

pb::Workload minimal_workload() {
  pb::Workload w;
  w.set_uid("cluster1//v1/Pod/default/a");
  w.set_name("a");
  w.set_namespace_("default");
  w.add_addresses(raw("10.0.0.1"));
  return w;
}

pb::Service minimal_service() {
  pb::Service s;
  s.set_name("svc");
  s.set_namespace_("default");
  s.set_hostname("svc.default.svc.cluster.local");
  return s;
}

sec::Authorization minimal_policy() {
  sec::Authorization a;
  a.set_name("p");
  a.set_namespace_("default");
  return a;
}

// ---- Workload -------------------------------------------------------------------------------

TEST(TranslateWorkload, MinimalWorkloadGetsTheDefaults) {
  auto w = to_workload(minimal_workload());
  ASSERT_TRUE(w) << w.error().message;
  EXPECT_EQ(w->uid, "cluster1//v1/Pod/default/a");
  EXPECT_EQ(w->trust_domain, "cluster.local");
  EXPECT_EQ(w->service_account, "default");
  EXPECT_EQ(w->cluster_id, "Kubernetes");
  EXPECT_EQ(w->workload_type, "deployment");
  EXPECT_EQ(w->capacity, 1u);
  EXPECT_EQ(w->protocol, state::TunnelProtocol::kTcp);
  EXPECT_EQ(w->status, state::HealthStatus::kHealthy);
  EXPECT_EQ(w->network_mode, state::NetworkMode::kStandard);
  EXPECT_FALSE(w->waypoint);
  EXPECT_FALSE(w->network_gateway);
  EXPECT_FALSE(w->application_tunnel);
  EXPECT_FALSE(w->locality);
  EXPECT_EQ(w->identity(), "spiffe://cluster.local/ns/default/sa/default");
}

TEST(TranslateWorkload, FullWorkloadRoundTripsEveryField) {
  pb::Workload in = minimal_workload();
  in.add_addresses(raw("fd00::1"));
  in.set_hostname("a.example.com");
  in.set_network("net1");
  in.set_tunnel_protocol(pb::HBONE);
  in.set_trust_domain("td.example");
  in.set_service_account("sa1");
  auto* wp = in.mutable_waypoint();
  wp->mutable_hostname()->set_namespace_("default");
  wp->mutable_hostname()->set_hostname("waypoint.default.svc.cluster.local");
  wp->set_hbone_mtls_port(15009);
  auto* gw = in.mutable_network_gateway();
  gw->mutable_address()->set_network("net2");
  gw->mutable_address()->set_address(raw("192.168.1.1"));
  in.set_node("node1");
  in.set_canonical_name("app");
  in.set_canonical_revision("v1");
  in.set_workload_type(pb::POD);
  in.set_workload_name("a-deploy");
  in.set_native_tunnel(true);
  in.mutable_application_tunnel()->set_protocol(pb::ApplicationTunnel::PROXY);
  in.mutable_application_tunnel()->set_port(15088);
  auto& ports = (*in.mutable_services())["default/svc.default.svc.cluster.local"];
  auto* p = ports.add_ports();
  p->set_service_port(80);
  p->set_target_port(8080);
  p = ports.add_ports();
  p->set_service_port(443);
  p->set_target_port(0);
  in.add_authorization_policies("default/p1");
  in.set_status(pb::UNHEALTHY);
  in.set_cluster_id("cluster1");
  in.mutable_locality()->set_region("r");
  in.mutable_locality()->set_zone("z");
  in.mutable_locality()->set_subzone("s");
  in.set_network_mode(pb::HOST_NETWORK);
  in.mutable_capacity()->set_value(7);

  auto w = to_workload(in);
  ASSERT_TRUE(w) << w.error().message;
  EXPECT_EQ(w->name, "a");
  EXPECT_EQ(w->namespace_name, "default");
  EXPECT_EQ(w->workload_ips, (std::vector{ip("10.0.0.1"), ip("fd00::1")}));
  EXPECT_EQ(w->hostname, "a.example.com");
  EXPECT_EQ(w->network, "net1");
  EXPECT_EQ(w->protocol, state::TunnelProtocol::kHbone);
  EXPECT_EQ(w->trust_domain, "td.example");
  EXPECT_EQ(w->service_account, "sa1");
  EXPECT_EQ(w->identity(), "spiffe://td.example/ns/default/sa/sa1");
  ASSERT_TRUE(w->waypoint);
  EXPECT_EQ(w->waypoint->destination, (decltype(w->waypoint->destination){state::NamespacedHostname{
                                          "default", "waypoint.default.svc.cluster.local"}}));
  EXPECT_EQ(w->waypoint->hbone_mtls_port, 15009);
  ASSERT_TRUE(w->network_gateway);
  EXPECT_EQ(w->network_gateway->destination,
            (decltype(w->network_gateway->destination){
                state::NetworkAddress{"net2", ip("192.168.1.1")}}));
  EXPECT_EQ(w->network_gateway->hbone_mtls_port, 15008);  // 0 on the wire: the default
  EXPECT_EQ(w->node, "node1");
  EXPECT_EQ(w->canonical_name, "app");
  EXPECT_EQ(w->canonical_revision, "v1");
  EXPECT_EQ(w->workload_type, "pod");
  EXPECT_EQ(w->workload_name, "a-deploy");
  EXPECT_TRUE(w->native_tunnel);
  ASSERT_TRUE(w->application_tunnel);
  EXPECT_EQ(w->application_tunnel->protocol, state::ApplicationTunnel::Protocol::kProxy);
  EXPECT_EQ(w->application_tunnel->port, std::optional<uint16_t>(15088));
  ASSERT_EQ(w->services.size(), 1u);
  EXPECT_EQ(w->services.at("default/svc.default.svc.cluster.local"),
            (state::PortMap{{80, 8080}, {443, 0}}));
  EXPECT_EQ(w->authorization_policies, std::vector<std::string>{"default/p1"});
  EXPECT_EQ(w->status, state::HealthStatus::kUnhealthy);
  EXPECT_EQ(w->cluster_id, "cluster1");
  ASSERT_TRUE(w->locality);
  EXPECT_EQ(*w->locality, (state::Locality{"r", "z", "s"}));
  EXPECT_EQ(w->network_mode, state::NetworkMode::kHostNetwork);
  EXPECT_EQ(w->capacity, 7u);
}

TEST(TranslateWorkload, EnumValuesMap) {
  struct Case {
    pb::WorkloadType type;
    std::string_view name;
  };
  for (auto c : {Case{pb::DEPLOYMENT, "deployment"}, Case{pb::CRONJOB, "cronjob"},
                 Case{pb::POD, "pod"}, Case{pb::JOB, "job"}}) {
    auto in = minimal_workload();
    in.set_workload_type(c.type);
    auto w = to_workload(in);
    ASSERT_TRUE(w) << w.error().message;
    EXPECT_EQ(w->workload_type, c.name);
  }
  auto in = minimal_workload();
  in.set_tunnel_protocol(pb::NONE);
  EXPECT_EQ(to_workload(in)->protocol, state::TunnelProtocol::kTcp);
  in.mutable_capacity()->set_value(0);  // an explicit 0 is kept: the workload takes no traffic
  EXPECT_EQ(to_workload(in)->capacity, 0u);
  in.mutable_application_tunnel()->set_protocol(pb::ApplicationTunnel::NONE);
  auto w = to_workload(in);
  ASSERT_TRUE(w->application_tunnel);
  EXPECT_EQ(w->application_tunnel->protocol, state::ApplicationTunnel::Protocol::kNone);
  EXPECT_FALSE(w->application_tunnel->port);
}

TEST(TranslateWorkload, HostnameOnlyWorkloadIsAccepted) {
  auto in = minimal_workload();
  in.clear_addresses();
  in.set_hostname("external.example.com");
  auto w = to_workload(in);
  ASSERT_TRUE(w) << w.error().message;
  EXPECT_TRUE(w->workload_ips.empty());
}

TEST(TranslateWorkload, GatewayAddressByIpv6) {
  auto in = minimal_workload();
  in.mutable_waypoint()->mutable_address()->set_address(raw("fd00::9"));
  auto w = to_workload(in);
  ASSERT_TRUE(w) << w.error().message;
  EXPECT_EQ(std::get<state::NetworkAddress>(w->waypoint->destination).address, ip("fd00::9"));
}

struct ErrorCase {
  std::string_view name;
  std::function<void(pb::Workload&)> mutate;
  std::string_view expected;
};

TEST(TranslateWorkload, ErrorsNameTheFieldAndWhy) {
  const ErrorCase cases[] = {
      {"empty uid", [](pb::Workload& w) { w.clear_uid(); }, "uid: must not be empty"},
      {"empty name", [](pb::Workload& w) { w.clear_name(); }, "name: must not be empty"},
      {"empty namespace", [](pb::Workload& w) { w.clear_namespace_(); },
       "namespace: must not be empty"},
      {"5-byte address", [](pb::Workload& w) { w.add_addresses("12345"); },
       "addresses[1]: 5 bytes is not an IPv4 or IPv6 address"},
      {"empty address", [](pb::Workload& w) { w.set_addresses(0, ""); },
       "addresses[0]: 0 bytes is not an IPv4 or IPv6 address"},
      {"no address nor hostname", [](pb::Workload& w) { w.clear_addresses(); },
       "addresses: a workload needs addresses or a hostname"},
      {"bad hostname", [](pb::Workload& w) { w.set_hostname("bad_host!"); }, "hostname: "},
      {"legacy mTLS", [](pb::Workload& w) { w.set_tunnel_protocol(pb::LEGACY_ISTIO_MTLS); },
       "tunnel_protocol: LEGACY_ISTIO_MTLS is not supported"},
      {"unknown tunnel",
       [](pb::Workload& w) { w.set_tunnel_protocol(static_cast<pb::TunnelProtocol>(9)); },
       "tunnel_protocol: 9 is not a known value"},
      {"unknown workload type",
       [](pb::Workload& w) { w.set_workload_type(static_cast<pb::WorkloadType>(8)); },
       "workload_type: 8 is not a known value"},
      {"unknown status", [](pb::Workload& w) { w.set_status(static_cast<pb::WorkloadStatus>(5)); },
       "status: 5 is not a known value"},
      {"unknown network mode",
       [](pb::Workload& w) { w.set_network_mode(static_cast<pb::NetworkMode>(3)); },
       "network_mode: 3 is not a known value"},
      {"service key without slash", [](pb::Workload& w) { (*w.mutable_services())["nohost"]; },
       "services[\"nohost\"]: service key must be namespace/hostname"},
      {"service key ending in slash", [](pb::Workload& w) { (*w.mutable_services())["ns/"]; },
       "services[\"ns/\"]: service key must be namespace/hostname"},
      {"service port 0",
       [](pb::Workload& w) { (*w.mutable_services())["ns/h"].add_ports()->set_target_port(80); },
       "services[\"ns/h\"].ports[0].service_port: 0 is out of range for a port number (1-65535)"},
      {"target port too big",
       [](pb::Workload& w) {
         auto* p = (*w.mutable_services())["ns/h"].add_ports();
         p->set_service_port(80);
         p->set_target_port(70000);
       },
       "services[\"ns/h\"].ports[0].target_port: 70000 is out of range for a port number "
       "(0-65535)"},
      {"empty policy name", [](pb::Workload& w) { w.add_authorization_policies(""); },
       "authorization_policies[0]: must not be empty"},
      {"waypoint without destination", [](pb::Workload& w) { w.mutable_waypoint(); },
       "waypoint: destination (hostname or address) is not set"},
      {"waypoint bad address",
       [](pb::Workload& w) { w.mutable_waypoint()->mutable_address()->set_address("123"); },
       "waypoint.address.address: 3 bytes is not an IPv4 or IPv6 address"},
      {"waypoint length too long",
       [](pb::Workload& w) {
         w.mutable_waypoint()->mutable_address()->set_address(raw("10.1.1.1"));
         w.mutable_waypoint()->mutable_address()->set_length(33);
       },
       "waypoint.address.length: prefix length 33 is more than 32"},
      {"waypoint hostname without namespace",
       [](pb::Workload& w) { w.mutable_waypoint()->mutable_hostname()->set_hostname("a.b"); },
       "waypoint.hostname.namespace: must not be empty"},
      {"waypoint empty hostname",
       [](pb::Workload& w) { w.mutable_waypoint()->mutable_hostname()->set_namespace_("ns"); },
       "waypoint.hostname.hostname: must not be empty"},
      {"waypoint port too big",
       [](pb::Workload& w) {
         w.mutable_waypoint()->mutable_address()->set_address(raw("10.1.1.1"));
         w.mutable_waypoint()->set_hbone_mtls_port(65536);
       },
       "waypoint.hbone_mtls_port: 65536 is out of range for a port number (1-65535)"},
      {"network gateway without destination", [](pb::Workload& w) { w.mutable_network_gateway(); },
       "network_gateway: destination (hostname or address) is not set"},
      {"application tunnel unknown protocol",
       [](pb::Workload& w) {
         w.mutable_application_tunnel()->set_protocol(
             static_cast<pb::ApplicationTunnel::Protocol>(4));
       },
       "application_tunnel.protocol: 4 is not a known value"},
      {"application tunnel port too big",
       [](pb::Workload& w) { w.mutable_application_tunnel()->set_port(100000); },
       "application_tunnel.port: 100000 is out of range for a port number (1-65535)"},
  };
  for (const auto& c : cases) {
    auto in = minimal_workload();
    c.mutate(in);
    auto w = to_workload(in);
    ASSERT_FALSE(w) << c.name;
    EXPECT_EQ(w.error().message.rfind(c.expected, 0), 0u)
        << c.name << ": got \"" << w.error().message << "\"";
  }
}

// ---- Service --------------------------------------------------------------------------------

TEST(TranslateService, FullServiceRoundTripsEveryField) {
  auto in = minimal_service();
  auto* a = in.add_addresses();
  a->set_address(raw("10.96.0.1"));
  a = in.add_addresses();
  a->set_network("net1");
  a->set_address(raw("fd00::10"));
  a->set_length(128);
  auto* p = in.add_ports();
  p->set_service_port(80);
  p->set_target_port(8080);
  p->set_app_protocol(pb::HTTP2);
  p = in.add_ports();
  p->set_service_port(9090);
  in.add_subject_alt_names("spiffe://cluster.local/ns/default/sa/x");
  in.mutable_waypoint()->mutable_address()->set_address(raw("10.0.0.99"));
  in.mutable_waypoint()->set_hbone_mtls_port(15008);
  auto* lb = in.mutable_load_balancing();
  lb->add_routing_preference(pb::LoadBalancing::NETWORK);
  lb->add_routing_preference(pb::LoadBalancing::REGION);
  lb->add_routing_preference(pb::LoadBalancing::ZONE);
  lb->add_routing_preference(pb::LoadBalancing::SUBZONE);
  lb->add_routing_preference(pb::LoadBalancing::NODE);
  lb->add_routing_preference(pb::LoadBalancing::CLUSTER);
  lb->set_mode(pb::LoadBalancing::FAILOVER);
  lb->set_health_policy(pb::LoadBalancing::ALLOW_ALL);
  in.set_ip_families(pb::DUAL);
  in.set_canonical(true);

  auto svc = to_service(in);
  ASSERT_TRUE(svc) << svc.error().message;
  EXPECT_EQ(svc->name, "svc");
  EXPECT_EQ(svc->namespace_name, "default");
  EXPECT_EQ(svc->hostname, "svc.default.svc.cluster.local");
  EXPECT_EQ(svc->key(), "default/svc.default.svc.cluster.local");
  EXPECT_EQ(svc->vips,
            (std::vector<state::NetworkAddress>{{"", ip("10.96.0.1")}, {"net1", ip("fd00::10")}}));
  EXPECT_EQ(svc->ports, (state::PortMap{{80, 8080}, {9090, 0}}));
  EXPECT_EQ(svc->subject_alt_names,
            std::vector<std::string>{"spiffe://cluster.local/ns/default/sa/x"});
  ASSERT_TRUE(svc->waypoint);
  EXPECT_EQ(std::get<state::NetworkAddress>(svc->waypoint->destination).address, ip("10.0.0.99"));
  ASSERT_TRUE(svc->load_balancer);
  using S = state::LoadBalancerScope;
  EXPECT_EQ(svc->load_balancer->routing_preferences,
            (std::vector{S::kNetwork, S::kRegion, S::kZone, S::kSubzone, S::kNode, S::kCluster}));
  EXPECT_EQ(svc->load_balancer->mode, state::LoadBalancerMode::kFailover);
  EXPECT_EQ(svc->load_balancer->health_policy, state::LoadBalancerHealthPolicy::kAllowAll);
  EXPECT_EQ(svc->ip_families, std::optional(state::IpFamily::kDual));
  EXPECT_TRUE(svc->canonical);
  EXPECT_TRUE(svc->endpoints.empty());
}

TEST(TranslateService, MinimalServiceLeavesOptionalsUnset) {
  auto svc = to_service(minimal_service());
  ASSERT_TRUE(svc) << svc.error().message;
  EXPECT_TRUE(svc->vips.empty());
  EXPECT_TRUE(svc->ports.empty());
  EXPECT_FALSE(svc->waypoint);
  EXPECT_FALSE(svc->load_balancer);
  EXPECT_FALSE(svc->ip_families);  // AUTOMATIC
  EXPECT_FALSE(svc->canonical);
}

TEST(TranslateService, EnumValuesMap) {
  auto in = minimal_service();
  in.set_ip_families(pb::IPV4_ONLY);
  EXPECT_EQ(to_service(in)->ip_families, std::optional(state::IpFamily::kIpv4));
  in.set_ip_families(pb::IPV6_ONLY);
  EXPECT_EQ(to_service(in)->ip_families, std::optional(state::IpFamily::kIpv6));
  in.mutable_load_balancing()->set_mode(pb::LoadBalancing::UNSPECIFIED_MODE);
  EXPECT_EQ(to_service(in)->load_balancer->mode, state::LoadBalancerMode::kStandard);
  in.mutable_load_balancing()->set_mode(pb::LoadBalancing::STRICT);
  EXPECT_EQ(to_service(in)->load_balancer->mode, state::LoadBalancerMode::kStrict);
  in.mutable_load_balancing()->set_mode(pb::LoadBalancing::PASSTHROUGH);
  EXPECT_EQ(to_service(in)->load_balancer->mode, state::LoadBalancerMode::kPassthrough);
  EXPECT_EQ(to_service(in)->load_balancer->health_policy,
            state::LoadBalancerHealthPolicy::kOnlyHealthy);
}

TEST(TranslateService, RepeatedServicePortKeepsTheLastEntry) {
  auto in = minimal_service();
  for (uint32_t target : {8080u, 8081u}) {
    auto* p = in.add_ports();
    p->set_service_port(80);
    p->set_target_port(target);
  }
  EXPECT_EQ(to_service(in)->ports, (state::PortMap{{80, 8081}}));
}

TEST(TranslateService, ErrorsNameTheFieldAndWhy) {
  struct Case {
    std::string_view name;
    std::function<void(pb::Service&)> mutate;
    std::string_view expected;
  };
  const Case cases[] = {
      {"empty name", [](pb::Service& s) { s.clear_name(); }, "name: must not be empty"},
      {"empty namespace", [](pb::Service& s) { s.clear_namespace_(); },
       "namespace: must not be empty"},
      {"empty hostname", [](pb::Service& s) { s.clear_hostname(); }, "hostname: must not be empty"},
      {"bad hostname", [](pb::Service& s) { s.set_hostname("-bad-.example"); }, "hostname: "},
      {"bad vip", [](pb::Service& s) { s.add_addresses()->set_address("1234567"); },
       "addresses[0].address: 7 bytes is not an IPv4 or IPv6 address"},
      {"vip length too long",
       [](pb::Service& s) {
         auto* a = s.add_addresses();
         a->set_address(raw("fd00::1"));
         a->set_length(129);
       },
       "addresses[0].length: prefix length 129 is more than 128"},
      {"service port too big", [](pb::Service& s) { s.add_ports()->set_service_port(65536); },
       "ports[0].service_port: 65536 is out of range for a port number (1-65535)"},
      {"empty SAN", [](pb::Service& s) { s.add_subject_alt_names(""); },
       "subject_alt_names[0]: must not be empty"},
      {"waypoint without destination", [](pb::Service& s) { s.mutable_waypoint(); },
       "waypoint: destination (hostname or address) is not set"},
      {"unspecified scope",
       [](pb::Service& s) {
         s.mutable_load_balancing()->add_routing_preference(pb::LoadBalancing::ZONE);
         s.mutable_load_balancing()->add_routing_preference(pb::LoadBalancing::UNSPECIFIED_SCOPE);
       },
       "load_balancing.routing_preference[1]: UNSPECIFIED_SCOPE is not a scope"},
      {"unknown mode",
       [](pb::Service& s) {
         s.mutable_load_balancing()->set_mode(static_cast<pb::LoadBalancing::Mode>(9));
       },
       "load_balancing.mode: 9 is not a known value"},
      {"unknown health policy",
       [](pb::Service& s) {
         s.mutable_load_balancing()->set_health_policy(
             static_cast<pb::LoadBalancing::HealthPolicy>(9));
       },
       "load_balancing.health_policy: 9 is not a known value"},
      {"unknown ip families",
       [](pb::Service& s) { s.set_ip_families(static_cast<pb::IPFamilies>(7)); },
       "ip_families: 7 is not a known value"},
  };
  for (const auto& c : cases) {
    auto in = minimal_service();
    c.mutate(in);
    auto svc = to_service(in);
    ASSERT_FALSE(svc) << c.name;
    EXPECT_EQ(svc.error().message.rfind(c.expected, 0), 0u)
        << c.name << ": got \"" << svc.error().message << "\"";
  }
}

// ---- Authorization --------------------------------------------------------------------------

sec::StringMatch exact(std::string v) {
  sec::StringMatch m;
  m.set_exact(std::move(v));
  return m;
}

sec::Address cidr(std::string_view text, uint32_t length) {
  sec::Address a;
  a.set_address(raw(text));
  a.set_length(length);
  return a;
}

TEST(TranslateAuthorization, FullPolicyRoundTripsEveryMatchForm) {
  auto in = minimal_policy();
  in.set_scope(sec::WORKLOAD_SELECTOR);
  in.set_action(sec::DENY);
  in.set_dry_run(true);
  auto* m = in.add_rules()->add_clauses()->add_matches();
  *m->add_namespaces() = exact("ns1");
  m->add_not_namespaces()->set_prefix("kube-");
  m->add_principals()->set_suffix("/sa/admin");
  m->add_not_principals()->mutable_presence();
  *m->add_source_ips() = cidr("10.0.0.0", 8);
  *m->add_not_source_ips() = cidr("10.1.0.0", 16);
  *m->add_destination_ips() = cidr("fd00::", 64);
  *m->add_not_destination_ips() = cidr("fd00::1", 128);
  m->add_destination_ports(8080);
  m->add_not_destination_ports(9999);
  auto* sa = m->add_service_accounts();
  sa->set_namespace_("ns1");
  sa->set_serviceaccount("sa1");
  sa = m->add_not_service_accounts();
  sa->set_namespace_("ns2");
  sa->set_serviceaccount("sa2");
  // A second rule with two clauses, the second with two matches.
  auto* rule = in.add_rules();
  rule->add_clauses()->add_matches()->add_destination_ports(1);
  auto* clause = rule->add_clauses();
  clause->add_matches()->add_destination_ports(2);
  clause->add_matches()->add_destination_ports(3);

  auto a = to_authorization(in);
  ASSERT_TRUE(a) << a.error().message;
  EXPECT_EQ(a->key(), "default/p");
  EXPECT_EQ(a->scope, state::PolicyScope::kWorkloadSelector);
  EXPECT_EQ(a->action, state::PolicyAction::kDeny);
  EXPECT_TRUE(a->dry_run);
  ASSERT_EQ(a->rules.size(), 2u);
  ASSERT_EQ(a->rules[0].size(), 1u);
  ASSERT_EQ(a->rules[0][0].size(), 1u);
  using K = state::StringMatch::Kind;
  state::Match expected{
      .namespaces = {{K::kExact, "ns1"}},
      .not_namespaces = {{K::kPrefix, "kube-"}},
      .service_accounts = {{"ns1", "sa1"}},
      .not_service_accounts = {{"ns2", "sa2"}},
      .principals = {{K::kSuffix, "/sa/admin"}},
      .not_principals = {{K::kPresence, ""}},
      .source_ips = {net::Cidr{ip("10.0.0.0"), 8}},
      .not_source_ips = {net::Cidr{ip("10.1.0.0"), 16}},
      .destination_ips = {net::Cidr{ip("fd00::"), 64}},
      .not_destination_ips = {net::Cidr{ip("fd00::1"), 128}},
      .destination_ports = {8080},
      .not_destination_ports = {9999},
  };
  EXPECT_EQ(a->rules[0][0][0], expected);
  ASSERT_EQ(a->rules[1].size(), 2u);
  EXPECT_EQ(a->rules[1][0].size(), 1u);
  ASSERT_EQ(a->rules[1][1].size(), 2u);
  EXPECT_EQ(a->rules[1][1][1].destination_ports, std::vector<uint16_t>{3});
}

TEST(TranslateAuthorization, DefaultsAreGlobalAllowWithoutRules) {
  auto a = to_authorization(minimal_policy());
  ASSERT_TRUE(a) << a.error().message;
  EXPECT_EQ(a->scope, state::PolicyScope::kGlobal);
  EXPECT_EQ(a->action, state::PolicyAction::kAllow);
  EXPECT_FALSE(a->dry_run);
  EXPECT_TRUE(a->rules.empty());
  auto in = minimal_policy();
  in.set_scope(sec::NAMESPACE);
  EXPECT_EQ(to_authorization(in)->scope, state::PolicyScope::kNamespace);
}

TEST(TranslateAuthorization, ZeroLengthCidrMatchesEverything) {
  auto in = minimal_policy();
  *in.add_rules()->add_clauses()->add_matches()->add_source_ips() = cidr("0.0.0.0", 0);
  auto a = to_authorization(in);
  ASSERT_TRUE(a) << a.error().message;
  EXPECT_TRUE(a->rules[0][0][0].source_ips[0].contains(ip("203.0.113.5")));
}

TEST(TranslateAuthorization, ErrorsNameTheFieldAndWhy) {
  struct Case {
    std::string_view name;
    std::function<void(sec::Match&)> mutate;
    std::string_view expected;
  };
  constexpr std::string_view kAt = "rules[0].clauses[0].matches[0].";
  const Case cases[] = {
      {"namespaces unset", [](sec::Match& m) { m.add_namespaces(); },
       "namespaces[0]: no match type (exact, prefix, suffix or presence) is set"},
      {"not_namespaces unset",
       [](sec::Match& m) {
         *m.add_not_namespaces() = exact("x");
         m.add_not_namespaces();
       },
       "not_namespaces[1]: no match type"},
      {"principals unset", [](sec::Match& m) { m.add_principals(); }, "principals[0]: no match"},
      {"not_principals unset", [](sec::Match& m) { m.add_not_principals(); },
       "not_principals[0]: no match"},
      {"source ip bytes", [](sec::Match& m) { m.add_source_ips()->set_address("12345"); },
       "source_ips[0].address: 5 bytes is not an IPv4 or IPv6 address"},
      {"source ip length", [](sec::Match& m) { *m.add_source_ips() = cidr("10.0.0.0", 33); },
       "source_ips[0].length: prefix length 33 is more than 32"},
      {"not source ip length", [](sec::Match& m) { *m.add_not_source_ips() = cidr("fd00::", 129); },
       "not_source_ips[0].length: prefix length 129 is more than 128"},
      {"destination ip bytes", [](sec::Match& m) { m.add_destination_ips(); },
       "destination_ips[0].address: 0 bytes is not an IPv4 or IPv6 address"},
      {"not destination ip bytes",
       [](sec::Match& m) { m.add_not_destination_ips()->set_address("abc"); },
       "not_destination_ips[0].address: 3 bytes"},
      {"destination port too big", [](sec::Match& m) { m.add_destination_ports(65536); },
       "destination_ports[0]: 65536 is out of range for a port number (1-65535)"},
      {"destination port 0", [](sec::Match& m) { m.add_destination_ports(0); },
       "destination_ports[0]: 0 is out of range"},
      {"not destination port too big",
       [](sec::Match& m) {
         m.add_not_destination_ports(80);
         m.add_not_destination_ports(70000);
       },
       "not_destination_ports[1]: 70000 is out of range"},
      {"service account without namespace",
       [](sec::Match& m) { m.add_service_accounts()->set_serviceaccount("sa"); },
       "service_accounts[0].namespace: must not be empty"},
      {"not service account without name",
       [](sec::Match& m) { m.add_not_service_accounts()->set_namespace_("ns"); },
       "not_service_accounts[0].serviceAccount: must not be empty"},
  };
  for (const auto& c : cases) {
    auto in = minimal_policy();
    c.mutate(*in.add_rules()->add_clauses()->add_matches());
    auto a = to_authorization(in);
    ASSERT_FALSE(a) << c.name;
    auto want = std::string(kAt) + std::string(c.expected);
    EXPECT_EQ(a.error().message.rfind(want, 0), 0u)
        << c.name << ": got \"" << a.error().message << "\"";
  }
}

TEST(TranslateAuthorization, ErrorsInLaterRulesAndPolicyFields) {
  auto in = minimal_policy();
  in.add_rules()->add_clauses()->add_matches()->add_destination_ports(80);
  auto* clause = in.add_rules()->add_clauses();
  clause = in.mutable_rules(1)->add_clauses();
  clause->add_matches()->add_destination_ports(80);
  clause->add_matches()->add_principals();
  auto a = to_authorization(in);
  ASSERT_FALSE(a);
  EXPECT_EQ(a.error().message.rfind("rules[1].clauses[1].matches[1].principals[0]: ", 0), 0u)
      << a.error().message;

  in = minimal_policy();
  in.clear_name();
  EXPECT_EQ(to_authorization(in).error().message, "name: must not be empty");
  in = minimal_policy();
  in.clear_namespace_();
  EXPECT_EQ(to_authorization(in).error().message, "namespace: must not be empty");
  in = minimal_policy();
  in.set_scope(static_cast<sec::Scope>(5));
  EXPECT_EQ(to_authorization(in).error().message, "scope: 5 is not a known value");
  in = minimal_policy();
  in.set_action(static_cast<sec::Action>(2));
  EXPECT_EQ(to_authorization(in).error().message, "action: 2 is not a known value");
}

TEST(TranslateAddress, RawBytes) {
  EXPECT_EQ(*address_from_bytes(raw("1.2.3.4")), ip("1.2.3.4"));
  EXPECT_EQ(*address_from_bytes(raw("::ffff:1.2.3.4")), ip("::ffff:1.2.3.4"));
  EXPECT_EQ(address_from_bytes(std::string(15, 'x')).error().message,
            "15 bytes is not an IPv4 or IPv6 address");
}

}  // namespace
}  // namespace zt::xds
