// compute(): the L7 configuration of each waypoint Gateway (MeshSnapshot::waypoint_configs).
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include "tests/unit/meshd_ambient/objects.h"
#include "waypoint/config/parse.h"

namespace zt::meshd::ambient {
namespace {

using namespace test;

const Options kOptions{};

std::string gateway(const std::string& ns, const std::string& name) {
  return "---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: " + name +
         ", namespace: " + ns + "}\nspec: {gatewayClassName: istio-waypoint}\n";
}

std::string svc(const std::string& ns, const std::string& name, const std::string& labels,
                const std::string& ip) {
  return "---\napiVersion: v1\nkind: Service\nmetadata: {name: " + name + ", namespace: " + ns +
         ", labels: " + labels + "}\nspec: {clusterIP: " + ip +
         ", ports: [{port: 80}], selector: {app: " + name + "}}\n";
}

std::string http_route(const std::string& ns, const std::string& name, const std::string& parent) {
  return "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: " +
         name + ", namespace: " + ns + "}\nspec:\n  parentRefs: [" + parent +
         "]\n  rules: [{backendRefs: [{name: x, port: 80}]}]\n";
}

std::string dest_rule(const std::string& ns, const std::string& name, const std::string& host) {
  return "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: " +
         name + ", namespace: " + ns + "}\nspec: {host: " + host + "}\n";
}

std::string policy(const std::string& ns, const std::string& name, const std::string& target) {
  return "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: " +
         name + ", namespace: " + ns + "}\nspec: {targetRefs: [" + target +
         "], action: ALLOW, rules: [{}]}\n";
}

std::string request_authn(const std::string& ns, const std::string& name,
                          const std::string& scope) {
  return "---\napiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: " +
         name + ", namespace: " + ns + "}\nspec:\n  " + scope +
         "\n  jwtRules: [{issuer: https://issuer.example, jwksUri: https://issuer.example/k}]\n";
}

// "Kind/name" of each document of a waypoint's YAML.
std::vector<std::string> kinds_and_names(const MeshSnapshot& s, const std::string& key) {
  auto it = s.waypoint_configs.find(key);
  if (it == s.waypoint_configs.end()) {
    ADD_FAILURE() << "no waypoint config " << key;
    return {};
  }
  std::vector<std::string> out;
  for (const auto& doc : YAML::LoadAll(it->second.yaml())) {
    out.push_back(doc["kind"].as<std::string>() + "/" +
                  doc["metadata"]["namespace"].as<std::string>() + "/" +
                  doc["metadata"]["name"].as<std::string>());
  }
  return out;
}

TEST(WaypointConfigs, ObjectsAttachedThroughServicesThatUseTheWaypoint) {
  auto objects = objects_from(
      ns_yaml("shop", "{istio.io/use-waypoint: wp}") + ns_yaml("other") + gateway("shop", "wp") +
      gateway("other", "wp2") +
      // reviews uses wp through its namespace label; ratings opts out; other/api uses wp2.
      svc("shop", "reviews", "{}", "10.96.0.1") +
      svc("shop", "ratings", "{istio.io/use-waypoint: none}", "10.96.0.2") +
      svc("other", "api", "{istio.io/use-waypoint: wp2}", "10.96.0.3") +
      http_route("shop", "r-reviews", "{kind: Service, group: '', name: reviews}") +
      http_route("shop", "r-ratings", "{kind: Service, group: '', name: ratings}") +
      http_route("other", "r-cross", "{kind: Service, name: reviews, namespace: shop}") +
      http_route("shop", "r-gateway", "{kind: Gateway, name: wp}") +
      "---\napiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {name: g-reviews, "
      "namespace: shop}\nspec:\n  parentRefs: [{kind: Service, name: reviews}]\n"
      "  rules: [{matches: [{method: {service: pkg.Reviews}}], backendRefs: [{name: x, port: "
      "80}]}]\n" +
      "---\napiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {name: g-ratings, "
      "namespace: shop}\nspec: {parentRefs: [{kind: Service, name: ratings}]}\n" +
      dest_rule("shop", "d-short", "reviews") + dest_rule("other", "d-short-other-ns", "reviews") +
      dest_rule("other", "d-fqdn", "reviews.shop.svc.cluster.local") +
      dest_rule("shop", "d-ratings", "ratings") +
      policy("shop", "p-gateway", "{kind: Gateway, group: gateway.networking.k8s.io, name: wp}") +
      policy("shop", "p-service", "{kind: Service, group: '', name: reviews}") +
      policy("shop", "p-ratings", "{kind: Service, group: '', name: ratings}") +
      policy("other", "p-wp2", "{kind: Gateway, group: gateway.networking.k8s.io, name: wp2}") +
      request_authn("shop", "a-gateway",
                    "targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: wp}]") +
      request_authn("shop", "a-service", "targetRef: {kind: Service, group: '', name: reviews}") +
      request_authn("shop", "a-ratings", "targetRefs: [{kind: Service, name: ratings}]") +
      request_authn("shop", "a-selector", "selector: {matchLabels: {app: reviews}}"));
  ASSERT_EQ(objects.request_authentications.size(), 4u);
  auto s = compute(objects, kOptions);
  ASSERT_EQ(s.waypoint_configs.size(), 2u);
  EXPECT_EQ(kinds_and_names(s, "shop/wp"),
            (std::vector<std::string>{
                "HTTPRoute/other/r-cross", "HTTPRoute/shop/r-reviews", "GRPCRoute/shop/g-reviews",
                // other/d-fqdn names reviews too, from a namespace Istio does not look in.
                "DestinationRule/shop/d-short", "AuthorizationPolicy/shop/p-gateway",
                "AuthorizationPolicy/shop/p-service", "RequestAuthentication/shop/a-gateway",
                "RequestAuthentication/shop/a-service"}));
  EXPECT_EQ(kinds_and_names(s, "other/wp2"),
            (std::vector<std::string>{"AuthorizationPolicy/other/p-wp2"}));
  // Policies with targetRefs are still not sent to ztunnel.
  EXPECT_FALSE(s.authorizations.contains("shop/p-gateway"));

  // The jwksUris meshd fetches are those of RequestAuthentications with targetRefs; a fetched
  // one reaches the waypoint as inline keys.
  EXPECT_EQ(waypoint_jwks_uris(objects), std::set<std::string>{"https://issuer.example/k"});
  Options with_keys = kOptions;
  with_keys.jwks_by_uri["https://issuer.example/k"] = R"({"keys": []})";
  auto inlined = compute(objects, with_keys);
  int authns = 0;
  for (const auto& doc : YAML::LoadAll(inlined.waypoint_configs.at("shop/wp").yaml())) {
    if (doc["kind"].as<std::string>() != "RequestAuthentication") continue;
    ++authns;
    EXPECT_FALSE(doc["spec"]["jwtRules"][0]["jwksUri"]);
    EXPECT_EQ(doc["spec"]["jwtRules"][0]["jwks"].as<std::string>(), R"({"keys": []})");
    EXPECT_EQ(doc["spec"]["jwtRules"][0]["issuer"].as<std::string>(), "https://issuer.example");
  }
  EXPECT_EQ(authns, 2);
}

std::string virtual_service(const std::string& ns, const std::string& name,
                            const std::string& spec) {
  return "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: " + name +
         ", namespace: " + ns + "}\nspec:\n" + spec +
         "  http: [{route: [{destination: {host: reviews}}]}]\n";
}

// A waypoint gets the mesh VirtualServices Istio applies there: bound to the mesh, exported to
// the waypoint's namespace, in the service's namespace or the waypoint's, naming a service that
// uses the waypoint (a short name in the VirtualService's namespace, an FQDN, a wildcard).
TEST(WaypointConfigs, VirtualServicesForTheWaypointsServices) {
  auto objects = objects_from(
      ns_yaml("shop", "{istio.io/use-waypoint: wp, istio.io/use-waypoint-namespace: infra}") +
      ns_yaml("other") + ns_yaml("infra") + gateway("infra", "wp") +
      svc("shop", "reviews", "{}", "10.96.0.1") + svc("other", "api", "{}", "10.96.0.2") +
      virtual_service("shop", "v-short", "  hosts: [reviews]\n") +
      virtual_service("shop", "v-mesh", "  hosts: [reviews]\n  gateways: [mesh, infra/ingress]\n") +
      virtual_service("shop", "v-ingress", "  hosts: [reviews]\n  gateways: [infra/ingress]\n") +
      virtual_service("shop", "v-private", "  hosts: [reviews]\n  exportTo: [\".\"]\n") +
      virtual_service("shop", "v-to-infra", "  hosts: [reviews]\n  exportTo: [infra]\n") +
      virtual_service("infra", "v-fqdn", "  hosts: [reviews.shop.svc.cluster.local]\n") +
      virtual_service("infra", "v-short-wrong-ns", "  hosts: [reviews]\n") +
      virtual_service("other", "v-third-ns", "  hosts: [reviews.shop.svc.cluster.local]\n") +
      virtual_service("shop", "v-wildcard", "  hosts: [\"*.shop.svc.cluster.local\"]\n") +
      virtual_service("other", "v-api", "  hosts: [api]\n"));
  ASSERT_EQ(objects.virtual_services.size(), 10u);
  auto s = compute(objects, kOptions);
  EXPECT_EQ(
      kinds_and_names(s, "infra/wp"),
      (std::vector<std::string>{"VirtualService/infra/v-fqdn", "VirtualService/shop/v-mesh",
                                "VirtualService/shop/v-short", "VirtualService/shop/v-to-infra",
                                "VirtualService/shop/v-wildcard"}));
}

// The waypoint YAML's document of `kind`/`name`.
YAML::Node document(const MeshSnapshot& s, const std::string& key, const std::string& kind,
                    const std::string& name) {
  for (const auto& doc : YAML::LoadAll(s.waypoint_configs.at(key).yaml())) {
    if (doc["kind"].as<std::string>() == kind &&
        doc["metadata"]["name"].as<std::string>() == name) {
      return doc;
    }
  }
  ADD_FAILURE() << "no " << kind << " " << name << " at " << key;
  return {};
}

// A waypoint shared by two namespaces: a VirtualService applies to a service of its own
// namespace (or the waypoint's), never to another namespace's, whatever its hosts say; the
// waypoint gets it with its hosts cut down to the services it applies to.
TEST(WaypointConfigs, AVirtualServiceNeverReachesAnotherNamespacesService) {
  const std::string uses = "{istio.io/use-waypoint: wp, istio.io/use-waypoint-namespace: infra}";
  auto objects = objects_from(
      ns_yaml("a", uses) + ns_yaml("b", uses) + ns_yaml("infra") + gateway("infra", "wp") +
      svc("a", "web", "{}", "10.96.0.1") + svc("b", "api", "{}", "10.96.0.2") +
      virtual_service("a", "takeover", "  hosts: [web, api.b.svc.cluster.local, \"*\"]\n"));
  auto s = compute(objects, kOptions);
  auto vs = document(s, "infra/wp", "VirtualService", "takeover");
  ASSERT_TRUE(vs);
  EXPECT_EQ(vs["spec"]["hosts"].as<std::vector<std::string>>(),
            std::vector<std::string>{"web.a.svc.cluster.local"});
  EXPECT_EQ(vs["spec"]["http"][0]["route"][0]["destination"]["host"].as<std::string>(), "reviews");
}

// A DestinationRule with subsets comes with the workloads each subset selects among its
// service's pods (the waypoint knows no labels).
TEST(WaypointConfigs, SubsetsComeWithTheirWorkloads) {
  auto objects = objects_from(
      ns_yaml("shop", "{istio.io/use-waypoint: wp}") + gateway("shop", "wp") +
      svc("shop", "reviews", "{}", "10.96.0.1") +
      pod_yaml("shop", "reviews-v1-a", "10.0.0.1", "{app: reviews, version: v1}") +
      pod_yaml("shop", "reviews-v1-b", "10.0.0.2", "{app: reviews, version: v1}") +
      pod_yaml("shop", "reviews-v2", "10.0.0.3", "{app: reviews, version: v2}") +
      pod_yaml("shop", "other-v1", "10.0.0.4", "{app: other, version: v1}") +
      pod_yaml("elsewhere", "reviews-v1", "10.0.0.5", "{app: reviews, version: v1}") +
      "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: "
      "reviews, namespace: shop}\nspec:\n  host: reviews\n  subsets:\n  - {name: v1, labels: "
      "{version: v1}}\n  - {name: v2, labels: {version: v2}}\n  - {name: v3, labels: {version: "
      "v3}}\n");
  auto s = compute(objects, kOptions);
  EXPECT_EQ(
      kinds_and_names(s, "shop/wp"),
      (std::vector<std::string>{"DestinationRule/shop/reviews", "SubsetEndpoints/shop/reviews"}));
  auto doc = document(s, "shop/wp", "SubsetEndpoints", "reviews");
  ASSERT_TRUE(doc);
  const auto subsets = doc["spec"]["subsets"];
  ASSERT_EQ(subsets.size(), 3u);
  EXPECT_EQ(subsets[0]["name"].as<std::string>(), "v1");
  EXPECT_EQ(subsets[0]["workloads"].as<std::vector<std::string>>(),
            (std::vector<std::string>{"shop/reviews-v1-a", "shop/reviews-v1-b"}));
  EXPECT_EQ(subsets[1]["workloads"].as<std::vector<std::string>>(),
            std::vector<std::string>{"shop/reviews-v2"});
  EXPECT_EQ(subsets[2]["workloads"].size(), 0u);
  // The waypoint reads the whole configuration.
  auto parsed = waypoint::config::parse_waypoint_config(s.waypoint_configs.at("shop/wp").yaml());
  ASSERT_TRUE(parsed) << parsed.error().message;
  ASSERT_EQ(parsed->destinations.size(), 1u);
  ASSERT_TRUE(parsed->destinations[0].subset("v1")->members);
  EXPECT_EQ(parsed->destinations[0].subset("v1")->members->size(), 2u);
}

// Two rules of one namespace for a host: Istio merges them, the winner's traffic policy and the
// other's subsets (those the winner has no subset of that name for). A host written "name.ns"
// names no service (Istio takes a name with a dot as it is).
TEST(WaypointConfigs, RulesOfOneNamespaceMergeTheirSubsets) {
  auto rule = [](const std::string& name, const std::string& created, const std::string& host,
                 const std::string& rest) {
    return "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: " +
           name + ", namespace: shop, creationTimestamp: \"" + created +
           "\"}\nspec:\n  host: " + host + "\n" + rest;
  };
  auto objects = objects_from(
      ns_yaml("shop", "{istio.io/use-waypoint: wp}") + gateway("shop", "wp") +
      svc("shop", "reviews", "{}", "10.96.0.1") +
      pod_yaml("shop", "reviews-v1", "10.0.0.1", "{app: reviews, version: v1}") +
      pod_yaml("shop", "reviews-v2", "10.0.0.2", "{app: reviews, version: v2}") +
      rule("versions", "2026-01-01T00:00:00Z", "reviews",
           "  subsets:\n  - {name: v1, labels: {version: v2}}\n  - {name: v2, labels: {version: "
           "v2}}\n") +
      rule("policy", "2026-02-01T00:00:00Z", "reviews",
           "  trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}\n  subsets:\n  - {name: v1, "
           "labels: {version: v1}}\n") +
      rule("dotted", "2020-01-01T00:00:00Z", "reviews.shop",
           "  trafficPolicy: {loadBalancer: {simple: RANDOM}}\n"));
  auto s = compute(objects, kOptions);
  EXPECT_EQ(
      kinds_and_names(s, "shop/wp"),
      (std::vector<std::string>{"DestinationRule/shop/policy", "SubsetEndpoints/shop/policy"}));
  auto dr = document(s, "shop/wp", "DestinationRule", "policy");
  ASSERT_TRUE(dr);
  ASSERT_EQ(dr["spec"]["subsets"].size(), 2u);
  EXPECT_EQ(dr["spec"]["subsets"][0]["labels"]["version"].as<std::string>(), "v1");  // its own
  EXPECT_EQ(dr["spec"]["subsets"][1]["name"].as<std::string>(), "v2");               // merged in
  auto endpoints = document(s, "shop/wp", "SubsetEndpoints", "policy");
  ASSERT_TRUE(endpoints);
  EXPECT_EQ(endpoints["spec"]["subsets"][0]["workloads"].as<std::vector<std::string>>(),
            std::vector<std::string>{"shop/reviews-v1"});
  EXPECT_EQ(endpoints["spec"]["subsets"][1]["workloads"].as<std::vector<std::string>>(),
            std::vector<std::string>{"shop/reviews-v2"});
  auto parsed = waypoint::config::parse_waypoint_config(s.waypoint_configs.at("shop/wp").yaml());
  ASSERT_TRUE(parsed) << parsed.error().message;
  ASSERT_EQ(parsed->destinations.size(), 1u);
  EXPECT_EQ(parsed->destinations[0].policy.load_balancer.algorithm,
            waypoint::config::LbAlgorithm::kRoundRobin);
  EXPECT_TRUE(parsed->destinations[0].subset("v2"));
}

// A CUSTOM policy's waypoint gets the ext_authz providers of the root namespace's `istio`
// ConfigMap (only those: not the rest of the MeshConfig); a waypoint without one does not.
TEST(WaypointConfigs, ACustomPolicysWaypointGetsTheMeshConfigsAuthorizers) {
  const std::string mesh = R"(---
apiVersion: v1
kind: ConfigMap
metadata: {namespace: istio-system, name: istio}
data:
  mesh: |-
    enableTracing: true
    extensionProviders: [{name: sample, envoyExtAuthzHttp: {port: 8000, service: authz.foo}},
      {name: tracing, zipkin: {port: 9411, service: zipkin.istio-system}}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: elsewhere}
data:
  mesh: "extensionProviders: [{name: other, envoyExtAuthzHttp: {service: x, port: 1}}]"
)";
  const std::string custom = R"(---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext, namespace: shop}
spec:
  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: wp}]
  action: CUSTOM
  provider: {name: sample}
  rules: [{to: [{operation: {paths: ["/admin"]}}]}]
)";
  auto objects = objects_from(ns_yaml("shop") + ns_yaml("istio-system") + ns_yaml("elsewhere") +
                              gateway("shop", "wp") + gateway("shop", "wp2") + mesh + custom +
                              policy("shop", "plain", "{kind: Gateway, name: wp2}"));
  auto s = compute(objects, kOptions);
  EXPECT_EQ(
      kinds_and_names(s, "shop/wp"),
      (std::vector<std::string>{"AuthorizationPolicy/shop/ext", "ConfigMap/istio-system/istio"}));
  EXPECT_EQ(kinds_and_names(s, "shop/wp2"),
            (std::vector<std::string>{"AuthorizationPolicy/shop/plain"}));
  // What the waypoint reads of it: the authorizer alone.
  for (const auto& doc : YAML::LoadAll(s.waypoint_configs.at("shop/wp").yaml())) {
    if (doc["kind"].as<std::string>() != "ConfigMap") continue;
    auto mesh_config = YAML::Load(doc["data"]["mesh"].as<std::string>());
    EXPECT_FALSE(mesh_config["enableTracing"]);
    ASSERT_EQ(mesh_config["extensionProviders"].size(), 1u) << "the authorizer alone";
    EXPECT_EQ(mesh_config["extensionProviders"][0]["name"].as<std::string>(), "sample");
  }
}

// The waypoint takes one DestinationRule per host (two would be refused as ambiguous, and with
// them the whole configuration). Of the rules naming one Service, as Istio looks them up: the
// waypoint's namespace, else the Service's, else the root namespace (istio-system), never another,
// and only rules exported to the waypoint's namespace; within one of those the oldest (undated
// last), then the first by key.
TEST(WaypointConfigs, OneDestinationRulePerServiceFromTheNearestNamespaceThenTheOldest) {
  auto dated = [](const std::string& ns, const std::string& name, const std::string& host,
                  const std::string& created) {
    return "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: " +
           name + ", namespace: " + ns + ", creationTimestamp: '" + created +
           "'}\nspec: {host: " + host + "}\n";
  };
  std::string services;
  for (const char* name : {"a", "b", "c", "d", "e", "f", "g"}) {
    services +=
        svc("shop", name, "{istio.io/use-waypoint: wp, istio.io/use-waypoint-namespace: mesh}",
            std::string("10.96.0.") + std::to_string(name[0] - 'a' + 1));
  }
  auto objects = objects_from(
      ns_yaml("mesh") + ns_yaml("shop") + ns_yaml("other") + ns_yaml("istio-system") +
      gateway("mesh", "wp") + services +
      // a: the waypoint's namespace beats the service's and the root's, however old they are.
      dated("istio-system", "a-root", "a.shop.svc.cluster.local", "2019-01-01T00:00:00Z") +
      dated("shop", "a-shop", "a", "2020-01-01T00:00:00Z") +
      dated("mesh", "a-mesh", "a.shop.svc.cluster.local", "2026-06-01T00:00:00Z") +
      // b: two in the service's namespace, the older wins whatever its name.
      dated("shop", "b-new", "b", "2026-01-01T00:00:00Z") +
      dated("shop", "b-old", "b", "2025-01-01T00:00:00Z") +
      // c: another namespace never applies; the root namespace does.
      dated("other", "c-other", "c.shop.svc.cluster.local", "2019-01-01T00:00:00Z") +
      dated("istio-system", "c-root", "c.shop.svc.cluster.local", "2026-01-01T00:00:00Z") +
      // d: the service's namespace beats the root's, though younger.
      dated("istio-system", "d-root", "d.shop.svc.cluster.local", "2019-01-01T00:00:00Z") +
      dated("shop", "d-shop", "d", "2026-01-01T00:00:00Z") +
      // e: an undated rule comes after a dated one.
      dest_rule("shop", "e-1", "e") + dated("shop", "e-2", "e", "2026-01-01T00:00:00Z") +
      // Only from another namespace: none.
      dated("other", "x", "a.shop.svc.cluster.local", "2000-01-01T00:00:00Z") +
      // f: the service's rule is exported to its own namespace only, not the waypoint's.
      "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: f-own, "
      "namespace: shop}\nspec: {host: f, exportTo: [.]}\n" +
      dated("istio-system", "f-root", "f.shop.svc.cluster.local", "2026-01-01T00:00:00Z") +
      // g: exported to the waypoint's namespace by name.
      "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: g-mesh, "
      "namespace: shop}\nspec: {host: g, exportTo: [mesh]}\n");
  auto s = compute(objects, kOptions);
  EXPECT_EQ(kinds_and_names(s, "mesh/wp"),
            (std::vector<std::string>{"DestinationRule/mesh/a-mesh", "DestinationRule/shop/b-old",
                                      "DestinationRule/istio-system/c-root",
                                      "DestinationRule/shop/d-shop", "DestinationRule/shop/e-2",
                                      "DestinationRule/istio-system/f-root",
                                      "DestinationRule/shop/g-mesh"}));
}

// Among the rules of the namespace that applies, Istio merges, taking the traffic policy of the
// oldest rule that has one. A rule with a workloadSelector is never applied at a waypoint (Istio
// looks rules up for it as inbound, where selectors are not honoured), yet it still makes its
// namespace the one that applies.
TEST(WaypointConfigs, TheOldestTrafficPolicyWinsAndSelectorRulesAreNotApplied) {
  auto rule = [](const std::string& ns, const std::string& name, const std::string& host,
                 const std::string& created, const std::string& spec) {
    return "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: " +
           name + ", namespace: " + ns + ", creationTimestamp: '" + created +
           "'}\nspec: {host: " + host + spec + "}\n";
  };
  const std::string policy = ", trafficPolicy: {loadBalancer: {simple: RANDOM}}";
  const std::string selector =
      ", workloadSelector: {matchLabels: {gateway.networking.k8s.io/gateway-name: wp}}";
  std::string services;
  for (const char* name : {"a", "b", "c", "d"}) {
    services +=
        svc("shop", name, "{istio.io/use-waypoint: wp, istio.io/use-waypoint-namespace: mesh}",
            std::string("10.96.0.") + std::to_string(name[0] - 'a' + 1));
  }
  auto objects = objects_from(
      ns_yaml("mesh") + ns_yaml("shop") + ns_yaml("istio-system") + gateway("mesh", "wp") +
      pod_yaml("mesh", "wp-1", "10.244.0.9", "{gateway.networking.k8s.io/gateway-name: wp}") +
      services +
      // a: a rule selecting the waypoint's pods is not applied; the one without a selector is.
      rule("mesh", "a-all", "a.shop.svc.cluster.local", "2026-01-01T00:00:00Z", policy) +
      rule("mesh", "a-wp", "a.shop.svc.cluster.local", "2020-01-01T00:00:00Z", selector + policy) +
      // b: the waypoint's namespace has only a selector rule: no rule, not the service's.
      rule("mesh", "b-wp", "b.shop.svc.cluster.local", "2026-01-01T00:00:00Z", selector + policy) +
      rule("shop", "b-shop", "b", "2020-01-01T00:00:00Z", policy) +
      // c: a selector rule in the service's namespace hides the root namespace's.
      rule("shop", "c-shop", "c", "2026-01-01T00:00:00Z", selector + policy) +
      rule("istio-system", "c-root", "c.shop.svc.cluster.local", "2020-01-01T00:00:00Z", policy) +
      // d: the oldest rule sets no traffic policy (subsets only); the next one's applies, with
      // the oldest's subsets merged in.
      rule("shop", "d-old", "d", "2020-01-01T00:00:00Z", ", subsets: [{name: v1}]") +
      rule("shop", "d-policy", "d", "2026-01-01T00:00:00Z", policy) +
      rule("shop", "d-newer", "d", "2026-06-01T00:00:00Z", policy));
  auto s = compute(objects, kOptions);
  EXPECT_EQ(kinds_and_names(s, "mesh/wp"),
            (std::vector<std::string>{"DestinationRule/mesh/a-all", "DestinationRule/shop/d-policy",
                                      "SubsetEndpoints/shop/d-policy"}));
}

TEST(WaypointConfigs, AWaypointWithNothingAttachedHasAnEmptyResource) {
  auto s = compute(objects_from(ns_yaml("shop") + gateway("shop", "wp")), kOptions);
  ASSERT_TRUE(s.waypoint_configs.contains("shop/wp"));
  EXPECT_EQ(s.waypoint_configs.at("shop/wp").yaml(), "");
}

TEST(WaypointConfigs, ObjectsKeepOnlyNameNamespaceCreationTimestampAndSpec) {
  auto objects = objects_from(
      ns_yaml("shop") + gateway("shop", "wp") +
      svc("shop", "reviews", "{istio.io/use-waypoint: wp}", "10.96.0.1") +
      "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: r\n"
      "  namespace: shop\n  creationTimestamp: '2026-01-02T03:04:05Z'\n  labels: {a: b}\n"
      "  resourceVersion: '7'\nspec:\n  parentRefs: [{kind: Service, name: reviews}]\n"
      "  rules: [{timeouts: {request: 3s}, backendRefs: [{name: reviews, port: 80}]}]\n"
      "status: {parents: []}\n");
  auto s = compute(objects, kOptions);
  auto docs = YAML::LoadAll(s.waypoint_configs.at("shop/wp").yaml());
  ASSERT_EQ(docs.size(), 1u);
  const auto& d = docs[0];
  EXPECT_EQ(d["apiVersion"].as<std::string>(), "gateway.networking.k8s.io/v1");
  EXPECT_EQ(d["metadata"].size(), 3u);
  EXPECT_EQ(d["metadata"]["creationTimestamp"].as<std::string>(), "2026-01-02T03:04:05Z");
  EXPECT_FALSE(d["status"]);
  EXPECT_EQ(d["spec"]["rules"][0]["timeouts"]["request"].as<std::string>(), "3s");
}

}  // namespace
}  // namespace zt::meshd::ambient
