// The objects a waypoint receives: DestinationRule is read (host), and HTTPRoute,
// DestinationRule and AuthorizationPolicy keep a YAML copy of apiVersion, kind, metadata
// name/namespace/creationTimestamp and spec; one the waypoint's reader would refuse is invalid.
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include "common/yaml/load.h"
#include "meshd/manifest/parse.h"
#include "waypoint/authz/parse.h"

namespace zt::meshd::manifest {
namespace {

TEST(WaypointObjects, DestinationRuleHostAndYaml) {
  auto parsed = parse_manifest(R"(apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
  namespace: shop
  creationTimestamp: "2026-01-02T03:04:05Z"
  annotations: {x: y}
spec:
  host: reviews
  trafficPolicy: {connectionPool: {tcp: {maxConnections: 1}}}
status: {}
)",
                               "dr.yaml");
  ASSERT_TRUE(parsed.errors.empty()) << parsed.errors[0].message;
  ASSERT_EQ(parsed.objects.size(), 1u);
  EXPECT_EQ(key_of(parsed.objects[0]).describe(), "DestinationRule shop/reviews");
  const auto& dr = std::get<DestinationRule>(parsed.objects[0]);
  EXPECT_EQ(dr.host, "reviews");
  auto node = YAML::Load(dr.yaml);
  EXPECT_EQ(node["apiVersion"].as<std::string>(), "networking.istio.io/v1");
  EXPECT_EQ(node["kind"].as<std::string>(), "DestinationRule");
  EXPECT_EQ(node["metadata"]["name"].as<std::string>(), "reviews");
  EXPECT_EQ(node["metadata"]["namespace"].as<std::string>(), "shop");
  EXPECT_EQ(node["metadata"]["creationTimestamp"].as<std::string>(), "2026-01-02T03:04:05Z");
  EXPECT_FALSE(node["metadata"]["annotations"]);
  EXPECT_FALSE(node["status"]);
  EXPECT_EQ(node["spec"]["trafficPolicy"]["connectionPool"]["tcp"]["maxConnections"].as<int>(), 1);

  ObjectSet set;
  set.put(parsed.objects[0]);
  EXPECT_EQ(set.destination_rules.count("shop/reviews"), 1u);
  EXPECT_EQ(set.size(), 1u);
}

TEST(WaypointObjects, DestinationRuleWithoutHostIsAnError) {
  auto parsed = parse_manifest(
      "apiVersion: networking.istio.io/v1beta1\nkind: DestinationRule\n"
      "metadata: {name: d, namespace: n}\nspec: {}\n",
      "dr.yaml");
  ASSERT_EQ(parsed.errors.size(), 1u);
  EXPECT_EQ(parsed.errors[0].message, "dr.yaml: DestinationRule n/d: spec.host: is required");
}

TEST(WaypointObjects, HttpRouteAndPolicyKeepTheirYaml) {
  auto parsed = parse_manifest(R"(apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: shop}
spec:
  parentRefs: [{kind: Service, name: web}]
  rules: [{timeouts: {request: 2s}, backendRefs: [{name: web, port: 80}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: p, namespace: shop}
spec:
  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: wp}]
  rules: [{to: [{operation: {paths: ["/admin*"]}}]}]
)",
                               "l7.yaml");
  ASSERT_TRUE(parsed.errors.empty()) << parsed.errors[0].message;
  ASSERT_EQ(parsed.objects.size(), 2u);
  auto route = YAML::Load(std::get<HttpRoute>(parsed.objects[0]).yaml);
  EXPECT_EQ(route["spec"]["rules"][0]["timeouts"]["request"].as<std::string>(), "2s");
  EXPECT_FALSE(route["metadata"]["creationTimestamp"]);
  auto policy = YAML::Load(std::get<AuthorizationPolicy>(parsed.objects[1]).yaml);
  EXPECT_EQ(policy["kind"].as<std::string>(), "AuthorizationPolicy");
  EXPECT_EQ(policy["spec"]["rules"][0]["to"][0]["operation"]["paths"][0].as<std::string>(),
            "/admin*");
}

// An object a waypoint's reader would refuse is invalid here too, with the waypoint's message, so
// that a source keeps its last good version instead of sending it to refuse a whole configuration.
TEST(WaypointObjects, ObjectsAWaypointWouldRefuseAreInvalid) {
  auto parsed = parse_manifest(R"(apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: shop}
spec:
  host: reviews
  trafficPolicy: {outlierDetection: {consecutiveErrors: 5}}
---
{apiVersion: gateway.networking.k8s.io/v1, kind: HTTPRoute, metadata: {name: r, namespace: shop},
 spec: {parentRefs: [{kind: Service, name: web}],
        rules: [{timeouts: {request: soon}, backendRefs: [{name: web, port: 80}]}]}}
---
{apiVersion: security.istio.io/v1, kind: AuthorizationPolicy, metadata: {name: p, namespace: shop},
 spec: {targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: wp}],
        rules: [{from: [{source: {}}]}]}}
---
{apiVersion: networking.istio.io/v1, kind: DestinationRule, metadata: {name: ok, namespace: shop},
 spec: {host: ok, trafficPolicy: {outlierDetection: {consecutive5xxErrors: 5}},
        subsets: [{name: v1, labels: {version: v1}}]}}
)",
                               "l7.yaml");
  ASSERT_EQ(parsed.errors.size(), 3u);
  EXPECT_EQ(parsed.errors[0].document, 0u);
  ASSERT_TRUE(parsed.errors[0].object);
  EXPECT_EQ(parsed.errors[0].object->describe(), "DestinationRule shop/reviews");
  EXPECT_TRUE(parsed.errors[0].message.starts_with(
      "l7.yaml: DestinationRule shop/reviews: "
      "spec.trafficPolicy.outlierDetection.consecutiveErrors: unknown or unsupported field"))
      << parsed.errors[0].message;
  EXPECT_TRUE(parsed.errors[0].message.ends_with("(a waypoint would refuse it)"));
  ASSERT_TRUE(parsed.errors[1].object);
  EXPECT_EQ(parsed.errors[1].object->describe(), "HTTPRoute shop/r");
  EXPECT_TRUE(parsed.errors[1].message.starts_with(
      "l7.yaml: HTTPRoute shop/r: spec.rules[0].timeouts.request: invalid duration \"soon\""))
      << parsed.errors[1].message;
  ASSERT_TRUE(parsed.errors[2].object);
  EXPECT_EQ(parsed.errors[2].object->describe(), "AuthorizationPolicy shop/p");
  EXPECT_EQ(parsed.errors[2].message,
            "l7.yaml: AuthorizationPolicy shop/p: spec.rules[0].from[0].source: a source must set "
            "at least one field (a waypoint would refuse it)");
  // Fields a waypoint does not use (subsets) are not a reason to refuse.
  ASSERT_EQ(parsed.objects.size(), 1u);
  EXPECT_EQ(key_of(parsed.objects[0]).describe(), "DestinationRule shop/ok");
}

// A GRPCRoute is its own kind (an HTTPRoute of the same name is another object), checked with
// the waypoint's reader when it has a Service parent.
TEST(WaypointObjects, GrpcRoutes) {
  auto parsed = parse_manifest(R"(apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: r, namespace: shop}
spec:
  parentRefs: [{kind: Service, name: reviews, port: 9080}]
  rules: [{matches: [{method: {service: pkg.Reviews, method: Get}}], backendRefs: [{name: v2, port: 9080}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: shop}
spec: {parentRefs: [{kind: Service, name: reviews}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: bad, namespace: shop}
spec:
  parentRefs: [{kind: Service, name: reviews}]
  rules: [{matches: [{method: {}}]}]
)",
                               "grpc.yaml");
  ASSERT_EQ(parsed.errors.size(), 1u);
  EXPECT_EQ(parsed.errors[0].message,
            "grpc.yaml: GRPCRoute shop/bad: spec.rules[0].matches[0].method: needs service, "
            "method or both (a waypoint would refuse it)");
  ASSERT_EQ(parsed.objects.size(), 2u);
  EXPECT_EQ(key_of(parsed.objects[0]).describe(), "GRPCRoute shop/r");
  const auto& route = std::get<GrpcRoute>(parsed.objects[0]);
  ASSERT_EQ(route.parent_refs.size(), 1u);
  EXPECT_EQ(route.parent_refs[0].port, 9080u);
  auto node = YAML::Load(route.yaml);
  EXPECT_EQ(node["spec"]["rules"][0]["matches"][0]["method"]["method"].as<std::string>(), "Get");
  ObjectSet set;
  for (const auto& o : parsed.objects) set.put(o);
  EXPECT_EQ(set.grpc_routes.size(), 1u);
  EXPECT_EQ(set.http_routes.size(), 1u);
}

// A RequestAuthentication with targetRefs is checked with the waypoint's reader (its keys too);
// one with a selector only is for sidecars, which meshd does not configure: kept, not checked.
TEST(WaypointObjects, RequestAuthentications) {
  auto parsed = parse_manifest(R"(apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: shop}
spec:
  targetRefs: [{kind: Service, group: "", name: reviews}]
  jwtRules: [{issuer: https://issuer.example, jwksUri: https://issuer.example/keys}]
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: bad-keys, namespace: shop}
spec:
  targetRef: {kind: Gateway, group: gateway.networking.k8s.io, name: wp}
  jwtRules: [{issuer: i, jwks: '{"keys": [{"kty": "RSA"}]}'}]
---
{apiVersion: security.istio.io/v1, kind: RequestAuthentication,
 metadata: {name: sidecars, namespace: shop},
 spec: {selector: {matchLabels: {app: reviews}}, jwtRules: [{issuer: i}]}}
)",
                               "authn.yaml");
  ObjectSet set;
  for (auto& o : parsed.objects) set.put(std::move(o));
  ASSERT_EQ(set.request_authentications.size(), 2u);
  const auto& authn = set.request_authentications.at("shop/jwt");
  ASSERT_EQ(authn.target_refs.size(), 1u);
  EXPECT_EQ(authn.target_refs[0].name, "reviews");
  EXPECT_FALSE(authn.has_selector);
  EXPECT_TRUE(set.request_authentications.at("shop/sidecars").has_selector);
  EXPECT_EQ(YAML::Load(authn.yaml)["spec"]["jwtRules"][0]["issuer"].as<std::string>(),
            "https://issuer.example");
  // The one refused names its field and why.
  std::string errors;
  for (const auto& e : parsed.errors) errors += e.message + "\n";
  EXPECT_EQ(errors,
            "authn.yaml: RequestAuthentication shop/bad-keys: spec.jwtRules[0].jwks: the JWKS has "
            "no usable key; key 0: \"n\" is missing (a waypoint would refuse it)\n");
}

// The ConfigMap `istio` is Istio's MeshConfig: its ext_authz providers are read with the
// waypoint's reader and kept alone; a bad provider or unreadable data.mesh is an invalid object
// (its last good version stays); other ConfigMaps are not read at all.
TEST(WaypointObjects, TheMeshConfigMapsAuthorizers) {
  auto parsed = parse_manifest(R"(apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |-
    defaultConfig: {holdApplicationUntilProxyStarts: true}
    extensionProviders:
    - {name: authz, envoyExtAuthzGrpc: {service: authz.foo.svc.cluster.local, port: 9000}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: broken-provider}
data:
  mesh: "extensionProviders: [{name: authz, envoyExtAuthzHttp: {service: a, port: 0}}]"
---
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: broken-yaml}
data: {mesh: "extensionProviders: [unclosed"}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: no-providers}
data: {mesh: "enableTracing: true"}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: aliases}
data:
  mesh: |-
    extensionProviders:
    - name: z
      zipkin: &a [[x, x, x, x, x, x, x, x, x, x], [x, x, x, x, x, x, x, x, x, x]]
      extra1: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]
      extra2: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]
      extra3: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]
      extra4: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]
      extra5: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]
      extra6: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]
      extra7: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g]
      extra8: [*h, *h, *h, *h, *h, *h, *h, *h, *h, *h]
    - name: authz
      envoyExtAuthzHttp: {service: a.b, port: 80}
      extra: [*h, *h, *h]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: snake}
data: {mesh: "extension_providers: [{name: s, envoy_ext_authz_grpc: {service: a.b, port: 9}}]"}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: istio-system}
data: {mesh: "extensionProviders: [oops"}
)",
                               "mesh.yaml");
  ObjectSet set;
  for (auto& o : parsed.objects) set.put(std::move(o));
  ASSERT_EQ(set.mesh_configs.size(), 4u);
  // Proto field names, as istiod's reader takes them, reach the waypoint too.
  auto snake = waypoint::authz::parse_extension_providers(
      zt::yaml::load_all(set.mesh_configs.at("snake/istio").yaml));
  ASSERT_TRUE(snake) << snake.error().describe();
  ASSERT_EQ(snake->size(), 1u);
  EXPECT_EQ((*snake)[0].kind, waypoint::authz::ExtAuthzProvider::Kind::kGrpc);
  // Aliases a billion nodes deep are never expanded: only the authorizer's own fields are kept.
  EXPECT_LT(set.mesh_configs.at("aliases/istio").yaml.size(), 400u)
      << set.mesh_configs.at("aliases/istio").yaml;
  const auto& mesh = set.mesh_configs.at("istio-system/istio");
  auto doc = YAML::Load(mesh.yaml);
  EXPECT_EQ(doc["kind"].as<std::string>(), "ConfigMap");
  auto inner = YAML::Load(doc["data"]["mesh"].as<std::string>());
  EXPECT_FALSE(inner["defaultConfig"]) << "only what waypoints use";
  EXPECT_EQ(inner["extensionProviders"][0]["name"].as<std::string>(), "authz");
  EXPECT_EQ(set.mesh_configs.at("no-providers/istio").yaml, "") << "nothing for waypoints";
  ASSERT_EQ(parsed.errors.size(), 2u);
  EXPECT_NE(parsed.errors[0].message.find(
                "ConfigMap broken-provider/istio: data.mesh.extensionProviders[0]."
                "envoyExtAuthzHttp.port: must be a port number"),
            std::string::npos)
      << parsed.errors[0].message;
  EXPECT_NE(parsed.errors[1].message.find("ConfigMap broken-yaml/istio: data.mesh: is not YAML"),
            std::string::npos)
      << parsed.errors[1].message;
}

// A route whose parents are all Gateways is an ingress route, which meshd never sends to a
// waypoint: the waypoint's reader is not asked about it (it knows no ingress-only filters).
TEST(WaypointObjects, IngressRoutesAreNotCheckedWithTheWaypointsReader) {
  auto parsed = parse_manifest(R"(apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: ingress, namespace: shop}
spec:
  parentRefs: [{name: public-gateway}]
  rules: [{filters: [{type: ExtensionRef, extensionRef: {group: x.io, kind: Y, name: z}}]}]
)",
                               "ingress.yaml");
  ASSERT_TRUE(parsed.errors.empty()) << parsed.errors[0].message;
  ASSERT_EQ(parsed.objects.size(), 1u);
}

// A VirtualService: what binds it to waypoints is read, the waypoint gets its YAML; one bound to
// the mesh that a waypoint would refuse is invalid, one bound only to gateways is not checked.
TEST(WaypointObjects, VirtualServices) {
  auto parsed = parse_manifest(R"(apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: shop, labels: {a: b}}
spec:
  hosts: [reviews, reviews.shop.svc.cluster.local]
  gateways: [mesh]
  exportTo: ["."]
  http:
  - fault: {abort: {httpStatus: 503, percentage: {value: 50}}}
    route: [{destination: {host: reviews}}]
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: bad, namespace: shop}
spec:
  hosts: [reviews]
  http: [{delegate: {name: other}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ingress, namespace: shop}
spec:
  hosts: [shop.example.com]
  gateways: [istio-system/public]
  http: [{route: [{destination: {host: reviews, subset: v1}}], corsPolicy: {allowOrigins: []}}]
)",
                               "vs.yaml");
  ASSERT_EQ(parsed.errors.size(), 1u);
  EXPECT_EQ(parsed.errors[0].message,
            "vs.yaml: VirtualService shop/bad: spec.http[0].delegate: delegate VirtualServices "
            "are not supported by the waypoint (a waypoint would refuse it)");
  ASSERT_EQ(parsed.objects.size(), 2u);
  const auto& vs = std::get<VirtualService>(parsed.objects[0]);
  EXPECT_EQ(vs.hosts, (std::vector<std::string>{"reviews", "reviews.shop.svc.cluster.local"}));
  EXPECT_EQ(vs.gateways, std::vector<std::string>{"mesh"});
  EXPECT_EQ(vs.export_to, std::vector<std::string>{"."});
  auto node = YAML::Load(vs.yaml);
  EXPECT_EQ(node["kind"].as<std::string>(), "VirtualService");
  EXPECT_FALSE(node["metadata"]["labels"]);
  EXPECT_EQ(node["spec"]["http"][0]["fault"]["abort"]["httpStatus"].as<int>(), 503);
  EXPECT_EQ(key_of(parsed.objects[1]).describe(), "VirtualService shop/ingress");

  ObjectSet set;
  set.put(parsed.objects[0]);
  EXPECT_EQ(set.virtual_services.count("shop/reviews"), 1u);
  EXPECT_EQ(set.size(), 1u);
}

// The dry-run annotation reaches the waypoint (which then only logs what the policy would do);
// other annotations do not.
TEST(WaypointObjects, APolicysDryRunAnnotationIsKept) {
  auto parsed = parse_manifest(R"(apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
  namespace: shop
  annotations: {istio.io/dry-run: "true", other: x}
spec:
  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: wp}]
  action: DENY
  rules: [{to: [{operation: {methods: [DELETE]}}]}]
)",
                               "dry.yaml");
  ASSERT_TRUE(parsed.errors.empty()) << parsed.errors[0].message;
  ASSERT_EQ(parsed.objects.size(), 1u);
  auto node = YAML::Load(std::get<AuthorizationPolicy>(parsed.objects[0]).yaml);
  ASSERT_EQ(node["metadata"]["annotations"].size(), 1u);
  EXPECT_EQ(node["metadata"]["annotations"]["istio.io/dry-run"].as<std::string>(), "true");
  auto policy = waypoint::authz::parse_authorization_policy(node);
  ASSERT_TRUE(policy) << policy.error().message;
  EXPECT_TRUE(policy->dry_run);
}

// An AuthorizationPolicy that cannot be read comes with a stand-in that fails closed for the
// same targets, for a source to use while the policy has no good version.
TEST(WaypointObjects, AnUnreadablePolicyComesWithAStandInThatFailsClosed) {
  auto parsed = parse_manifest(R"(apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny, namespace: shop, creationTimestamp: "2026-01-01T00:00:00Z"}
spec:
  targetRefs: [{kind: Service, name: reviews}]
  action: DENY
  rules: [{to: [{operation: {paths: ["/a/{**}/b/{**}"]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  rules: [{from: [{source: {ipBlocks: [not-an-ip]}}]}]
---
{apiVersion: security.istio.io/v1, kind: AuthorizationPolicy, metadata: {name: ext, namespace: shop},
 spec: {targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: wp}], action: CUSTOM,
        rules: [{when: [{key: no.such.key, values: [x]}]}]}}
)",
                               "authz.yaml");
  ASSERT_EQ(parsed.errors.size(), 3u);
  ASSERT_TRUE(parsed.objects.empty());
  // A DENY: a DENY of every request for the same targets, which the waypoint reads.
  ASSERT_TRUE(parsed.errors[0].fallback);
  const auto& deny = std::get<AuthorizationPolicy>(*parsed.errors[0].fallback);
  EXPECT_EQ(key_of(*parsed.errors[0].fallback), *parsed.errors[0].object);
  EXPECT_EQ(deny.meta.creation_timestamp, "2026-01-01T00:00:00Z");
  EXPECT_EQ(deny.action, "DENY");
  ASSERT_EQ(deny.rules.size(), 1u);
  EXPECT_EQ(deny.rules[0], PolicyRule{});
  ASSERT_EQ(deny.target_refs.size(), 1u);
  EXPECT_EQ(deny.target_refs[0].name, "reviews");
  auto read = waypoint::authz::parse_authorization_policy(YAML::Load(deny.yaml));
  ASSERT_TRUE(read) << read.error().message << "\n" << deny.yaml;
  EXPECT_EQ(read->action, waypoint::authz::Action::kDeny);
  waypoint::authz::RequestInfo any;
  any.method = "GET";
  any.path = "/anything";
  EXPECT_FALSE(waypoint::authz::evaluate(std::vector{*read}, any).allowed());
  // An ALLOW (ztunnel's): the same selector, allowing nothing.
  ASSERT_TRUE(parsed.errors[1].fallback);
  const auto& allow = std::get<AuthorizationPolicy>(*parsed.errors[1].fallback);
  EXPECT_EQ(allow.action, "ALLOW");
  EXPECT_TRUE(allow.rules.empty());
  EXPECT_EQ(allow.selector, (Labels{{"app", "web"}}));
  // A CUSTOM at a waypoint: denies every request.
  ASSERT_TRUE(parsed.errors[2].fallback);
  EXPECT_EQ(std::get<AuthorizationPolicy>(*parsed.errors[2].fallback).action, "DENY");
}

// No stand-in where failing closed is not what the policy would do, or its scope is unknown.
TEST(WaypointObjects, NoStandInForAuditDryRunZtunnelCustomOrAnUnreadableScope) {
  const std::string bad_rules = "  rules: [{to: [{operation: {ports: [nope]}}]}]\n";
  auto policy = [&](const std::string& name, const std::string& extra_meta,
                    const std::string& spec) {
    return "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: " +
           name + ", namespace: shop" + extra_meta + "}\nspec:\n" + spec + bad_rules;
  };
  auto parsed = parse_manifest(
      policy("audit", "", "  action: AUDIT\n") +
          policy("dry", ", annotations: {istio.io/dry-run: 'true'}", "  action: DENY\n") +
          policy("custom", "", "  action: CUSTOM\n  provider: {name: ext}\n") +
          policy("scope", "", "  action: DENY\n  targetRefs: [{name: no-kind}]\n") +
          policy("action", "", "  action: REJECT\n"),
      "authz.yaml");
  ASSERT_EQ(parsed.errors.size(), 5u);
  for (const auto& e : parsed.errors) EXPECT_FALSE(e.fallback) << e.message;
}

// A policy without targetRefs is ztunnel's: the waypoint's reader is not asked about it.
TEST(WaypointObjects, ZtunnelPoliciesAreNotCheckedWithTheWaypointsReader) {
  auto parsed = parse_manifest(R"(apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: z, namespace: shop}
spec:
  selector: {matchLabels: {app: x}}
  rules: [{from: [{source: {}}]}]
)",
                               "l4.yaml");
  ASSERT_TRUE(parsed.errors.empty()) << parsed.errors[0].message;
  ASSERT_EQ(parsed.objects.size(), 1u);
}

}  // namespace
}  // namespace zt::meshd::manifest
