// Parsing the waypoint configuration: HTTPRoute specs as Kubernetes writes them, DestinationRule
// traffic policies and Istio retries/faults, with errors that name the offending field.
#include <map>
#include <set>
#include <string>

#include <gtest/gtest.h>

#include "waypoint/config/parse.h"

namespace zt::waypoint::config {
namespace {

using namespace std::chrono_literals;

constexpr const char* kFull = R"(
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: reviews
  namespace: default
  creationTimestamp: "2026-01-02T03:04:05Z"
spec:
  parentRefs:
  - group: ""
    kind: Service
    name: reviews
    port: 9080
  rules:
  - name: canary
    matches:
    - path: {type: PathPrefix, value: /api/}
      headers:
      - {name: x-user, value: tester}
      - {type: RegularExpression, name: x-trace, value: "a+b"}
      queryParams:
      - {name: debug, value: "1"}
      method: GET
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set: [{name: x-set, value: s}]
        add: [{name: x-add, value: a}]
        remove: [x-remove]
    - type: ResponseHeaderModifier
      responseHeaderModifier:
        add: [{name: x-resp, value: r}]
    - type: URLRewrite
      urlRewrite:
        hostname: reviews.internal
        path: {type: ReplacePrefixMatch, replacePrefixMatch: /v2/}
    - type: RequestMirror
      requestMirror:
        backendRef: {name: shadow, port: 9080}
        fraction: {numerator: 1, denominator: 4}
    backendRefs:
    - {name: reviews-v1, port: 9080, weight: 90}
    - {name: reviews-v2, namespace: other, port: 9080, weight: 10}
    timeouts: {request: 10s, backendRequest: 2s}
    retry: {codes: [503, 500], attempts: 3, backoff: 100ms}
  - backendRefs:
    - {name: reviews-v1, port: 9080}
    retries:
      attempts: 3
      perTryTimeout: 0.5s
      retryOn: 5xx,gateway-error,connect-failure,reset,retriable-4xx,refused-stream,retriable-status-codes,418
    fault:
      delay: {fixedDelay: 7s, percentage: {value: 10.5}}
      abort: {httpStatus: 503, percentage: {value: 50}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews-v1
  trafficPolicy:
    loadBalancer:
      consistentHash:
        httpCookie: {name: session, ttl: 0s}
        ringHash: {minimumRingSize: 2048}
    connectionPool:
      tcp: {maxConnections: 1, connectTimeout: 30ms}
      http: {http1MaxPendingRequests: 1, http2MaxRequests: 10, maxRequestsPerConnection: 5, maxRetries: 2}
    outlierDetection:
      consecutive5xxErrors: 3
      interval: 1s
      baseEjectionTime: 3m
      maxEjectionPercent: 100
    portLevelSettings:
    - port: {number: 8080}
      loadBalancer: {simple: ROUND_ROBIN}
  subsets:
  - name: v1
    labels: {version: v1}
---
kind: ConfigMap
metadata: {name: ignored}
)";

TEST(ConfigParseTest, ParsesHttpRouteAndDestinationRule) {
  auto config = parse_waypoint_config(kFull);
  ASSERT_TRUE(config) << config.error().message;
  ASSERT_EQ(config->routes.size(), 1u);
  const auto& route = config->routes[0];
  EXPECT_EQ(route.key(), "default/reviews");
  EXPECT_EQ(route.created, 1767323045);
  ASSERT_EQ(route.parents.size(), 1u);
  EXPECT_TRUE(route.parents[0].is_service());
  EXPECT_EQ(route.parents[0].port, 9080);
  EXPECT_EQ(route.parents[0].namespace_name, "default");
  ASSERT_EQ(route.rules.size(), 2u);

  const auto& r0 = route.rules[0];
  EXPECT_EQ(r0.name, "canary");
  ASSERT_EQ(r0.matches.size(), 1u);
  const auto& m = r0.matches[0];
  EXPECT_EQ(m.path.type, PathMatchType::kPathPrefix);
  EXPECT_EQ(m.path.value, "/api");  // trailing '/' dropped: prefixes are per segment
  ASSERT_EQ(m.headers.size(), 2u);
  EXPECT_EQ(m.headers[1].type, ValueMatchType::kRegularExpression);
  ASSERT_TRUE(m.headers[1].regex);
  EXPECT_TRUE(m.headers[1].regex->full_match("aab"));
  EXPECT_FALSE(m.headers[1].regex->full_match("xaab"));
  ASSERT_EQ(m.query_params.size(), 1u);
  EXPECT_EQ(m.method, "GET");
  ASSERT_TRUE(r0.request_headers);
  EXPECT_EQ(r0.request_headers->set, (http::HeaderList{{"x-set", "s"}}));
  EXPECT_EQ(r0.request_headers->remove, std::vector<std::string>{"x-remove"});
  ASSERT_TRUE(r0.response_headers);
  ASSERT_TRUE(r0.rewrite);
  EXPECT_EQ(r0.rewrite->hostname, "reviews.internal");
  EXPECT_EQ(r0.rewrite->path->type, PathModifierType::kReplacePrefixMatch);
  EXPECT_EQ(r0.rewrite->path->value, "/v2/");
  ASSERT_EQ(r0.mirrors.size(), 1u);
  EXPECT_DOUBLE_EQ(r0.mirrors[0].percent, 25.0);
  EXPECT_EQ(r0.mirrors[0].backend.hostname("cluster.local"), "shadow.default.svc.cluster.local");
  ASSERT_EQ(r0.backends.size(), 2u);
  EXPECT_EQ(r0.backends[0].weight, 90u);
  EXPECT_EQ(r0.backends[1].hostname("cluster.local"), "reviews-v2.other.svc.cluster.local");
  EXPECT_EQ(r0.timeouts.request, 10s);
  EXPECT_EQ(r0.timeouts.backend_request, 2s);
  ASSERT_TRUE(r0.retry);
  EXPECT_EQ(r0.retry->attempts, 3u);
  EXPECT_EQ(r0.retry->retriable_status_codes, (std::vector<int>{503, 500}));
  EXPECT_EQ(r0.retry->backoff_base, 100ms);
  EXPECT_EQ(r0.effective_retry().per_try_timeout, 2s);  // from backendRequest

  const auto& r1 = route.rules[1];
  ASSERT_EQ(r1.matches.size(), 1u);  // default match
  EXPECT_EQ(r1.matches[0].path.type, PathMatchType::kPathPrefix);
  EXPECT_EQ(r1.matches[0].path.value, "/");
  ASSERT_TRUE(r1.retry);
  EXPECT_EQ(r1.retry->per_try_timeout, 500ms);
  const uint32_t want = kRetryOn5xx | kRetryOnGatewayError | kRetryOnConnectFailure |
                        kRetryOnReset | kRetryOnRetriable4xx | kRetryOnRefusedStream |
                        kRetryOnRetriableStatusCodes;
  EXPECT_EQ(r1.retry->retry_on, want);
  EXPECT_EQ(r1.retry->retriable_status_codes, std::vector<int>{418});
  ASSERT_TRUE(r1.fault && r1.fault->delay && r1.fault->abort);
  EXPECT_EQ(r1.fault->delay->fixed, 7s);
  EXPECT_DOUBLE_EQ(r1.fault->delay->percent, 10.5);
  EXPECT_EQ(r1.fault->abort->http_status, 503);
  EXPECT_DOUBLE_EQ(r1.fault->abort->percent, 50);

  ASSERT_EQ(config->destinations.size(), 1u);
  const auto* d = config->destination("REVIEWS-V1.default.svc.cluster.local");
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(d->policy.load_balancer.algorithm, LbAlgorithm::kConsistentHash);
  ASSERT_TRUE(d->policy.load_balancer.hash);
  EXPECT_EQ(d->policy.load_balancer.hash->source, ConsistentHash::Source::kCookie);
  EXPECT_EQ(d->policy.load_balancer.hash->name, "session");
  EXPECT_EQ(d->policy.load_balancer.hash->minimum_ring_size, 2048u);
  EXPECT_EQ(d->policy.connection_pool.max_connections, 1u);
  EXPECT_EQ(d->policy.connection_pool.connect_timeout, 30ms);
  EXPECT_EQ(d->policy.connection_pool.http1_max_pending_requests, 1u);
  EXPECT_EQ(d->policy.connection_pool.http2_max_requests, 10u);
  EXPECT_EQ(d->policy.connection_pool.max_requests_per_connection, 5u);
  EXPECT_EQ(d->policy.connection_pool.max_retries, 2u);
  ASSERT_TRUE(d->policy.outlier_detection);
  EXPECT_EQ(d->policy.outlier_detection->consecutive_5xx, 3u);
  EXPECT_EQ(d->policy.outlier_detection->interval, 1s);
  EXPECT_EQ(d->policy.outlier_detection->base_ejection_time, 180s);
  EXPECT_EQ(d->policy.outlier_detection->max_ejection_percent, 100u);
  EXPECT_EQ(d->for_port(8080).load_balancer.algorithm, LbAlgorithm::kRoundRobin);
  // A port's entry is its whole policy: what it leaves out is the default (Istio's rule).
  EXPECT_EQ(d->for_port(8080).connection_pool.max_connections, ConnectionPool::kUnlimited);
  EXPECT_FALSE(d->for_port(8080).outlier_detection);
  EXPECT_EQ(d->for_port(9080).load_balancer.algorithm, LbAlgorithm::kConsistentHash);
}

// DestinationRule subsets: their labels and traffic policy (merged over the rule's as Istio
// merges them), and the members a SubsetEndpoints document gives them.
TEST(ConfigParseTest, SubsetsAndTheirEndpoints) {
  auto config = parse_waypoint_config(R"(apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: shop}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer: {simple: RANDOM}
    connectionPool: {tcp: {maxConnections: 7}}
    portLevelSettings:
    - port: {number: 8080}
      connectionPool: {tcp: {maxConnections: 8}}
  subsets:
  - name: v1
    labels: {version: v1, app: reviews}
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      loadBalancer: {simple: ROUND_ROBIN}
      portLevelSettings:
      - port: {number: 8080}
        loadBalancer: {simple: LEAST_REQUEST}
---
apiVersion: ambientmesh.io/v1
kind: SubsetEndpoints
metadata: {name: reviews, namespace: shop}
spec:
  subsets:
  - {name: v2, workloads: [shop/reviews-v2-a, shop/reviews-v2-b]}
)");
  ASSERT_TRUE(config) << config.error().message;
  const auto* d = config->destination("reviews.shop.svc.cluster.local");
  ASSERT_NE(d, nullptr);
  ASSERT_EQ(d->subsets.size(), 2u);
  const auto* v1 = d->subset("v1");
  const auto* v2 = d->subset("v2");
  ASSERT_TRUE(v1 && v2);
  EXPECT_FALSE(d->subset("v3"));
  EXPECT_EQ(v1->labels,
            (std::map<std::string, std::string>{{"app", "reviews"}, {"version", "v1"}}));
  EXPECT_FALSE(v1->members) << "no SubsetEndpoints for v1: no endpoints";
  ASSERT_TRUE(v2->members);
  EXPECT_EQ(*v2->members, (std::set<std::string>{"shop/reviews-v2-a", "shop/reviews-v2-b"}));
  // As Istio merges them: the rule's policy for the port (a port entry is all of it), then the
  // sections the subset gives; a subset's own port entry is all of the policy there.
  EXPECT_EQ(d->for_port(9080, v1).load_balancer.algorithm, LbAlgorithm::kRandom);
  EXPECT_EQ(d->for_port(9080, v1).connection_pool.max_connections, 7u);
  EXPECT_EQ(d->for_port(8080, v1).load_balancer.algorithm, LbAlgorithm::kLeastRequest);
  EXPECT_EQ(d->for_port(8080, v1).connection_pool.max_connections, 8u);
  EXPECT_EQ(d->for_port(9080, v2).load_balancer.algorithm, LbAlgorithm::kRoundRobin);
  EXPECT_EQ(d->for_port(9080, v2).connection_pool.max_connections, 7u);
  EXPECT_EQ(d->for_port(8080, v2).load_balancer.algorithm, LbAlgorithm::kLeastRequest);
  EXPECT_EQ(d->for_port(8080, v2).connection_pool.max_connections, ConnectionPool::kUnlimited);

  const std::string rule =
      "kind: DestinationRule\nmetadata: {name: r, namespace: shop}\nspec:\n  host: reviews\n";
  const std::vector<std::pair<std::string, std::string>> bad = {
      {rule + "  subsets: [{labels: {a: b}}]\n",
       "spec.subsets[0]: missing required field \"name\""},
      {rule + "  subsets: [{name: V1}]\n", "spec.subsets[0].name: \"V1\" is not a DNS label"},
      {rule + "  subsets: [{name: a}, {name: a}]\n", "spec.subsets[1].name: duplicate subset"},
      {rule + "  subsets: [{name: a, labels: [x]}]\n", "spec.subsets[0].labels: must be a map"},
      {rule + "---\nkind: SubsetEndpoints\nmetadata: {name: r, namespace: other}\nspec: {}\n",
       "metadata: no DestinationRule other/r"},
      {rule + "  subsets: [{name: a}]\n---\nkind: SubsetEndpoints\nmetadata: {name: r, "
              "namespace: shop}\nspec: {subsets: [{name: b, workloads: [x/y]}]}\n",
       "spec.subsets[0]: DestinationRule shop/r has no subset \"b\""},
  };
  for (const auto& [yaml, want] : bad) {
    auto parsed = parse_waypoint_config(yaml);
    ASSERT_FALSE(parsed) << yaml;
    EXPECT_NE(parsed.error().message.find(want), std::string::npos)
        << parsed.error().message << "\n  want: " << want;
  }
}

TEST(ConfigParseTest, DefaultsMatchIstio) {
  auto config = parse_waypoint_config(R"(
httpRoutes:
- metadata: {name: r}
  spec:
    parentRefs: [{kind: Service, name: svc}]
destinationRules:
- metadata: {name: d, namespace: ns}
  spec: {host: svc.ns.svc.cluster.local, trafficPolicy: {outlierDetection: {}}}
)");
  ASSERT_TRUE(config) << config.error().message;
  const auto& route = config->routes[0];
  EXPECT_EQ(route.namespace_name, "default");
  EXPECT_EQ(route.parents[0].port, std::nullopt);
  ASSERT_EQ(route.rules.size(), 1u);  // no rules: one default rule without backends
  EXPECT_TRUE(route.rules[0].backends.empty());
  const RetryPolicy retry = route.rules[0].effective_retry();
  EXPECT_EQ(retry.attempts, 2u);
  EXPECT_EQ(retry.retry_on, static_cast<uint32_t>(kRetryOnConnectFailure | kRetryOnRefusedStream |
                                                  kRetryOnUnavailable | kRetryOnCancelled |
                                                  kRetryOnRetriableStatusCodes));
  const auto& d = config->destinations[0];
  EXPECT_EQ(d.policy.load_balancer.algorithm, LbAlgorithm::kLeastRequest);
  EXPECT_EQ(d.policy.connection_pool.max_connections, ConnectionPool::kUnlimited);
  ASSERT_TRUE(d.policy.outlier_detection);
  EXPECT_EQ(d.policy.outlier_detection->consecutive_5xx, 5u);
  EXPECT_EQ(d.policy.outlier_detection->interval, 10s);
  EXPECT_EQ(d.policy.outlier_detection->base_ejection_time, 30s);
  EXPECT_EQ(d.policy.outlier_detection->max_ejection_percent, 10u);
}

TEST(ConfigParseTest, RouteLevelIstioBlockAppliesToRulesWithoutTheirOwn) {
  auto config = parse_waypoint_config(R"(
kind: List
items:
- kind: HTTPRoute
  metadata: {name: r, namespace: ns}
  istio:
    retries: {attempts: 5, retryOn: gateway-error}
    fault: {abort: {grpcStatus: UNAVAILABLE, percentage: {value: 100}}}
  spec:
    parentRefs: [{kind: Service, name: svc}]
    rules:
    - backendRefs: [{name: a, port: 80}]
    - backendRefs: [{name: b, port: 80}]
      retries: {attempts: 0}
)");
  ASSERT_TRUE(config) << config.error().message;
  const auto& rules = config->routes[0].rules;
  EXPECT_EQ(rules[0].retry->attempts, 5u);
  EXPECT_EQ(rules[0].retry->retry_on, static_cast<uint32_t>(kRetryOnGatewayError));
  EXPECT_EQ(rules[0].fault->abort->grpc_status, 14);
  EXPECT_EQ(rules[0].fault->abort->http_status, 200);
  EXPECT_EQ(rules[1].retry->attempts, 0u);
}

TEST(ConfigParseTest, Durations) {
  struct Case {
    const char* text;
    int64_t ms;
  };
  const Case ok[] = {{"0", 0},         {"0s", 0},        {"10s", 10000},    {"1.5s", 1500},
                     {"250ms", 250},   {"1m30s", 90000}, {"1h", 3600000},   {"100us", 1},
                     {"1500000ns", 2}, {"0.5s", 500},    {"2h45m", 9900000}};
  for (const auto& c : ok) {
    auto d = parse_duration(c.text);
    ASSERT_TRUE(d) << c.text << ": " << d.error().message;
    EXPECT_EQ(d->count(), c.ms) << c.text;
  }
  for (const char* bad : {"", "10", "s", "-1s", "1d", "1..5s", "ten seconds", "1s2"}) {
    EXPECT_FALSE(parse_duration(bad)) << bad;
  }
}

TEST(ConfigParseTest, Rfc3339) {
  EXPECT_EQ(*parse_rfc3339("1970-01-01T00:00:00Z"), 0);
  EXPECT_EQ(*parse_rfc3339("2026-01-02T03:04:05.123Z"), 1767323045);
  EXPECT_EQ(*parse_rfc3339("2026-01-02T04:04:05+01:00"), 1767323045);
  EXPECT_FALSE(parse_rfc3339("2026-01-02 03:04:05"));
  EXPECT_FALSE(parse_rfc3339("2026-13-02T03:04:05Z"));
}

std::string route_with_rule(const std::string& rule_yaml) {
  return "kind: HTTPRoute\nmetadata: {name: r}\nspec:\n  parentRefs: [{kind: Service, name: s}]\n"
         "  rules:\n  - " +
         rule_yaml + "\n";
}

// A GRPCRoute is read into the HTTPRoute model; an HTTPRoute of the same name is another route.
TEST(ConfigParseTest, GrpcRouteBesideAnHttpRouteOfTheSameName) {
  auto config = parse_waypoint_config(R"(kind: GRPCRoute
metadata: {name: r, namespace: shop}
spec:
  parentRefs: [{kind: Service, name: reviews}]
  rules:
  - matches: [{method: {service: pkg.Reviews, method: Get}, headers: [{name: x, value: y}]}]
    filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: a, value: b}]}}]
    backendRefs: [{name: reviews-v2, port: 9080, weight: 3}]
---
kind: HTTPRoute
metadata: {name: r, namespace: shop}
spec: {}
)");
  ASSERT_TRUE(config) << config.error().message;
  ASSERT_EQ(config->routes.size(), 2u);
  const auto& grpc = config->routes[0];
  EXPECT_EQ(grpc.kind, "GRPCRoute");
  EXPECT_EQ(config->routes[1].kind, "HTTPRoute");
  ASSERT_EQ(grpc.rules.size(), 1u);
  ASSERT_EQ(grpc.rules[0].matches.size(), 1u);
  EXPECT_EQ(grpc.rules[0].matches[0].path.type, PathMatchType::kExact);
  EXPECT_EQ(grpc.rules[0].matches[0].path.value, "/pkg.Reviews/Get");
  EXPECT_EQ(grpc.rules[0].matches[0].headers.size(), 1u);
  ASSERT_TRUE(grpc.rules[0].request_headers);
  ASSERT_EQ(grpc.rules[0].backends.size(), 1u);
  EXPECT_EQ(grpc.rules[0].backends[0].weight, 3u);
  // Unlike an HTTPRoute, a GRPCRoute without rules gets no default rule: it routes nothing.
  EXPECT_EQ(config->routes[1].rules.size(), 1u);
  auto empty = parse_waypoint_config("kind: GRPCRoute\nmetadata: {name: e}\nspec: {}\n");
  ASSERT_TRUE(empty) << empty.error().message;
  EXPECT_TRUE(empty->routes[0].rules.empty());
  // Service names as Gateway API writes them: dotted, a leading dot allowed.
  EXPECT_TRUE(parse_waypoint_config(
      "kind: GRPCRoute\nmetadata: {name: d}\nspec:\n  rules: [{matches: [{method: {service: "
      ".a_1.B}}]}]\n"));
}

TEST(ConfigParseTest, ErrorsNameTheField) {
  struct Case {
    std::string yaml;
    std::string expected;  // substring of the error
  };
  const std::vector<Case> cases = {
      {route_with_rule("matches: [{path: {type: Glob, value: /x}}]"),
       "spec.rules[0].matches[0].path.type: unknown value \"Glob\""},
      {route_with_rule("matches: [{path: {type: PathPrefix, value: x}}]"),
       "spec.rules[0].matches[0].path.value: must start with '/'"},
      {route_with_rule("matches: [{path: {type: RegularExpression, value: \"(\"}}]"),
       "spec.rules[0].matches[0].path.value: invalid regular expression"},
      {route_with_rule("matches: [{headers: [{name: \"bad name\", value: x}]}]"),
       "spec.rules[0].matches[0].headers[0].name"},
      {route_with_rule("matches: [{method: FETCH}]"),
       "spec.rules[0].matches[0].method: unknown method"},
      {route_with_rule("filters: [{type: CORS, cors: {}}]"),
       "spec.rules[0].filters[0].type: filter type \"CORS\" is not supported"},
      {route_with_rule("filters: [{type: RequestHeaderModifier}]"),
       "spec.rules[0].filters[0]: type RequestHeaderModifier needs \"requestHeaderModifier\""},
      {route_with_rule("backendRefs: [{name: a, port: 80, weight: -1}]"),
       "spec.rules[0].backendRefs[0].weight: -1 is out of range"},
      {route_with_rule("backendRefs: [{name: a}]"),
       "spec.rules[0].backendRefs[0]: a Service backend needs \"port\""},
      {route_with_rule("backendRefs: [{name: a, port: 80, colour: red}]"),
       "spec.rules[0].backendRefs[0].colour: unknown or unsupported field"},
      {route_with_rule(
           "matches: [{path: {type: Exact, value: /a}}]\n    filters: [{type: URLRewrite, "
           "urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /b}}}]"),
       "spec.rules[0].filters: ReplacePrefixMatch needs every match to use a PathPrefix path"},
      {route_with_rule("filters: [{type: RequestRedirect, requestRedirect: {statusCode: 305}}]"),
       "spec.rules[0].filters[0].requestRedirect.statusCode: 305 is not one of"},
      {route_with_rule("timeouts: {request: 1s, backendRequest: 2s}"),
       "spec.rules[0].timeouts.backendRequest: must not exceed timeouts.request"},
      {route_with_rule("timeouts: {request: 10x}"),
       "spec.rules[0].timeouts.request: invalid duration"},
      {route_with_rule("retries: {retryOn: \"5xx,sometimes\"}"),
       "spec.rules[0].retries.retryOn: unsupported retry condition \"sometimes\""},
      {route_with_rule("fault: {abort: {percentage: {value: 150}, httpStatus: 503}}"),
       "spec.rules[0].fault.abort.percentage.value: 150 is out of range"},
      {route_with_rule("fault: {abort: {percentage: {value: 5}}}"),
       "spec.rules[0].fault.abort: needs exactly one of httpStatus, grpcStatus"},
      {"kind: DestinationRule\nmetadata: {name: d}\nspec:\n  host: x\n  trafficPolicy:\n"
       "    loadBalancer: {consistentHash: {httpHeaderName: a, useSourceIp: true}}\n",
       "spec.trafficPolicy.loadBalancer.consistentHash: needs exactly one of"},
      {"kind: DestinationRule\nmetadata: {name: d}\nspec:\n  host: x\n  trafficPolicy:\n"
       "    connectionPool: {http: {http1MaxPendingRequests: many}}\n",
       "spec.trafficPolicy.connectionPool.http.http1MaxPendingRequests: must be an integer"},
      {"kind: DestinationRule\nmetadata: {name: d}\nspec: {trafficPolicy: {}}\n",
       "spec: missing required field \"host\""},
      {"kind: HTTPRoute\nspec: {}\n", "missing required field \"metadata\""},
      {"kind: HTTPRoute\nmetadata: {name: a}\nspec: {}\n---\nkind: HTTPRoute\nmetadata: {name: "
       "a}\nspec: {}\n",
       "document[1]: duplicate HTTPRoute default/a"},
      {"httpRoutes: {}\n", "httpRoutes: must be a list"},
      // GRPCRoute: what Gateway API does not allow there, or what cannot be a gRPC call.
      {"kind: GRPCRoute\nmetadata: {name: g}\nspec:\n  rules: [{matches: [{method: {}}]}]\n",
       "spec.rules[0].matches[0].method: needs service, method or both"},
      {"kind: GRPCRoute\nmetadata: {name: g}\nspec:\n  rules: [{matches: [{method: {service: "
       "\"a/b\"}}]}]\n",
       "spec.rules[0].matches[0].method.service: \"a/b\" is not a gRPC service name"},
      {"kind: GRPCRoute\nmetadata: {name: g}\nspec:\n  rules: [{matches: [{method: {method: "
       "Get2.x}}]}]\n",
       "spec.rules[0].matches[0].method.method: \"Get2.x\" is not a gRPC method name"},
      {"kind: GRPCRoute\nmetadata: {name: g}\nspec:\n  rules: [{matches: [{method: {type: "
       "RegularExpression, service: \"a)|(b\"}}]}]\n",
       "spec.rules[0].matches[0].method.service: invalid regular expression"},
      {"kind: GRPCRoute\nmetadata: {name: g}\nistio: {retries: {attempts: 1}}\nspec: {}\n",
       "istio: retries and faults are not GRPCRoute fields"},
      {"kind: GRPCRoute\nmetadata: {name: g}\nspec:\n  rules: [{matches: [{path: {value: /x}}]}]\n",
       "spec.rules[0].matches[0].path: unknown or unsupported field"},
      {"kind: GRPCRoute\nmetadata: {name: g}\nspec:\n  rules: [{filters: [{type: URLRewrite, "
       "urlRewrite: {hostname: x}}]}]\n",
       "spec.rules[0].filters[0].type: filter type \"URLRewrite\" is not a GRPCRoute filter"},
      {"kind: GRPCRoute\nmetadata: {name: g}\nspec:\n  rules: [{timeouts: {request: 1s}}]\n",
       "spec.rules[0].timeouts: is not a field of a GRPCRoute rule"},
      {"kind: GRPCRoute\nmetadata: {name: a}\nspec: {}\n---\nkind: GRPCRoute\nmetadata: {name: "
       "a}\nspec: {}\n",
       "document[1]: duplicate GRPCRoute default/a"},
      {"key: [unclosed\n", "invalid YAML at line"},
      // yaml-cpp 0.7's LoadAll looped on this until memory ran out.
      {"kind: HTTPRoute\nmetadata: {name: a}\nspec: {}\n---\n,\n", "invalid YAML at line 5"},
  };
  for (const auto& c : cases) {
    auto config = parse_waypoint_config(c.yaml);
    ASSERT_FALSE(config) << c.yaml;
    EXPECT_NE(config.error().message.find(c.expected), std::string::npos)
        << "got: " << config.error().message << "\nwant: " << c.expected;
  }
}

TEST(ConfigParseTest, RetryOnStringAsIstioWritesIt) {
  RetryPolicy p;
  ASSERT_TRUE(parse_retry_on("503,reset , gateway-error", p));
  EXPECT_EQ(p.retry_on, static_cast<uint32_t>(kRetryOnRetriableStatusCodes | kRetryOnReset |
                                              kRetryOnGatewayError));
  EXPECT_EQ(p.retriable_status_codes, std::vector<int>{503});
  RetryPolicy bad;
  EXPECT_FALSE(parse_retry_on("99", bad));
}

}  // namespace
}  // namespace zt::waypoint::config
