#include "ztunnel/state/local_config.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

namespace zt::state {
namespace {

// The example from facts §4.5 (ztunnel's examples/localhost.yaml layout).
constexpr std::string_view kExample = R"(
workloads:
- uid: cluster1//v1/Pod/default/local
  name: local
  namespace: default
  serviceAccount: default
  workloadIps: ["127.0.0.1"]
  protocol: HBONE
  node: local
  network: ""
  services:
    "default/example.com":
      80: 8080
policies:
- name: deny-9999
  namespace: default
  scope: Namespace
  action: Allow
  dryRun: false
  rules:
  - - - notDestinationPorts: [9999]
services:
- name: local
  namespace: default
  hostname: example.com
  vips: ["/127.10.0.1"]
  ports: {80: 8080}
  subjectAltNames: ["spiffe://cluster.local/ns/default/sa/local"]
  canonical: true
)";

TEST(LocalConfig, TheFactsExampleParses) {
  auto state = parse_local_config(kExample);
  ASSERT_TRUE(state) << state.error().message;
  const State& s = **state;
  ASSERT_EQ(s.workloads().size(), 1u);
  const Workload& w = *s.workloads()[0];
  EXPECT_EQ(w.uid, "cluster1//v1/Pod/default/local");
  EXPECT_EQ(w.name, "local");
  EXPECT_EQ(w.namespace_name, "default");
  EXPECT_EQ(w.service_account, "default");
  EXPECT_EQ(w.trust_domain, "cluster.local");
  EXPECT_EQ(w.workload_ips, std::vector{asio::ip::make_address("127.0.0.1")});
  EXPECT_EQ(w.protocol, TunnelProtocol::kHbone);
  EXPECT_EQ(w.node, "local");
  EXPECT_EQ(w.network, "");
  EXPECT_EQ(w.capacity, 1u);
  EXPECT_EQ(w.status, HealthStatus::kHealthy);
  EXPECT_EQ(w.cluster_id, "Kubernetes");
  EXPECT_EQ(w.identity(), "spiffe://cluster.local/ns/default/sa/default");
  EXPECT_EQ(w.services.at("default/example.com"), (PortMap{{80, 8080}}));

  ASSERT_EQ(s.services().size(), 1u);
  const Service& svc = *s.services()[0];
  EXPECT_EQ(svc.key(), "default/example.com");
  ASSERT_EQ(svc.vips.size(), 1u);
  EXPECT_EQ(svc.vips[0].to_string(), "/127.10.0.1");
  EXPECT_EQ(svc.ports, (PortMap{{80, 8080}}));
  EXPECT_EQ(svc.subject_alt_names, std::vector<std::string>{"spiffe://cluster.local/ns/default/sa/local"});
  EXPECT_TRUE(svc.canonical);

  ASSERT_EQ(s.policies().size(), 1u);
  const Authorization& p = *s.policies()[0];
  EXPECT_EQ(p.key(), "default/deny-9999");
  EXPECT_EQ(p.scope, PolicyScope::kNamespace);
  EXPECT_EQ(p.action, PolicyAction::kAllow);
  EXPECT_FALSE(p.dry_run);
  ASSERT_EQ(p.rules.size(), 1u);
  ASSERT_EQ(p.rules[0].size(), 1u);
  ASSERT_EQ(p.rules[0][0].size(), 1u);
  EXPECT_EQ(p.rules[0][0][0].not_destination_ports, std::vector<uint16_t>{9999});

  // Indexes.
  EXPECT_EQ(s.find_workload("", asio::ip::make_address("127.0.0.1")), s.workloads()[0]);
  EXPECT_EQ(s.find_workload("", asio::ip::make_address("::ffff:127.0.0.1")), s.workloads()[0]);
  EXPECT_EQ(s.find_workload("other", asio::ip::make_address("127.0.0.1")), nullptr);
  EXPECT_EQ(s.find_workload_by_uid("cluster1//v1/Pod/default/local"), s.workloads()[0]);
  EXPECT_EQ(s.find_service("", asio::ip::make_address("127.10.0.1")), s.services()[0]);
  EXPECT_EQ(s.find_service("default", "example.com"), s.services()[0]);
  EXPECT_EQ(s.find_service_by_hostname("example.com"), s.services()[0]);
  ASSERT_EQ(s.endpoints("default/example.com").size(), 1u);
  EXPECT_EQ(s.endpoints("default/example.com")[0].workload, s.workloads()[0]);
  EXPECT_EQ(s.find_policy("default/deny-9999"), s.policies()[0]);
}

TEST(LocalConfig, EveryFieldIsRead) {
  constexpr std::string_view kYaml = R"(
workloads:
- uid: u1
  name: n1
  namespace: ns1
  serviceAccount: sa1
  trustDomain: td.example
  workloadIps: ["10.0.0.1", "fd00::1"]
  protocol: TCP
  node: node-a
  network: net-a
  hostname: pod.example.com
  workloadName: deploy-a
  workloadType: cronjob
  canonicalName: app-a
  canonicalRevision: v7
  clusterId: cluster-a
  status: Unhealthy
  capacity: 9
  services: {"ns1/svc.example.com": {80: 8080, 81: 0}}
  authorizationPolicies: [ns1/p1]
  waypoint: {destination: "net-a/10.0.0.9", hboneMtlsPort: 15019}
  networkGateway: {destination: {namespace: gw-ns, hostname: gw.example.com}}
  networkMode: HostNetwork
  nativeTunnel: true
  applicationTunnel: {protocol: PROXY, port: 15088}
  locality: {region: r, zone: z, subzone: s}
services:
- name: svc
  namespace: ns1
  hostname: svc.example.com
  vips: ["net-a/10.96.0.1", "/fd00::96"]
  ports: {80: 8080}
  subjectAltNames: [spiffe://td.example/ns/ns1/sa/other]
  waypoint: {destination: {namespace: ns1, hostname: wp.example.com}}
  loadBalancer: {routingPreferences: [Region, Zone, Node], mode: Failover, healthPolicy: AllowAll}
  ipFamilies: Dual
  canonical: false
  endpoints:
    u1: {workloadUid: u1, port: {80: 8081}, status: Healthy}
policies:
- name: p1
  namespace: ns1
  scope: WorkloadSelector
  action: Deny
  dryRun: true
  rules:
  - - - namespaces: [{Exact: a}, {Prefix: b}]
        notNamespaces: [{Suffix: c}]
        principals: [Presence, {Presence: []}]
        notPrincipals: [{Exact: td.example/ns/x/sa/y}]
        serviceAccounts: [{namespace: ns1, serviceAccount: sa1}]
        notServiceAccounts: [{namespace: ns2, serviceAccount: sa2}]
        sourceIps: [10.0.0.0/8]
        notSourceIps: [10.1.0.0/16]
        destinationIps: ["fd00::/8"]
        notDestinationIps: [10.0.0.1]
        destinationPorts: [80, 443]
        notDestinationPorts: [9999]
      - destinationPorts: [8080]
    - - sourceIps: [192.168.0.0/16]
  - []
)";
  auto config = parse_local_config_objects(kYaml);
  ASSERT_TRUE(config) << config.error().message;
  const Workload& w = config->workloads.at(0);
  EXPECT_EQ(w.trust_domain, "td.example");
  EXPECT_EQ(w.identity(), "spiffe://td.example/ns/ns1/sa/sa1");
  EXPECT_EQ(w.workload_ips.size(), 2u);
  EXPECT_EQ(w.protocol, TunnelProtocol::kTcp);
  EXPECT_EQ(w.network, "net-a");
  EXPECT_EQ(w.hostname, "pod.example.com");
  EXPECT_EQ(w.workload_name, "deploy-a");
  EXPECT_EQ(w.workload_type, "cronjob");
  EXPECT_EQ(w.canonical_name, "app-a");
  EXPECT_EQ(w.canonical_revision, "v7");
  EXPECT_EQ(w.cluster_id, "cluster-a");
  EXPECT_EQ(w.status, HealthStatus::kUnhealthy);
  EXPECT_EQ(w.capacity, 9u);
  EXPECT_EQ(w.services.at("ns1/svc.example.com"), (PortMap{{80, 8080}, {81, 0}}));
  EXPECT_EQ(w.authorization_policies, std::vector<std::string>{"ns1/p1"});
  ASSERT_TRUE(w.waypoint);
  EXPECT_EQ(std::get<NetworkAddress>(w.waypoint->destination).to_string(), "net-a/10.0.0.9");
  EXPECT_EQ(w.waypoint->hbone_mtls_port, 15019);
  ASSERT_TRUE(w.network_gateway);
  EXPECT_EQ(std::get<NamespacedHostname>(w.network_gateway->destination).to_string(),
            "gw-ns/gw.example.com");
  EXPECT_EQ(w.network_gateway->hbone_mtls_port, 15008);
  EXPECT_EQ(w.network_mode, NetworkMode::kHostNetwork);
  EXPECT_TRUE(w.native_tunnel);
  EXPECT_EQ(w.application_tunnel, (ApplicationTunnel{ApplicationTunnel::Protocol::kProxy, 15088}));
  EXPECT_EQ(w.locality, (Locality{"r", "z", "s"}));

  const Service& svc = config->services.at(0);
  EXPECT_EQ(svc.vips.size(), 2u);
  EXPECT_EQ(svc.vips[1].to_string(), "/fd00::96");
  ASSERT_TRUE(svc.waypoint);
  ASSERT_TRUE(svc.load_balancer);
  EXPECT_EQ(svc.load_balancer->mode, LoadBalancerMode::kFailover);
  EXPECT_EQ(svc.load_balancer->health_policy, LoadBalancerHealthPolicy::kAllowAll);
  EXPECT_EQ(svc.load_balancer->routing_preferences.size(), 3u);
  EXPECT_EQ(svc.ip_families, IpFamily::kDual);
  ASSERT_EQ(svc.endpoints.size(), 1u);
  EXPECT_EQ(svc.endpoints[0], (ServiceEndpoint{"u1", {{80, 8081}}, HealthStatus::kHealthy}));

  const Authorization& p = config->policies.at(0);
  EXPECT_EQ(p.scope, PolicyScope::kWorkloadSelector);
  EXPECT_EQ(p.action, PolicyAction::kDeny);
  EXPECT_TRUE(p.dry_run);
  ASSERT_EQ(p.rules.size(), 2u);
  ASSERT_EQ(p.rules[0].size(), 2u);     // two clauses
  ASSERT_EQ(p.rules[0][0].size(), 2u);  // first clause: two matches
  EXPECT_TRUE(p.rules[1].empty());
  const Match& m = p.rules[0][0][0];
  EXPECT_EQ(m.namespaces, (std::vector<StringMatch>{{StringMatch::Kind::kExact, "a"},
                                                    {StringMatch::Kind::kPrefix, "b"}}));
  EXPECT_EQ(m.not_namespaces, (std::vector<StringMatch>{{StringMatch::Kind::kSuffix, "c"}}));
  EXPECT_EQ(m.principals, (std::vector<StringMatch>{{StringMatch::Kind::kPresence, ""},
                                                    {StringMatch::Kind::kPresence, ""}}));
  EXPECT_EQ(m.not_principals.size(), 1u);
  EXPECT_EQ(m.service_accounts, (std::vector<ServiceAccountMatch>{{"ns1", "sa1"}}));
  EXPECT_EQ(m.not_service_accounts, (std::vector<ServiceAccountMatch>{{"ns2", "sa2"}}));
  EXPECT_EQ(m.source_ips.at(0).to_string(), "10.0.0.0/8");
  EXPECT_EQ(m.not_source_ips.at(0).to_string(), "10.1.0.0/16");
  EXPECT_EQ(m.destination_ips.at(0).to_string(), "fd00::/8");
  EXPECT_EQ(m.not_destination_ips.at(0).to_string(), "10.0.0.1/32");
  EXPECT_EQ(m.destination_ports, (std::vector<uint16_t>{80, 443}));
  EXPECT_EQ(m.not_destination_ports, (std::vector<uint16_t>{9999}));
  EXPECT_FALSE(m.empty());
  EXPECT_EQ(p.rules[0][1][0].source_ips.at(0).to_string(), "192.168.0.0/16");
}

TEST(LocalConfig, EmptyDocumentIsAnEmptyState) {
  for (std::string_view yaml : {"", "# nothing\n", "workloads: []\nservices:\npolicies: []\n"}) {
    auto state = parse_local_config(yaml);
    ASSERT_TRUE(state) << yaml << ": " << state.error().message;
    EXPECT_TRUE((*state)->workloads().empty());
  }
}

TEST(StringMatch, Semantics) {
  EXPECT_TRUE((StringMatch{StringMatch::Kind::kExact, "a"}.matches("a")));
  EXPECT_FALSE((StringMatch{StringMatch::Kind::kExact, "a"}.matches("ab")));
  EXPECT_TRUE((StringMatch{StringMatch::Kind::kPrefix, "a"}.matches("ab")));
  EXPECT_TRUE((StringMatch{StringMatch::Kind::kSuffix, "b"}.matches("ab")));
  EXPECT_FALSE((StringMatch{StringMatch::Kind::kSuffix, "abc"}.matches("c")));
  EXPECT_TRUE((StringMatch{StringMatch::Kind::kPresence, ""}.matches("x")));
  EXPECT_FALSE((StringMatch{StringMatch::Kind::kPresence, ""}.matches("")));
}

// A valid workload to break one field at a time.
std::string workload(std::string_view extra_fields, std::string_view ips = R"(["10.0.0.1"])") {
  return "workloads:\n- uid: u1\n  name: n1\n  namespace: ns\n  workloadIps: " + std::string(ips) +
         "\n" + std::string(extra_fields);
}

std::string service(std::string_view extra_fields) {
  return "services:\n- name: s\n  namespace: ns\n  hostname: s.ns.svc\n" + std::string(extra_fields);
}

std::string policy(std::string_view rules, std::string_view extra = "") {
  return "policies:\n- name: p\n  namespace: ns\n  scope: Global\n  action: Allow\n  dryRun: false\n" +
         std::string(extra) + "  rules: " + std::string(rules) + "\n";
}

struct ErrorCase {
  std::string yaml;
  std::string message;  // expected to be contained in the error
};

TEST(LocalConfig, EachBadFieldIsNamed) {
  const ErrorCase cases[] = {
      // Document shape.
      {"bogus: []", "bogus: unknown key (expected one of: workloads, services, policies)"},
      {"- a\n- b", "top level: must be a map"},
      {"workloads: {a: b}", "workloads: must be a list"},
      {"workloads: [", "yaml syntax error at line"},
      {"workloads:\n- uid: a\n  uid: b", "workloads[0].uid: duplicate key"},
      // Workloads.
      {workload("  bogus: 1\n"), "workloads[0].bogus: unknown key"},
      {"workloads:\n- name: n\n  namespace: ns\n  workloadIps: [10.0.0.1]",
       "workloads[0]: missing required key \"uid\""},
      {"workloads:\n- uid: u\n  namespace: ns\n  workloadIps: [10.0.0.1]",
       "workloads[0]: missing required key \"name\""},
      {"workloads:\n- uid: u\n  name: n\n  workloadIps: [10.0.0.1]",
       "workloads[0]: missing required key \"namespace\""},
      {"workloads:\n- uid: \"\"\n  name: n\n  namespace: ns\n  workloadIps: [10.0.0.1]",
       "workloads[0].uid: must not be empty"},
      {workload("", R"(["10.0.0.1", "abc"])"),
       "workloads[0].workloadIps[1]: \"abc\" is not an IP address"},
      {workload("", R"("10.0.0.1")"), "workloads[0].workloadIps: must be a list"},
      {workload("", "[[10.0.0.1]]"), "workloads[0].workloadIps[0]: must be an IP address"},
      {workload("", "[]"), "workloads[0]: needs workloadIps or a hostname"},
      {workload("  protocol: QUIC\n"), "workloads[0].protocol: \"QUIC\" is not one of HBONE, TCP"},
      {workload("  status: Sick\n"), "workloads[0].status: \"Sick\" is not one of Healthy, Unhealthy"},
      {workload("  capacity: -1\n"), "workloads[0].capacity: \"-1\" is not a number"},
      {workload("  capacity: 4294967296\n"), "workloads[0].capacity: 4294967296 is out of range"},
      {workload("  workloadType: statefulset\n"), "workloads[0].workloadType: \"statefulset\""},
      {workload("  hostname: bad_host\n"), "workloads[0].hostname:"},
      {workload("  nativeTunnel: maybe\n"), "workloads[0].nativeTunnel: \"maybe\" is not true or false"},
      {workload("  services: {noslash: {80: 8080}}\n"),
       "workloads[0].services[\"noslash\"]: service key must be namespace/hostname"},
      {workload("  services: {\"ns/s\": {80: 99999}}\n"),
       "workloads[0].services[\"ns/s\"][\"80\"]: 99999 is out of range for a port number"},
      {workload("  services: {\"ns/s\": {0: 80}}\n"),
       "workloads[0].services[\"ns/s\"][\"0\"]: 0 is out of range for a port number"},
      {workload("  services: {\"ns/s\": {http: 80}}\n"),
       "workloads[0].services[\"ns/s\"][\"http\"]: \"http\" is not a port number"},
      {workload("  waypoint: {hboneMtlsPort: 15008}\n"),
       "workloads[0].waypoint: missing required key \"destination\""},
      {workload("  waypoint: {destination: 10.0.0.9}\n"),
       "workloads[0].waypoint.destination: \"10.0.0.9\" is not network/IP"},
      {workload("  applicationTunnel: {protocol: HTTP}\n"),
       "workloads[0].applicationTunnel.protocol: \"HTTP\" is not one of NONE, PROXY"},
      {workload("  locality: {country: x}\n"), "workloads[0].locality.country: unknown key"},
      {workload("  authorizationPolicies: [\"\"]\n"),
       "workloads[0].authorizationPolicies[0]: must not be empty"},
      // Services.
      {service("  vips: [\"10.96.0.1\"]\n"),
       "services[0].vips[0]: \"10.96.0.1\" is not network/IP (use \"/10.96.0.1\""},
      {service("  vips: [\"/10.96.0.300\"]\n"), "services[0].vips[0]: \"10.96.0.300\" is not an IP"},
      {service("  ports: {http: 8080}\n"), "services[0].ports[\"http\"]: \"http\" is not a port number"},
      {service("  ports: [80]\n"), "services[0].ports: must be a map"},
      {"services:\n- name: s\n  namespace: ns\n", "services[0]: missing required key \"hostname\""},
      {service("  loadBalancer: {mode: Random}\n"), "services[0].loadBalancer.mode: \"Random\""},
      {service("  ipFamilies: IPv5\n"), "services[0].ipFamilies: \"IPv5\""},
      {service("  endpoints: {u1: {port: {80: 8080}}}\n"),
       "services[0].endpoints[\"u1\"]: missing required key \"workloadUid\""},
      {service("  subjectAltName: []\n"), "services[0].subjectAltName: unknown key"},
      // Policies.
      {"policies:\n- name: p\n  namespace: ns\n  scope: Global\n  action: Allow\n  rules: []\n",
       "policies[0]: missing required key \"dryRun\""},
      {policy("[]", "  bogus: 1\n"), "policies[0].bogus: unknown key"},
      {"policies:\n- name: p\n  namespace: ns\n  scope: Cluster\n  action: Allow\n  dryRun: false\n  rules: []",
       "policies[0].scope: \"Cluster\" is not one of Global, Namespace, WorkloadSelector"},
      {"policies:\n- name: p\n  namespace: ns\n  scope: Global\n  action: Audit\n  dryRun: false\n  rules: []",
       "policies[0].action: \"Audit\" is not one of Allow, Deny"},
      {policy("[[[{notAPort: [1]}]]]"), "policies[0].rules[0][0][0].notAPort: unknown key"},
      {policy("[[[{destinationPorts: [70000]}]]]"),
       "policies[0].rules[0][0][0].destinationPorts[0]: 70000 is out of range"},
      {policy("[[[{sourceIps: [10.0.0.0/40]}]]]"),
       "policies[0].rules[0][0][0].sourceIps[0]: \"10.0.0.0/40\" is not a CIDR"},
      {policy("[[[{principals: [{Regex: x}]}]]]"), "policies[0].rules[0][0][0].principals[0].Regex: unknown key"},
      {policy("[[[{principals: [exact]}]]]"),
       "policies[0].rules[0][0][0].principals[0]: \"exact\" is not a string match"},
      {policy("[[[{principals: [{Presence: x}]}]]]"),
       "policies[0].rules[0][0][0].principals[0].Presence: Presence takes no value"},
      {policy("[[[{serviceAccounts: [{namespace: ns}]}]]]"),
       "policies[0].rules[0][0][0].serviceAccounts[0]: missing required key \"serviceAccount\""},
      {policy("[[{destinationPorts: [80]}]]"), "policies[0].rules[0][0]: must be a list"},
      // Consistency across objects (State::build).
      {"workloads:\n- {uid: a, name: n1, namespace: ns, workloadIps: [10.0.0.1]}\n"
       "- {uid: a, name: n2, namespace: ns, workloadIps: [10.0.0.2]}",
       "workloads[1].uid: \"a\" is already used by workloads[0]"},
      {"workloads:\n- {uid: a, name: n1, namespace: ns, workloadIps: [10.0.0.1]}\n"
       "- {uid: b, name: n2, namespace: ns, workloadIps: [10.0.0.2, \"::ffff:10.0.0.1\"]}",
       "workloads[1].workloadIps[1]: 10.0.0.1 on network \"\" is already used by workload \"a\""},
      {"services:\n- {name: s, namespace: ns, hostname: a.b}\n- {name: t, namespace: ns, hostname: a.b}",
       "services[1]: service ns/a.b is defined twice"},
      {policy("[]") + "- {name: p, namespace: ns, scope: Global, action: Deny, dryRun: false, rules: []}",
       "policies[1]: policy ns/p is defined twice"},
  };
  for (const auto& c : cases) {
    auto state = parse_local_config(c.yaml);
    ASSERT_FALSE(state) << c.yaml;
    EXPECT_NE(state.error().message.find(c.message), std::string::npos)
        << "yaml:\n" << c.yaml << "\nerror:    " << state.error().message
        << "\nexpected: " << c.message;
  }
}

TEST(LocalConfig, SameIpOnDifferentNetworksIsFine) {
  auto state = parse_local_config(
      "workloads:\n- {uid: a, name: n1, namespace: ns, network: n1, workloadIps: [10.0.0.1]}\n"
      "- {uid: b, name: n2, namespace: ns, network: n2, workloadIps: [10.0.0.1]}");
  ASSERT_TRUE(state) << state.error().message;
  EXPECT_EQ((*state)->find_workload("n2", asio::ip::make_address("10.0.0.1"))->uid, "b");
}

TEST(LocalConfig, AliasAmplificationIsBounded) {
  // Each level repeats the previous one 20 times through aliases: a few hundred bytes that
  // would name 20^5 matches. The parser stops at its node budget instead of grinding through.
  auto repeat = [](std::string_view item) {
    std::string out;
    for (int i = 0; i < 19; ++i) out += fmt::format(", {}", item);
    return out;
  };
  std::string match = "&m {destinationPorts: [1" + repeat("1") + "]}";
  std::string clause = "&c [" + match + repeat("*m") + "]";
  std::string rule = "&r [" + clause + repeat("*c") + "]";
  std::string rules = "[" + rule + repeat("*r") + "]";
  std::string yaml = "policies: [&p {name: p, namespace: ns, scope: Global, action: Allow, "
                     "dryRun: false, rules: " + rules + "}" + repeat("*p") + "]\n";
  auto state = parse_local_config(yaml);
  ASSERT_FALSE(state);
  EXPECT_NE(state.error().message.find("too many nodes"), std::string::npos)
      << state.error().message;
}

TEST(LocalConfig, LoadFileNamesThePath) {
  auto missing = load_local_config_file("/nonexistent/dir/config.yaml");
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message.find("/nonexistent/dir/config.yaml: cannot open"),
            std::string::npos);
}

}  // namespace
}  // namespace zt::state
