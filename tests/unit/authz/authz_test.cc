// L4 authorization semantics (DESIGN §7, facts §5), table by table: every match field and its
// not_ form, the structural rules, scope selection, and the decisions the issue lists.
#include "ztunnel/authz/authz.h"

#include <gtest/gtest.h>

#include "ztunnel/state/local_config.h"

namespace zt::authz {
namespace {

using state::Authorization;
using state::Match;
using state::PolicyAction;
using state::PolicyScope;
using state::ServiceAccountMatch;
using state::StringMatch;

asio::ip::address ip(const char* s) { return asio::ip::make_address(s); }
net::Cidr cidr(const char* s) { return *net::Cidr::parse(s); }
StringMatch exact(std::string v) { return {StringMatch::Kind::kExact, std::move(v)}; }
StringMatch prefix(std::string v) { return {StringMatch::Kind::kPrefix, std::move(v)}; }
StringMatch suffix(std::string v) { return {StringMatch::Kind::kSuffix, std::move(v)}; }
StringMatch presence() { return {StringMatch::Kind::kPresence, {}}; }

// An mTLS connection from `src` with identity td/ns/sa to 10.0.0.2:8080.
ConnectionInfo hbone(const char* ns = "default", const char* sa = "client",
                     const char* td = "cluster.local", const char* src = "10.0.0.1",
                     uint16_t port = 8080) {
  return ConnectionInfo{.source_ip = ip(src),
                        .identity = PeerIdentity(td, ns, sa),
                        .destination_ip = ip("10.0.0.2"),
                        .destination_port = port};
}
ConnectionInfo plaintext(const char* src = "10.0.0.1", uint16_t port = 8080) {
  return ConnectionInfo{.source_ip = ip(src),
                        .identity = std::nullopt,
                        .destination_ip = ip("10.0.0.2"),
                        .destination_port = port};
}
ConnectionInfo to(const char* dst, const char* src = "10.0.0.1") {
  auto c = hbone();
  c.destination_ip = ip(dst);
  c.source_ip = ip(src);
  return c;
}

TEST(PeerIdentity, SplitsThePrincipalIntoItsParts) {
  PeerIdentity id("cluster.local", "ns-a", "sa-b");
  EXPECT_EQ(id.principal(), "cluster.local/ns/ns-a/sa/sa-b");
  EXPECT_EQ(id.trust_domain(), "cluster.local");
  EXPECT_EQ(id.namespace_name(), "ns-a");
  EXPECT_EQ(id.service_account(), "sa-b");
  PeerIdentity copy = id;  // views follow the copy, not the original
  id = PeerIdentity("x", "y", "z");
  EXPECT_EQ(copy.namespace_name(), "ns-a");
  EXPECT_EQ(copy.service_account(), "sa-b");
}

struct MatchCase {
  std::string name;
  Match match;
  ConnectionInfo conn;
  bool want;
};

void run_table(const std::vector<MatchCase>& cases) {
  for (const auto& c : cases) {
    EXPECT_EQ(match_matches(c.match, c.conn), c.want) << c.name;
  }
}

TEST(MatchField, Namespaces) {
  run_table({
      {"exact same", {.namespaces = {exact("default")}}, hbone(), true},
      {"exact other", {.namespaces = {exact("prod")}}, hbone(), false},
      {"any of the list", {.namespaces = {exact("prod"), exact("default")}}, hbone(), true},
      {"prefix", {.namespaces = {prefix("def")}}, hbone(), true},
      {"suffix", {.namespaces = {suffix("ault")}}, hbone(), true},
      {"suffix miss", {.namespaces = {suffix("prod")}}, hbone(), false},
      {"presence", {.namespaces = {presence()}}, hbone(), true},
      {"plaintext exact", {.namespaces = {exact("default")}}, plaintext(), false},
      {"plaintext presence", {.namespaces = {presence()}}, plaintext(), false},
      // Istio compares against the empty namespace when there is no identity.
      {"plaintext empty prefix", {.namespaces = {prefix("")}}, plaintext(), true},
  });
}

TEST(MatchField, NotNamespaces) {
  run_table({
      {"not same", {.not_namespaces = {exact("default")}}, hbone(), false},
      {"not other", {.not_namespaces = {exact("prod")}}, hbone(), true},
      {"none of the list", {.not_namespaces = {exact("prod"), prefix("de")}}, hbone(), false},
      {"not presence", {.not_namespaces = {presence()}}, hbone(), false},
      {"plaintext not exact", {.not_namespaces = {exact("default")}}, plaintext(), true},
      {"plaintext not presence", {.not_namespaces = {presence()}}, plaintext(), true},
  });
}

TEST(MatchField, Principals) {
  run_table({
      {"exact without spiffe://",
       {.principals = {exact("cluster.local/ns/default/sa/client")}},
       hbone(),
       true},
      {"exact with spiffe:// never matches",
       {.principals = {exact("spiffe://cluster.local/ns/default/sa/client")}},
       hbone(),
       false},
      {"exact other sa",
       {.principals = {exact("cluster.local/ns/default/sa/other")}},
       hbone(),
       false},
      {"prefix", {.principals = {prefix("cluster.local/ns/default/")}}, hbone(), true},
      {"suffix", {.principals = {suffix("/sa/client")}}, hbone(), true},
      {"trust domain counts",
       {.principals = {prefix("cluster.local/")}},
       hbone("default", "client", "other.domain"),
       false},
      {"presence", {.principals = {presence()}}, hbone(), true},
      {"plaintext exact",
       {.principals = {exact("cluster.local/ns/default/sa/client")}},
       plaintext(),
       false},
      {"plaintext presence", {.principals = {presence()}}, plaintext(), false},
      {"plaintext empty prefix", {.principals = {prefix("")}}, plaintext(), false},
  });
}

TEST(MatchField, NotPrincipals) {
  run_table({
      {"not same",
       {.not_principals = {exact("cluster.local/ns/default/sa/client")}},
       hbone(),
       false},
      {"not other",
       {.not_principals = {exact("cluster.local/ns/default/sa/other")}},
       hbone(),
       true},
      {"not presence with identity", {.not_principals = {presence()}}, hbone(), false},
      // STRICT mTLS as istiod writes it: plaintext has no principal, so it passes.
      {"not presence plaintext", {.not_principals = {presence()}}, plaintext(), true},
      {"not empty prefix plaintext", {.not_principals = {prefix("")}}, plaintext(), true},
  });
}

TEST(MatchField, ServiceAccounts) {
  run_table({
      {"same", {.service_accounts = {{"default", "client"}}}, hbone(), true},
      {"trust domain ignored",
       {.service_accounts = {{"default", "client"}}},
       hbone("default", "client", "other.domain"),
       true},
      {"other sa", {.service_accounts = {{"default", "server"}}}, hbone(), false},
      {"other namespace", {.service_accounts = {{"prod", "client"}}}, hbone(), false},
      {"any of the list",
       {.service_accounts = {{"prod", "x"}, {"default", "client"}}},
       hbone(),
       true},
      {"plaintext", {.service_accounts = {{"default", "client"}}}, plaintext(), false},
  });
}

TEST(MatchField, NotServiceAccounts) {
  run_table({
      {"not same", {.not_service_accounts = {{"default", "client"}}}, hbone(), false},
      {"not other", {.not_service_accounts = {{"default", "server"}}}, hbone(), true},
      {"plaintext", {.not_service_accounts = {{"default", "client"}}}, plaintext(), true},
  });
}

TEST(MatchField, SourceIps) {
  run_table({
      {"in cidr", {.source_ips = {cidr("10.0.0.0/24")}}, hbone(), true},
      {"host", {.source_ips = {cidr("10.0.0.1/32")}}, hbone(), true},
      {"outside", {.source_ips = {cidr("10.0.1.0/24")}}, hbone(), false},
      {"v4-mapped source",
       {.source_ips = {cidr("10.0.0.0/24")}},
       to("10.0.0.2", "::ffff:10.0.0.7"),
       true},
      {"v6", {.source_ips = {cidr("fd00::/64")}}, to("10.0.0.2", "fd00::5"), true},
      {"v6 cidr, v4 source", {.source_ips = {cidr("fd00::/64")}}, hbone(), false},
      {"any of the list",
       {.source_ips = {cidr("192.168.0.0/16"), cidr("10.0.0.0/8")}},
       hbone(),
       true},
      {"plaintext too", {.source_ips = {cidr("10.0.0.0/24")}}, plaintext(), true},
  });
}

TEST(MatchField, NotSourceIps) {
  run_table({
      {"not in cidr", {.not_source_ips = {cidr("10.0.0.0/24")}}, hbone(), false},
      {"not outside", {.not_source_ips = {cidr("10.0.1.0/24")}}, hbone(), true},
      {"v4-mapped",
       {.not_source_ips = {cidr("10.0.0.0/24")}},
       to("10.0.0.2", "::ffff:10.0.0.7"),
       false},
  });
}

TEST(MatchField, DestinationIps) {
  run_table({
      {"host", {.destination_ips = {cidr("10.0.0.2/32")}}, hbone(), true},
      {"other host", {.destination_ips = {cidr("10.0.0.3/32")}}, hbone(), false},
      {"v4-mapped destination",
       {.destination_ips = {cidr("10.0.0.0/24")}},
       to("::ffff:10.0.0.2"),
       true},
      {"v6", {.destination_ips = {cidr("fd00::2/128")}}, to("fd00::2"), true},
  });
}

TEST(MatchField, NotDestinationIps) {
  run_table({
      {"not host", {.not_destination_ips = {cidr("10.0.0.2/32")}}, hbone(), false},
      {"not other", {.not_destination_ips = {cidr("10.0.0.3/32")}}, hbone(), true},
  });
}

TEST(MatchField, DestinationPorts) {
  run_table({
      {"same", {.destination_ports = {8080}}, hbone(), true},
      {"other", {.destination_ports = {9090}}, hbone(), false},
      {"any of the list", {.destination_ports = {9090, 8080}}, hbone(), true},
      {"plaintext too", {.destination_ports = {8080}}, plaintext(), true},
  });
}

TEST(MatchField, NotDestinationPorts) {
  run_table({
      {"not same", {.not_destination_ports = {8080}}, hbone(), false},
      {"not other", {.not_destination_ports = {9090}}, hbone(), true},
      {"none of the list", {.not_destination_ports = {9090, 8080}}, hbone(), false},
  });
}

TEST(MatchField, AllFieldsOfAMatchMustPass) {
  run_table({
      {"both pass", {.namespaces = {exact("default")}, .destination_ports = {8080}}, hbone(), true},
      {"one fails",
       {.namespaces = {exact("default")}, .destination_ports = {9090}},
       hbone(),
       false},
      {"positive and not_ of one field",
       {.destination_ports = {8080, 9090}, .not_destination_ports = {9090}},
       hbone(),
       true},
      {"not_ excludes what positive allows",
       {.destination_ports = {8080}, .not_destination_ports = {8080}},
       hbone(),
       false},
      {"plaintext: identity field fails the match",
       {.principals = {presence()}, .source_ips = {cidr("10.0.0.0/8")}},
       plaintext(),
       false},
  });
}

// Structural rules (policy_matches): rules OR, clauses AND, matches OR, no rules / empty match.
Authorization policy(std::vector<state::Rule> rules) {
  return Authorization{.name = "p", .namespace_name = "default", .rules = std::move(rules)};
}

TEST(Structure, Rules) {
  const Match default_ns{.namespaces = {exact("default")}};
  const Match port_9090{.destination_ports = {9090}};
  const Match prod_ns{.namespaces = {exact("prod")}};
  struct Case {
    std::string name;
    Authorization policy;
    ConnectionInfo conn;
    bool want;
  };
  std::vector<Case> cases = {
      {"no rules never matches", policy({}), hbone(), false},
      {"an all-empty match never matches", policy({{{Match{}}}}), hbone(), false},
      {"an all-empty match is skipped, the next one counts", policy({{{Match{}, default_ns}}}),
       hbone(), true},
      {"a clause with no matches is true", policy({{{}}}), hbone(), true},
      {"a rule with no clauses matches", policy({{}}), hbone(), true},
      {"clauses AND: one fails", policy({{{default_ns}, {port_9090}}}), hbone(), false},
      {"clauses AND: both pass", policy({{{default_ns}, {port_9090}}}),
       hbone("default", "client", "cluster.local", "10.0.0.1", 9090), true},
      {"matches OR within a clause", policy({{{prod_ns, port_9090, default_ns}}}), hbone(), true},
      {"matches OR: none", policy({{{prod_ns, port_9090}}}), hbone(), false},
      {"rules OR: second matches", policy({{{prod_ns}}, {{default_ns}}}), hbone(), true},
      {"rules OR: none", policy({{{prod_ns}}, {{port_9090}}}), hbone(), false},
      {"clause with only an empty match fails the rule", policy({{{default_ns}, {Match{}}}}),
       hbone(), false},
  };
  for (const auto& c : cases) EXPECT_EQ(policy_matches(c.policy, c.conn), c.want) << c.name;
}

// Decisions need a snapshot: a destination workload "server" in namespace default.
state::Workload server(std::vector<std::string> selected = {}, std::string ns = "default") {
  return state::Workload{.uid = "c1//Pod/" + ns + "/server",
                         .name = "server",
                         .namespace_name = ns,
                         .service_account = "server",
                         .workload_ips = {ip("10.0.0.2")},
                         .protocol = state::TunnelProtocol::kHbone,
                         .authorization_policies = std::move(selected)};
}

Authorization make(std::string ns, std::string name, PolicyScope scope, PolicyAction action,
                   Match m, bool dry_run = false) {
  return Authorization{.name = std::move(name),
                       .namespace_name = std::move(ns),
                       .scope = scope,
                       .action = action,
                       .rules = {{{std::move(m)}}},
                       .dry_run = dry_run};
}

// Matches every connection to port 8080.
const Match kAnyTo8080{.destination_ports = {8080}};

struct Snapshot {
  std::shared_ptr<const state::State> state;
  std::shared_ptr<const state::Workload> dst;
};
Snapshot snapshot(std::vector<Authorization> policies, state::Workload dst = server()) {
  auto uid = dst.uid;
  std::vector<state::Workload> workloads;
  workloads.push_back(std::move(dst));
  auto s = state::State::build(std::move(workloads), {}, std::move(policies));
  EXPECT_TRUE(s) << s.error().describe();
  return {*s, (*s)->find_workload_by_uid(uid)};
}

Decision decide(const Snapshot& s, const ConnectionInfo& c) {
  return evaluate(c, *s.state, *s.dst);
}

TEST(Scope, WhichPoliciesApplyToTheDestination) {
  using enum PolicyScope;
  struct Case {
    std::string name;
    Authorization deny;
    std::vector<std::string> selected;
    bool applies;
  };
  std::vector<Case> cases = {
      {"global, from any namespace",
       make("istio-system", "d", kGlobal, PolicyAction::kDeny, kAnyTo8080),
       {},
       true},
      {"namespace, same",
       make("default", "d", kNamespace, PolicyAction::kDeny, kAnyTo8080),
       {},
       true},
      {"namespace, other",
       make("prod", "d", kNamespace, PolicyAction::kDeny, kAnyTo8080),
       {},
       false},
      {"selector, named by the workload",
       make("default", "d", kWorkloadSelector, PolicyAction::kDeny, kAnyTo8080),
       {"default/d"},
       true},
      {"selector, not named",
       make("default", "d", kWorkloadSelector, PolicyAction::kDeny, kAnyTo8080),
       {},
       false},
      {"selector, named from another namespace",
       make("prod", "d", kWorkloadSelector, PolicyAction::kDeny, kAnyTo8080),
       {"prod/d"},
       true},
      {"selector, unknown key skipped",
       make("default", "d", kWorkloadSelector, PolicyAction::kDeny, kAnyTo8080),
       {"default/gone"},
       false},
  };
  for (auto& c : cases) {
    auto s = snapshot({c.deny}, server(c.selected));
    auto d = decide(s, hbone());
    EXPECT_EQ(d.denied(), c.applies) << c.name << ": " << d.reason();
  }
}

TEST(Decision, NoPoliciesAllows) {
  auto s = snapshot({});
  for (const auto& c : {hbone(), plaintext()}) {
    auto d = decide(s, c);
    EXPECT_TRUE(d.allowed());
    EXPECT_EQ(d.outcome, Decision::Outcome::kNoAllowPolicies);
    EXPECT_EQ(d.policy, nullptr);
    EXPECT_EQ(d.policy_key(), "");
    EXPECT_TRUE(d.dry_run.empty());
  }
}

TEST(Decision, AllowForOneServiceAccountInANamespace) {
  auto s = snapshot({make("default", "allow-client", PolicyScope::kNamespace, PolicyAction::kAllow,
                          Match{.service_accounts = {{"default", "client"}}})});
  auto ok = decide(s, hbone("default", "client"));
  EXPECT_TRUE(ok.allowed());
  EXPECT_EQ(ok.outcome, Decision::Outcome::kAllowedByPolicy);
  EXPECT_EQ(ok.policy_key(), "default/allow-client");
  EXPECT_EQ(ok.reason(), "allowed by: default/allow-client");

  for (const auto& c : {hbone("default", "other"), hbone("prod", "client"), plaintext()}) {
    auto d = decide(s, c);
    EXPECT_TRUE(d.denied());
    EXPECT_EQ(d.outcome, Decision::Outcome::kNoAllowPolicyMatched);
    EXPECT_EQ(d.reason(), "allow policies exist but none matched");
    EXPECT_EQ(d.policy, nullptr);
  }
}

TEST(Decision, DenyWinsOverAllow) {
  auto s = snapshot({
      make("default", "allow-all", PolicyScope::kNamespace, PolicyAction::kAllow, kAnyTo8080),
      make("istio-system", "deny-client", PolicyScope::kGlobal, PolicyAction::kDeny,
           Match{.principals = {exact("cluster.local/ns/default/sa/client")}}),
  });
  auto d = decide(s, hbone("default", "client"));
  EXPECT_TRUE(d.denied());
  EXPECT_EQ(d.outcome, Decision::Outcome::kExplicitlyDenied);
  EXPECT_EQ(d.policy_key(), "istio-system/deny-client");
  EXPECT_EQ(d.reason(), "explicitly denied by: istio-system/deny-client");
  // The DENY does not match another identity: the ALLOW decides.
  auto other = decide(s, hbone("default", "other"));
  EXPECT_TRUE(other.allowed());
  EXPECT_EQ(other.policy_key(), "default/allow-all");
}

TEST(Decision, DryRunChangesNothingButTheNotes) {
  const std::vector<Authorization> enforced = {
      make("default", "allow-client", PolicyScope::kNamespace, PolicyAction::kAllow,
           Match{.service_accounts = {{"default", "client"}}}),
  };
  auto with_dry_run = enforced;
  with_dry_run.push_back(make("default", "dry-deny", PolicyScope::kNamespace, PolicyAction::kDeny,
                              kAnyTo8080, /*dry_run=*/true));
  with_dry_run.push_back(make("default", "dry-allow", PolicyScope::kNamespace, PolicyAction::kAllow,
                              Match{.source_ips = {cidr("10.0.0.0/24")}}, /*dry_run=*/true));
  auto plain = snapshot(enforced);
  auto dry = snapshot(with_dry_run);
  for (const auto& c : {hbone("default", "client"), hbone("default", "other"), plaintext(),
                        plaintext("10.9.0.1")}) {
    auto a = decide(plain, c);
    auto b = decide(dry, c);
    EXPECT_EQ(a.outcome, b.outcome);
    EXPECT_EQ(a.policy_key(), b.policy_key());
    EXPECT_TRUE(a.dry_run.empty());
  }
  auto d = decide(dry, hbone("default", "client"));
  ASSERT_EQ(d.dry_run.size(), 2u);
  EXPECT_EQ(d.dry_run[0].kind, DryRunNote::Kind::kDenyMatched);
  EXPECT_EQ(d.dry_run[0].policy->key(), "default/dry-deny");
  EXPECT_EQ(d.dry_run[0].message(), "dry-run: deny policy match");
  EXPECT_EQ(d.dry_run[1].kind, DryRunNote::Kind::kAllowMatched);
  EXPECT_EQ(d.dry_run[1].policy->key(), "default/dry-allow");

  // Only dry-run ALLOWs, none matching: allowed, with the note that enforcing them would deny.
  auto only_dry = snapshot({make("default", "dry-allow", PolicyScope::kNamespace,
                                 PolicyAction::kAllow, Match{.destination_ports = {1}}, true)});
  auto n = decide(only_dry, hbone());
  EXPECT_TRUE(n.allowed());
  EXPECT_EQ(n.outcome, Decision::Outcome::kNoAllowPolicies);
  ASSERT_EQ(n.dry_run.size(), 1u);
  EXPECT_EQ(n.dry_run[0].kind, DryRunNote::Kind::kNoAllowMatched);
  EXPECT_EQ(n.dry_run[0].message(), "dry-run: no allow policies match");
  EXPECT_EQ(n.dry_run[0].policy, nullptr);

  // A real DENY: allow dry-runs are not evaluated (as in Istio), deny dry-runs are.
  auto denied = with_dry_run;
  denied.push_back(
      make("default", "deny-all", PolicyScope::kNamespace, PolicyAction::kDeny, kAnyTo8080));
  auto x = decide(snapshot(denied), hbone("default", "client"));
  EXPECT_TRUE(x.denied());
  EXPECT_EQ(x.policy_key(), "default/deny-all");
  ASSERT_EQ(x.dry_run.size(), 1u);
  EXPECT_EQ(x.dry_run[0].kind, DryRunNote::Kind::kDenyMatched);
}

// PeerAuthentication STRICT as istiod pushes it (facts §5.3), read through the local config
// parser: a WORKLOAD_SELECTOR DENY of anything without a principal, except port 9090.
TEST(Decision, StrictStyleDenyRejectsPlaintextAndPassesHbone) {
  auto s = state::parse_local_config(R"(
workloads:
- uid: c1//Pod/default/server
  name: server
  namespace: default
  serviceAccount: server
  workloadIps: ["10.0.0.2"]
  protocol: HBONE
  authorizationPolicies: ["default/istio_converted_peerauth_strict"]
policies:
- name: istio_converted_peerauth_strict
  namespace: default
  scope: WorkloadSelector
  action: Deny
  dryRun: false
  rules:
  - - - notPrincipals: [Presence]
    - - notDestinationPorts: [9090]
)");
  ASSERT_TRUE(s) << s.error().describe();
  auto dst = (*s)->find_workload_by_uid("c1//Pod/default/server");
  ASSERT_NE(dst, nullptr);
  auto tls = evaluate(hbone(), **s, *dst);
  EXPECT_TRUE(tls.allowed()) << tls.reason();
  auto plain = evaluate(plaintext(), **s, *dst);
  EXPECT_TRUE(plain.denied());
  EXPECT_EQ(plain.reason(), "explicitly denied by: default/istio_converted_peerauth_strict");
  // The PERMISSIVE port exception.
  auto excepted = evaluate(plaintext("10.0.0.1", 9090), **s, *dst);
  EXPECT_TRUE(excepted.allowed()) << excepted.reason();
}

TEST(Decision, ReEvaluationSeesTheNewSnapshot) {
  auto before = snapshot({});
  auto after =
      snapshot({make("default", "deny-client", PolicyScope::kNamespace, PolicyAction::kDeny,
                     Match{.service_accounts = {{"default", "client"}}})});
  auto c = hbone();
  EXPECT_TRUE(decide(before, c).allowed());
  EXPECT_TRUE(decide(after, c).denied());
}

}  // namespace
}  // namespace zt::authz
