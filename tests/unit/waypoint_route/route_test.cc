// Routing: Gateway API precedence across rules and routes, weighted backends with a seeded RNG,
// header modifiers, URL rewrites, redirects and mirrors.
#include "waypoint/route/route.h"

#include <map>
#include <memory>
#include <string>

#include <gtest/gtest.h>

#include "waypoint/config/parse.h"

namespace zt::waypoint::route {
namespace {

constexpr std::string_view kHost = "reviews.default.svc.cluster.local";

RouteTable table_from(const std::string& yaml) {
  auto config = config::parse_waypoint_config(yaml);
  EXPECT_TRUE(config) << (config ? "" : config.error().message);
  if (!config) return RouteTable(std::make_shared<config::WaypointConfig>());
  return RouteTable(std::make_shared<const config::WaypointConfig>(std::move(*config)));
}

http::RequestHead request(std::string target, http::HeaderList headers = {},
                          std::string method = "GET") {
  http::RequestHead h;
  h.method = std::move(method);
  h.target = std::move(target);
  h.authority = "reviews:9080";
  h.headers = std::move(headers);
  return h;
}

// The backend name chosen for a request (rules here have a single backend each).
std::string backend_for(const RouteTable& table, http::RequestHead head, uint16_t port = 9080) {
  SeededRandom random(1);
  auto d = route_request(table, kHost, port, head, random);
  if (d.kind == RouteDecision::Kind::kNoRoute) return "404";
  if (d.kind == RouteDecision::Kind::kNoBackend) return "500";
  if (d.kind == RouteDecision::Kind::kRedirect) return "redirect";
  return d.backend->name;
}

std::string route_yaml(const std::string& name, const std::string& created,
                       const std::string& rules) {
  return "---\nkind: HTTPRoute\nmetadata: {name: " + name +
         ", namespace: default, creationTimestamp: \"" + created +
         "\"}\nspec:\n  parentRefs: [{kind: Service, name: reviews, port: 9080}]\n  rules:\n" +
         rules;
}

std::string rule(const std::string& backend, const std::string& match) {
  return "  - backendRefs: [{name: " + backend + ", port: 9080}]\n    matches: [" + match + "]\n";
}

TEST(RoutePrecedenceTest, FollowsGatewayApiOrder) {
  const std::string yaml = route_yaml(
      "a", "2026-01-01T00:00:00Z",
      rule("prefix-root", "{path: {type: PathPrefix, value: /}}") +
          rule("prefix-api", "{path: {type: PathPrefix, value: /api}}") +
          rule("prefix-api-v1", "{path: {type: PathPrefix, value: /api/v1}}") +
          rule("exact-api", "{path: {type: Exact, value: /api}}") +
          rule("regex", "{path: {type: RegularExpression, value: \"/api/v[0-9]+/x\"}}") +
          rule("api-post", "{path: {type: PathPrefix, value: /api}, method: POST}") +
          rule("api-1h",
               "{path: {type: PathPrefix, value: /api}, headers: [{name: a, value: '1'}]}") +
          rule("api-2h",
               "{path: {type: PathPrefix, value: /api}, headers: [{name: a, value: '1'}, "
               "{name: b, value: '1'}]}") +
          rule("api-1h-1q",
               "{path: {type: PathPrefix, value: /api}, headers: [{name: a, value: '1'}], "
               "queryParams: [{name: q, value: '1'}]}"));
  const RouteTable table = table_from(yaml);
  struct Case {
    http::RequestHead head;
    const char* want;
  };
  const std::vector<Case> cases = {
      {request("/"), "prefix-root"},
      {request("/apis"), "prefix-root"},   // prefixes are per segment
      {request("/api"), "exact-api"},      // exact beats any prefix
      {request("/api?x=1"), "exact-api"},  // the query is not part of the path
      {request("/api/"), "prefix-api"},
      {request("/api/v1"), "prefix-api-v1"},    // longest prefix
      {request("/api/v1/x"), "prefix-api-v1"},  // prefix beats regex
      {request("/api/v2/x"), "prefix-api"},  // any prefix, even "/", ranks above a regex (as Istio)
      {request("/api/z", {}, "POST"), "api-post"},  // method before headers
      {request("/api/z", {{"a", "1"}}, "POST"), "api-post"},
      {request("/api/z", {{"a", "1"}}), "api-1h"},
      {request("/api/z", {{"A", "1"}, {"b", "1"}}), "api-2h"},  // more headers win
      {request("/api/z?q=1", {{"a", "1"}}), "api-1h-1q"},       // then more query params
      {request("/api/z?q=2", {{"a", "1"}}), "api-1h"},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(backend_for(table, c.head), c.want) << c.head.method << " " << c.head.target;
  }
}

TEST(RoutePrecedenceTest, RegexRanksBelowPrefixAndLongerRegexFirst) {
  const RouteTable table = table_from(route_yaml(
      "a", "2026-01-01T00:00:00Z",
      rule("regex-short", "{path: {type: RegularExpression, value: \"/r/.*\"}}") +
          rule("regex-long", "{path: {type: RegularExpression, value: \"/r/v[0-9]+/x\"}}") +
          rule("prefix-p", "{path: {type: PathPrefix, value: /p}}")));
  EXPECT_EQ(backend_for(table, request("/r/v2/x")), "regex-long");
  EXPECT_EQ(backend_for(table, request("/r/other")), "regex-short");
  EXPECT_EQ(backend_for(table, request("/p/x")), "prefix-p");
  EXPECT_EQ(backend_for(table, request("/q")), "404");
}

TEST(RoutePrecedenceTest, TiesGoToOlderRouteThenNameThenRuleOrder) {
  const std::string match = "{path: {type: PathPrefix, value: /x}}";
  const RouteTable older =
      table_from(route_yaml("zzz", "2026-01-01T00:00:00Z", rule("old", match)) +
                 route_yaml("aaa", "2026-02-01T00:00:00Z", rule("new", match)));
  EXPECT_EQ(backend_for(older, request("/x")), "old");
  const RouteTable same_time =
      table_from(route_yaml("bbb", "2026-01-01T00:00:00Z", rule("b", match)) +
                 route_yaml("aaa", "2026-01-01T00:00:00Z", rule("a", match)));
  EXPECT_EQ(backend_for(same_time, request("/x")), "a");
  const RouteTable rules = table_from(
      route_yaml("r", "2026-01-01T00:00:00Z", rule("first", match) + rule("second", match)));
  EXPECT_EQ(backend_for(rules, request("/x")), "first");
}

// A GRPCRoute's method matches route by the gRPC path "/<service>/<method>"; it sits in the
// same table as the service's HTTPRoutes.
TEST(RouteMatchTest, GrpcRouteMethodsAndHeaders) {
  const RouteTable table = table_from(
      route_yaml("http", "2026-01-01T00:00:00Z", rule("http-v1", "{path: {value: /web}}")) + R"(
---
kind: GRPCRoute
metadata: {name: grpc, namespace: default, creationTimestamp: "2026-01-01T00:00:00Z"}
spec:
  parentRefs: [{kind: Service, name: reviews, port: 9080}]
  rules:
  - matches: [{method: {service: pkg.Reviews, method: Get}}]
    backendRefs: [{name: exact, port: 9080}]
  - matches: [{method: {service: pkg.Reviews}, headers: [{name: end-user, value: jason}]}]
    backendRefs: [{name: service-jason, port: 9080}]
  - matches: [{method: {service: pkg.Reviews}}]
    backendRefs: [{name: service, port: 9080}]
  - matches: [{method: {method: Health}}]
    backendRefs: [{name: any-health, port: 9080}]
  - matches: [{method: {type: RegularExpression, service: "pkg\\.R.*", method: "List.*"}}]
    backendRefs: [{name: regex, port: 9080}]
)");
  const http::HeaderList grpc = {{"content-type", "application/grpc"}};
  EXPECT_EQ(backend_for(table, request("/pkg.Reviews/Get", grpc, "POST")), "exact");
  EXPECT_EQ(backend_for(table, request("/pkg.Reviews/Put", grpc, "POST")), "service");
  EXPECT_EQ(backend_for(table, request("/pkg.Reviews/Put", {{"end-user", "jason"}}, "POST")),
            "service-jason");
  EXPECT_EQ(backend_for(table, request("/other.Svc/Health", grpc, "POST")), "any-health");
  EXPECT_EQ(backend_for(table, request("/pkg.Ratings/ListAll", grpc, "POST")), "regex");
  EXPECT_EQ(backend_for(table, request("/pkgXReviews/Get", grpc, "POST")), "404");
  EXPECT_EQ(backend_for(table, request("/web")), "http-v1");
}

TEST(RouteMatchTest, HeadersQueryAndMethod) {
  const RouteTable table = table_from(route_yaml(
      "r", "2026-01-01T00:00:00Z",
      rule("regex-header", "{headers: [{type: RegularExpression, name: x-v, value: \"v[0-9]\"}]}") +
          rule("query", "{queryParams: [{name: \"a b\", value: \"c/d\"}]}") +
          rule("fallback", "{path: {type: Exact, value: /only}}")));
  EXPECT_EQ(backend_for(table, request("/p", {{"X-V", "v7"}})), "regex-header");
  EXPECT_EQ(backend_for(table, request("/p", {{"x-v", "v77"}})), "404");
  EXPECT_EQ(backend_for(table, request("/p?a%20b=c%2Fd")), "query");
  EXPECT_EQ(backend_for(table, request("/p?a%20b=c")), "404");
  EXPECT_EQ(backend_for(table, request("/only")), "fallback");
  // Repeated headers are joined before matching, as Envoy does.
  const RouteTable joined = table_from(route_yaml(
      "r", "2026-01-01T00:00:00Z", rule("joined", "{headers: [{name: x, value: \"a,b\"}]}")));
  EXPECT_EQ(backend_for(joined, request("/", {{"x", "a"}, {"X", "b"}})), "joined");
}

TEST(RouteMatchTest, ParentPortAndServiceScope) {
  const RouteTable table =
      table_from(route_yaml("r", "2026-01-01T00:00:00Z", rule("on-9080", "{}")));
  EXPECT_EQ(backend_for(table, request("/"), 9080), "on-9080");
  EXPECT_EQ(backend_for(table, request("/"), 8080), "404");
  SeededRandom random(1);
  auto head = request("/");
  EXPECT_EQ(route_request(table, "ratings.default.svc.cluster.local", 9080, head, random).kind,
            RouteDecision::Kind::kNoRoute);
  // Service hostnames compare case-insensitively.
  EXPECT_EQ(route_request(table, "Reviews.Default.svc.cluster.local", 9080, head, random).kind,
            RouteDecision::Kind::kForward);
}

constexpr const char* kSplit = R"(
kind: HTTPRoute
metadata: {name: reviews, namespace: default}
spec:
  parentRefs: [{kind: Service, name: reviews, port: 9080}]
  rules:
  - matches: [{headers: [{name: end-user, value: jason}]}]
    backendRefs: [{name: reviews-v2, port: 9080}]
  - backendRefs:
    - {name: reviews-v1, port: 9080, weight: 90}
    - {name: reviews-v2, port: 9080, weight: 10}
)";

TEST(WeightedBackendTest, NinetyTenSplitWithinFivePoints) {
  const RouteTable table = table_from(kSplit);
  SeededRandom random(2026);
  std::map<std::string, int> counts;
  for (int i = 0; i < 1000; ++i) {
    auto head = request("/reviews/1");
    auto d = route_request(table, kHost, 9080, head, random);
    ASSERT_EQ(d.kind, RouteDecision::Kind::kForward);
    ++counts[d.backend->name];
  }
  EXPECT_GE(counts["reviews-v1"], 850);
  EXPECT_LE(counts["reviews-v1"], 950);
  EXPECT_EQ(counts["reviews-v1"] + counts["reviews-v2"], 1000);
}

TEST(WeightedBackendTest, HeaderMatchOverridesSplit) {
  const RouteTable table = table_from(kSplit);
  SeededRandom random(7);
  for (int i = 0; i < 200; ++i) {
    auto head = request("/reviews/1", {{"end-user", "jason"}});
    auto d = route_request(table, kHost, 9080, head, random);
    ASSERT_EQ(d.kind, RouteDecision::Kind::kForward);
    EXPECT_EQ(d.backend->name, "reviews-v2");
  }
}

TEST(WeightedBackendTest, ZeroWeightsAndNoBackendsAnswer500) {
  const RouteTable table = table_from(route_yaml(
      "r", "2026-01-01T00:00:00Z",
      "  - matches: [{path: {type: Exact, value: /zero}}]\n"
      "    backendRefs: [{name: a, port: 80, weight: 0}, {name: b, port: 80, weight: 0}]\n"
      "  - matches: [{path: {type: Exact, value: /none}}]\n"
      "  - matches: [{path: {type: Exact, value: /some}}]\n"
      "    backendRefs: [{name: a, port: 80, weight: 0}, {name: b, port: 80, weight: 3}]\n"));
  EXPECT_EQ(backend_for(table, request("/zero")), "500");
  EXPECT_EQ(backend_for(table, request("/none")), "500");
  SeededRandom random(3);
  for (int i = 0; i < 100; ++i) {
    auto head = request("/some");
    EXPECT_EQ(route_request(table, kHost, 9080, head, random).backend->name, "b");
  }
}

TEST(FilterTest, RequestAndResponseHeaderModifiers) {
  const RouteTable table =
      table_from(route_yaml("r", "2026-01-01T00:00:00Z",
                            "  - backendRefs: [{name: a, port: 80}]\n"
                            "    filters:\n"
                            "    - type: RequestHeaderModifier\n"
                            "      requestHeaderModifier:\n"
                            "        set: [{name: X-Set, value: new}]\n"
                            "        add: [{name: x-add, value: bar}, {name: x-fresh, value: f}]\n"
                            "        remove: [x-drop]\n"
                            "    - type: ResponseHeaderModifier\n"
                            "      responseHeaderModifier:\n"
                            "        set: [{name: x-resp, value: r}]\n"
                            "        remove: [server]\n"));
  SeededRandom random(1);
  auto head =
      request("/", {{"x-set", "old"}, {"x-set", "older"}, {"x-add", "foo"}, {"X-Drop", "1"}});
  auto d = route_request(table, kHost, 9080, head, random);
  ASSERT_EQ(d.kind, RouteDecision::Kind::kForward);
  EXPECT_EQ(head.headers,
            (http::HeaderList{{"x-set", "new"}, {"x-add", "foo,bar"}, {"x-fresh", "f"}}));
  http::HeaderList response = {{"Server", "app"}, {"x-resp", "app"}};
  apply_response_filters(*d.selection.rule, d.backend, response);
  EXPECT_EQ(response, (http::HeaderList{{"x-resp", "r"}}));
}

TEST(FilterTest, ReplacePrefixMatchOnSegmentBoundaries) {
  struct Case {
    const char* prefix;
    const char* replacement;
    const char* target;
    const char* want;
  };
  // The Gateway API table for ReplacePrefixMatch.
  const Case cases[] = {
      {"/foo", "/xyz", "/foo/bar", "/xyz/bar"},
      {"/foo", "/xyz/", "/foo/bar", "/xyz/bar"},
      {"/foo/", "/xyz", "/foo/bar", "/xyz/bar"},
      {"/foo/", "/xyz/", "/foo/bar", "/xyz/bar"},
      {"/foo", "/xyz", "/foo", "/xyz"},
      {"/foo", "/xyz", "/foo/", "/xyz/"},
      {"/foo", "/", "/foo/bar", "/bar"},
      {"/foo", "/", "/foo", "/"},
      {"/foo", "/xyz", "/foo/bar?q=1", "/xyz/bar?q=1"},
      {"/", "/xyz", "/foo", "/xyz/foo"},
  };
  for (const auto& c : cases) {
    config::RouteMatch match;
    match.path.type = config::PathMatchType::kPathPrefix;
    std::string prefix = c.prefix;
    while (prefix.size() > 1 && prefix.back() == '/') prefix.pop_back();  // as the parser stores it
    match.path.value = prefix;
    config::PathModifier mod{config::PathModifierType::kReplacePrefixMatch, c.replacement};
    EXPECT_EQ(modified_target(mod, match, c.target), c.want)
        << c.prefix << " -> " << c.replacement << " on " << c.target;
  }
  config::PathModifier full{config::PathModifierType::kReplaceFullPath, "/new"};
  EXPECT_EQ(modified_target(full, config::RouteMatch{}, "/old/x?a=b"), "/new?a=b");
}

TEST(FilterTest, UrlRewriteChangesHostAndPath) {
  const RouteTable table = table_from(
      route_yaml("r", "2026-01-01T00:00:00Z",
                 "  - matches: [{path: {type: PathPrefix, value: /old}}]\n"
                 "    backendRefs: [{name: a, port: 80}]\n"
                 "    filters:\n"
                 "    - type: URLRewrite\n"
                 "      urlRewrite: {hostname: elsewhere.example, path: {type: ReplacePrefixMatch, "
                 "replacePrefixMatch: /new}}\n"));
  SeededRandom random(1);
  auto head = request("/old/page?x=1");
  auto d = route_request(table, kHost, 9080, head, random);
  ASSERT_EQ(d.kind, RouteDecision::Kind::kForward);
  EXPECT_EQ(head.target, "/new/page?x=1");
  EXPECT_EQ(head.authority, "elsewhere.example");
  EXPECT_EQ(d.original_target, "/old/page?x=1");
}

TEST(FilterTest, Redirects) {
  struct Case {
    std::string redirect;
    std::string target;
    int status;
    std::string location;
  };
  const std::vector<Case> cases = {
      {"{}", "/a?b=c", 302, "http://reviews:9080/a?b=c"},  // mesh "listener port" = service port
      {"{statusCode: 301, scheme: https}", "/a", 301, "https://reviews/a"},
      {"{scheme: https, port: 8443}", "/a", 302, "https://reviews:8443/a"},
      {"{hostname: example.com, port: 80}", "/a", 302, "http://example.com/a"},
      {"{path: {type: ReplaceFullPath, replaceFullPath: /login}}", "/a?x=1", 302,
       "http://reviews:9080/login?x=1"},
      {"{path: {type: ReplacePrefixMatch, replacePrefixMatch: /v2}, port: 80}", "/app/x", 302,
       "http://reviews/v2/x"},
  };
  for (const auto& c : cases) {
    const RouteTable table =
        table_from(route_yaml("r", "2026-01-01T00:00:00Z",
                              "  - matches: [{path: {type: PathPrefix, value: /app}}, {path: "
                              "{type: PathPrefix, value: /a}}]\n"
                              "    filters: [{type: RequestRedirect, requestRedirect: " +
                                  c.redirect + "}]\n"));
    SeededRandom random(1);
    auto head = request(c.target);
    auto d = route_request(table, kHost, 9080, head, random);
    ASSERT_EQ(d.kind, RouteDecision::Kind::kRedirect) << c.redirect;
    EXPECT_EQ(d.redirect.status, c.status) << c.redirect;
    EXPECT_EQ(d.redirect.location, c.location) << c.redirect;
  }
}

TEST(FilterTest, MirrorsByPercentage) {
  const RouteTable table = table_from(route_yaml(
      "r", "2026-01-01T00:00:00Z",
      "  - backendRefs: [{name: a, port: 80}]\n"
      "    filters:\n"
      "    - {type: RequestMirror, requestMirror: {backendRef: {name: always, port: 80}}}\n"
      "    - {type: RequestMirror, requestMirror: {backendRef: {name: half, port: 80}, percent: "
      "50}}\n"
      "    - {type: RequestMirror, requestMirror: {backendRef: {name: never, port: 80}, percent: "
      "0}}\n"));
  SeededRandom random(11);
  std::map<std::string, int> counts;
  for (int i = 0; i < 1000; ++i) {
    auto head = request("/");
    auto d = route_request(table, kHost, 9080, head, random);
    for (const auto* m : d.mirrors) ++counts[m->backend.name];
  }
  EXPECT_EQ(counts["always"], 1000);
  EXPECT_GE(counts["half"], 450);
  EXPECT_LE(counts["half"], 550);
  EXPECT_EQ(counts["never"], 0);
  EXPECT_EQ(shadow_authority("reviews:9080"), "reviews-shadow:9080");
  EXPECT_EQ(shadow_authority("reviews"), "reviews-shadow");
  EXPECT_EQ(shadow_authority("[fd00::1]:80"), "[fd00::1]-shadow:80");
}

}  // namespace
}  // namespace zt::waypoint::route
