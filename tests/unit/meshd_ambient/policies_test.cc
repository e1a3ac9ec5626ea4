#include <google/protobuf/text_format.h>
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include "tests/unit/meshd_ambient/objects.h"

namespace zt::meshd::ambient {
namespace {

using namespace test;
namespace sec = istio::security;

const Options kOptions{};

manifest::AuthorizationPolicy policy_from(const std::string& spec, const std::string& ns = "shop") {
  auto set = objects_from(
      "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
      "metadata: {name: ap, namespace: " +
      ns + "}\nspec:\n" + spec);
  if (set.authorization_policies.size() != 1) {
    ADD_FAILURE() << "expected one AuthorizationPolicy";
    return {};
  }
  return set.authorization_policies.begin()->second;
}

sec::Authorization expected(const std::string& text) {
  sec::Authorization out;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &out)) << text;
  return out;
}

void expect_proto_eq(const sec::Authorization& got, const sec::Authorization& want) {
  std::string diff;
  google::protobuf::util::MessageDifferencer d;
  d.ReportDifferencesToString(&diff);
  EXPECT_TRUE(d.Compare(want, got)) << diff << "\ngot:\n" << got.DebugString();
}

// --- scope and action ---

struct ScopeCase {
  const char* name;
  const char* ns;
  const char* spec;
  sec::Scope scope;
  sec::Action action;
};

class PolicyScope : public ::testing::TestWithParam<ScopeCase> {};

TEST_P(PolicyScope, FollowsSelectorAndNamespace) {
  const auto& c = GetParam();
  auto converted = convert_authorization_policy(policy_from(c.spec, c.ns), kOptions);
  ASSERT_TRUE(converted);
  EXPECT_EQ(converted->name(), "ap");
  EXPECT_EQ(converted->namespace_(), c.ns);
  EXPECT_EQ(converted->scope(), c.scope);
  EXPECT_EQ(converted->action(), c.action);
  EXPECT_FALSE(converted->dry_run());
}

// A dry-run policy reaches ztunnel marked as one (ztunnel then only logs what it would do).
TEST(PolicyDryRun, TheAnnotationSetsDryRun) {
  auto set = objects_from(
      "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
      "metadata: {name: ap, namespace: shop, annotations: {istio.io/dry-run: 'True'}}\n"
      "spec: {action: DENY, rules: [{}]}\n");
  ASSERT_EQ(set.authorization_policies.size(), 1u);
  auto converted =
      convert_authorization_policy(set.authorization_policies.begin()->second, kOptions);
  ASSERT_TRUE(converted);
  EXPECT_TRUE(converted->dry_run());
}

INSTANTIATE_TEST_SUITE_P(
    Table, PolicyScope,
    ::testing::Values(
        ScopeCase{"RootNamespaceIsGlobal", "istio-system", "  action: DENY\n", sec::GLOBAL,
                  sec::DENY},
        ScopeCase{"NoSelectorIsNamespace", "shop", "  action: ALLOW\n", sec::NAMESPACE, sec::ALLOW},
        ScopeCase{"SelectorIsWorkloadSelector", "shop", "  selector: {matchLabels: {app: web}}\n",
                  sec::WORKLOAD_SELECTOR, sec::ALLOW},
        ScopeCase{"RootWithSelectorIsWorkloadSelector", "istio-system",
                  "  selector: {matchLabels: {app: web}}\n", sec::WORKLOAD_SELECTOR, sec::ALLOW}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(PolicyConversion, AuditCustomAndTargetRefsAreNotSentToZtunnel) {
  std::vector<std::string> warnings;
  EXPECT_FALSE(convert_authorization_policy(policy_from("  action: AUDIT\n"), kOptions, &warnings));
  EXPECT_FALSE(convert_authorization_policy(
      policy_from("  action: CUSTOM\n  provider: {name: ext}\n"), kOptions, &warnings));
  EXPECT_FALSE(convert_authorization_policy(
      policy_from("  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: wp}]\n"),
      kOptions, &warnings));
  ASSERT_EQ(warnings.size(), 2u);
  EXPECT_EQ(warnings[0], "AuthorizationPolicy shop/ap: ztunnel does not support the AUDIT action");
}

// --- rules, table by table ---

struct RuleCase {
  const char* name;
  const char* spec;
  const char* want;  // text-format Authorization (name/namespace/scope/action added)
};

class RuleConversion : public ::testing::TestWithParam<RuleCase> {};

TEST_P(RuleConversion, MatchesIstiod) {
  const auto& c = GetParam();
  auto converted = convert_authorization_policy(policy_from(c.spec), kOptions);
  ASSERT_TRUE(converted);
  auto want = expected(std::string("name: 'ap' namespace: 'shop' ") + c.want);
  want.set_scope(converted->scope());
  want.set_action(converted->action());
  expect_proto_eq(*converted, want);
}

INSTANTIATE_TEST_SUITE_P(
    Table, RuleConversion,
    ::testing::Values(
        RuleCase{"NoRulesNeverMatches", "  action: ALLOW\n", ""},
        RuleCase{"EmptyRuleMatchesEverything", "  rules: [{}]\n", "rules {}"},
        RuleCase{"PrincipalsStringMatches",
                 "  rules:\n  - from:\n    - source: {principals: ['*', 'cluster.local/ns/a/*', "
                 "'*/sa/b', 'spiffe://cluster.local/ns/a/sa/c']}\n",
                 "rules { clauses { matches { principals { presence {} } "
                 "principals { prefix: 'cluster.local/ns/a/' } principals { suffix: '/sa/b' } "
                 "principals { exact: 'cluster.local/ns/a/sa/c' } } } }"},
        RuleCase{
            "SourcesAreOredWithinOneClause",
            "  rules:\n  - from:\n    - source: {namespaces: [a], notPrincipals: [x]}\n"
            "    - source: {ipBlocks: [10.0.0.0/8, 1.2.3.4], notIpBlocks: ['fd00::/64'], "
            "notNamespaces: [b]}\n",
            "rules { clauses { matches { namespaces { exact: 'a' } not_principals { exact: 'x' } } "
            "matches { source_ips { address: '\\x0a\\x00\\x00\\x00' length: 8 } "
            "source_ips { address: '\\x01\\x02\\x03\\x04' length: 32 } "
            "not_source_ips { address: "
            "'\\xfd\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00' "
            "length: 64 } "
            "not_namespaces { exact: 'b' } } } }"},
        RuleCase{"ServiceAccountsDefaultToThePolicyNamespace",
                 "  rules:\n  - from:\n    - source: {serviceAccounts: [web, other/db], "
                 "notServiceAccounts: [x]}\n",
                 "rules { clauses { matches { service_accounts { namespace: 'shop' serviceAccount: "
                 "'web' } "
                 "service_accounts { namespace: 'other' serviceAccount: 'db' } "
                 "not_service_accounts { namespace: 'shop' serviceAccount: 'x' } } } }"},
        RuleCase{"ToThenFromAreAndedClauses",
                 "  rules:\n  - to:\n    - operation: {ports: ['80'], notPorts: ['81']}\n"
                 "    - operation: {ports: ['443']}\n    from:\n    - source: {namespaces: [a]}\n",
                 "rules { clauses { matches { destination_ports: 80 not_destination_ports: 81 } "
                 "matches { destination_ports: 443 } } "
                 "clauses { matches { namespaces { exact: 'a' } } } }"},
        RuleCase{
            "WhenConditionsEachAClause",
            "  rules:\n  - when:\n    - {key: source.ip, values: [10.1.0.0/16], notValues: "
            "[10.1.1.1]}\n"
            "    - {key: source.namespace, values: [a*]}\n"
            "    - {key: source.principal, notValues: ['*admin']}\n"
            "    - {key: destination.ip, values: [10.2.0.1]}\n"
            "    - {key: destination.port, values: ['8080'], notValues: ['9090']}\n",
            "rules { clauses { matches { source_ips { address: '\\x0a\\x01\\x00\\x00' length: 16 } "
            "not_source_ips { address: '\\x0a\\x01\\x01\\x01' length: 32 } } } "
            "clauses { matches { namespaces { prefix: 'a' } } } "
            "clauses { matches { not_principals { suffix: 'admin' } } } "
            "clauses { matches { destination_ips { address: '\\x0a\\x02\\x00\\x01' length: 32 } } "
            "} "
            "clauses { matches { destination_ports: 8080 not_destination_ports: 9090 } } }"},
        RuleCase{"AllowRuleWithHttpFieldsIsDropped",
                 "  rules:\n  - to:\n    - operation: {methods: [GET], ports: ['80']}\n"
                 "  - from:\n    - source: {namespaces: [a]}\n",
                 "rules { clauses { matches { namespaces { exact: 'a' } } } }"},
        RuleCase{"AllowRuleWithHttpConditionIsDropped",
                 "  rules:\n  - when:\n    - {key: 'request.headers[x]', values: [y]}\n", ""},
        RuleCase{"AllowRuleWithRequestPrincipalsIsDropped",
                 "  rules:\n  - from:\n    - source: {requestPrincipals: ['*']}\n", ""},
        RuleCase{
            "DenyRuleKeepsItsL4PartsWithoutHttpFields",
            "  action: DENY\n  rules:\n  - to:\n    - operation: {methods: [POST], ports: ['80']}\n"
            "    from:\n    - source: {remoteIpBlocks: [1.1.1.1], namespaces: [evil]}\n",
            "rules { clauses { matches { destination_ports: 80 } } "
            "clauses { matches { namespaces { exact: 'evil' } } } }"},
        RuleCase{"DenyWithOnlyHttpFieldsKeepsAnEmptyMatch",
                 "  action: DENY\n  rules:\n  - to:\n    - operation: {paths: [/admin]}\n",
                 "rules { clauses { matches {} } }"}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(PolicyConversion, HttpFieldsAreReportedAsWarnings) {
  std::vector<std::string> warnings;
  convert_authorization_policy(
      policy_from("  rules:\n  - to:\n    - operation: {methods: [GET], paths: [/x]}\n"), kOptions,
      &warnings);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_EQ(
      warnings[0],
      "AuthorizationPolicy shop/ap: ztunnel does not enforce HTTP attributes (found: methods, "
      "paths); rules with them are left out of the ALLOW policy");
}

// --- binding to workloads, and the snapshot ---

TEST(PolicyBinding, WorkloadSelectorPoliciesAreListedOnTheWorkloadsTheySelect) {
  auto s =
      compute(objects_from(ns_yaml("shop") + pod_yaml("shop", "web", "10.0.0.1", "{app: web}") +
                           pod_yaml("shop", "db", "10.0.0.2", "{app: db}") +
                           pod_yaml("other", "web", "10.0.0.3", "{app: web}") + R"(---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: web-only, namespace: shop}
spec: {selector: {matchLabels: {app: web}}, action: ALLOW}
---
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {name: a-first, namespace: shop}
spec: {selector: {matchLabels: {app: web}}, action: DENY, rules: [{}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: mesh-web, namespace: istio-system}
spec: {selector: {matchLabels: {app: web}}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ns-wide, namespace: shop}
spec: {}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: audit, namespace: shop}
spec: {selector: {matchLabels: {app: web}}, action: AUDIT}
)"),
              kOptions);
  const auto& web = workload(s, "shop", "web");
  EXPECT_EQ(std::vector<std::string>(web.authorization_policies().begin(),
                                     web.authorization_policies().end()),
            (std::vector<std::string>{"istio-system/mesh-web", "shop/a-first", "shop/web-only"}));
  EXPECT_TRUE(workload(s, "shop", "db").authorization_policies().empty());
  const auto& other = workload(s, "other", "web");
  EXPECT_EQ(std::vector<std::string>(other.authorization_policies().begin(),
                                     other.authorization_policies().end()),
            std::vector<std::string>{"istio-system/mesh-web"});
  EXPECT_EQ(s.authorizations.size(), 4u);  // AUDIT is not sent
  EXPECT_EQ(s.authorizations.at("shop/ns-wide").scope(), sec::NAMESPACE);
  EXPECT_FALSE(s.authorizations.count("shop/audit"));
  EXPECT_FALSE(s.authorizations.count("istio-system/istio_converted_static_strict"));
}

// --- PeerAuthentication ---

std::string pa(const std::string& ns, const std::string& name, const std::string& spec) {
  return "---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: " +
         name + ", namespace: " + ns + "}\nspec: " + spec + "\n";
}

std::vector<std::string> policies_of(const MeshSnapshot& s, const std::string& ns,
                                     const std::string& name) {
  const auto& w = workload(s, ns, name);
  return {w.authorization_policies().begin(), w.authorization_policies().end()};
}

const std::string kStrictKey = "istio-system/istio_converted_static_strict";

TEST(PeerAuthn, MeshWideStrictIsTheStaticDenyWithoutIdentity) {
  auto s = compute(objects_from(pod_yaml("shop", "web", "10.0.0.1") +
                                pa("istio-system", "default", "{mtls: {mode: STRICT}}")),
                   kOptions);
  ASSERT_TRUE(s.authorizations.count(kStrictKey));
  expect_proto_eq(s.authorizations.at(kStrictKey),
                  expected("name: 'istio_converted_static_strict' namespace: 'istio-system' "
                           "scope: WORKLOAD_SELECTOR action: DENY "
                           "rules { clauses { matches { not_principals { presence {} } } } }"));
  EXPECT_EQ(policies_of(s, "shop", "web"), std::vector<std::string>{kStrictKey});
}

TEST(PeerAuthn, EffectiveModeFollowsMeshNamespaceWorkloadOrder) {
  auto s = compute(
      objects_from(pod_yaml("a", "p", "10.0.0.1") +              // mesh STRICT
                   pod_yaml("b", "p", "10.0.0.2") +              // ns PERMISSIVE
                   pod_yaml("b", "q", "10.0.0.3", "{app: q}") +  // + workload STRICT
                   pod_yaml("c", "p", "10.0.0.4") +              // ns UNSET inherits
                   pod_yaml("c", "r", "10.0.0.5", "{app: r}") +  // workload DISABLE
                   pa("istio-system", "mesh", "{mtls: {mode: STRICT}}") +
                   pa("b", "ns", "{mtls: {mode: PERMISSIVE}}") +
                   pa("b", "q", "{selector: {matchLabels: {app: q}}, mtls: {mode: STRICT}}") +
                   pa("c", "ns", "{mtls: {mode: UNSET}}") +
                   pa("c", "r", "{selector: {matchLabels: {app: r}}, mtls: {mode: DISABLE}}")),
      kOptions);
  EXPECT_EQ(policies_of(s, "a", "p"), std::vector<std::string>{kStrictKey});
  EXPECT_TRUE(policies_of(s, "b", "p").empty());
  EXPECT_EQ(policies_of(s, "b", "q"), std::vector<std::string>{kStrictKey});
  EXPECT_EQ(policies_of(s, "c", "p"), std::vector<std::string>{kStrictKey});
  EXPECT_TRUE(policies_of(s, "c", "r").empty());
}

TEST(PeerAuthn, NamespaceStrictWithoutMeshPolicy) {
  auto s = compute(objects_from(pod_yaml("a", "p", "10.0.0.1") + pod_yaml("b", "p", "10.0.0.2") +
                                pa("a", "strict", "{mtls: {mode: STRICT}}")),
                   kOptions);
  EXPECT_EQ(policies_of(s, "a", "p"), std::vector<std::string>{kStrictKey});
  EXPECT_TRUE(policies_of(s, "b", "p").empty());
}

TEST(PeerAuthn, PermissivePortInAStrictWorkloadBecomesAConvertedPolicy) {
  auto s =
      compute(objects_from(pod_yaml("shop", "web", "10.0.0.1", "{app: web}") +
                           pa("shop", "web",
                              "{selector: {matchLabels: {app: web}}, mtls: {mode: STRICT}, "
                              "portLevelMtls: {9090: {mode: PERMISSIVE}, 8080: {mode: DISABLE}}}")),
              kOptions);
  EXPECT_EQ(policies_of(s, "shop", "web"),
            std::vector<std::string>{"shop/converted_peer_authentication_web"});
  ASSERT_TRUE(s.authorizations.count("shop/converted_peer_authentication_web"));
  expect_proto_eq(s.authorizations.at("shop/converted_peer_authentication_web"),
                  expected("name: 'converted_peer_authentication_web' namespace: 'shop' "
                           "scope: WORKLOAD_SELECTOR action: DENY rules { "
                           "clauses { matches { not_principals { presence {} } } } "
                           "clauses { matches { not_destination_ports: 8080 } } "
                           "clauses { matches { not_destination_ports: 9090 } } }"));
}

TEST(PeerAuthn, StrictPortInAPermissiveWorkload) {
  auto s =
      compute(objects_from(pod_yaml("shop", "web", "10.0.0.1", "{app: web}") +
                           pa("shop", "web",
                              "{selector: {matchLabels: {app: web}}, mtls: {mode: PERMISSIVE}, "
                              "portLevelMtls: {8443: {mode: STRICT}}}")),
              kOptions);
  EXPECT_EQ(policies_of(s, "shop", "web"),
            std::vector<std::string>{"shop/converted_peer_authentication_web"});
  expect_proto_eq(
      s.authorizations.at("shop/converted_peer_authentication_web"),
      expected("name: 'converted_peer_authentication_web' namespace: 'shop' "
               "scope: WORKLOAD_SELECTOR action: DENY rules { "
               "clauses { matches { not_principals { presence {} } destination_ports: 8443 } } }"));
}

TEST(PeerAuthn, AllStrictPortsNeedNoConvertedPolicy) {
  auto s = compute(objects_from(pod_yaml("shop", "web", "10.0.0.1", "{app: web}") +
                                pa("shop", "web",
                                   "{selector: {matchLabels: {app: web}}, mtls: {mode: STRICT}, "
                                   "portLevelMtls: {8443: {mode: STRICT}}}")),
                   kOptions);
  EXPECT_EQ(policies_of(s, "shop", "web"), std::vector<std::string>{kStrictKey});
  EXPECT_FALSE(s.authorizations.count("shop/converted_peer_authentication_web"));
}

TEST(PeerAuthn, NoPeerAuthenticationMeansNoStaticPolicy) {
  auto s = compute(objects_from(pod_yaml("shop", "web", "10.0.0.1")), kOptions);
  EXPECT_TRUE(s.authorizations.empty());
  EXPECT_TRUE(policies_of(s, "shop", "web").empty());
}

TEST(PeerAuthn, SelectorPoliciesComeBeforePeerAuthenticationKeys) {
  auto s = compute(objects_from(pod_yaml("shop", "web", "10.0.0.1", "{app: web}") +
                                pa("istio-system", "mesh", "{mtls: {mode: STRICT}}") +
                                "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
                                "metadata: {name: zz, namespace: shop}\n"
                                "spec: {selector: {matchLabels: {app: web}}}\n"),
                   kOptions);
  EXPECT_EQ(policies_of(s, "shop", "web"), (std::vector<std::string>{"shop/zz", kStrictKey}));
}

}  // namespace
}  // namespace zt::meshd::ambient
