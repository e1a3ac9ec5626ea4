// VirtualServices at the waypoint: what is read from one (and refused, naming the field), and
// how its rules route: in the order written, after the service's HTTPRoutes, with Istio's match,
// rewrite, redirect, direct-response and header semantics.
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "waypoint/config/parse.h"
#include "waypoint/route/route.h"

namespace zt::waypoint::route {
namespace {

using namespace std::chrono_literals;

constexpr std::string_view kHost = "reviews.default.svc.cluster.local";

std::string vs(const std::string& name, const std::string& created, const std::string& http,
               const std::string& extra_spec = "") {
  return "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: " + name +
         ", namespace: default, creationTimestamp: \"" + created + "\"}\nspec:\n" +
         (extra_spec.empty() ? "  hosts: [reviews]\n" : extra_spec) + "  http:\n" + http;
}

std::shared_ptr<const config::WaypointConfig> config_from(const std::string& yaml) {
  auto config = config::parse_waypoint_config(yaml);
  EXPECT_TRUE(config) << (config ? "" : config.error().message);
  if (!config) return std::make_shared<config::WaypointConfig>();
  return std::make_shared<const config::WaypointConfig>(std::move(*config));
}

http::RequestHead request(std::string target, http::HeaderList headers = {},
                          std::string method = "GET") {
  http::RequestHead h;
  h.method = std::move(method);
  h.scheme = "http";
  h.target = std::move(target);
  h.authority = "reviews:9080";
  h.headers = std::move(headers);
  return h;
}

// The destination host's first label chosen for a request, or what happened instead.
std::string routed(const RouteTable& table, http::RequestHead head, uint16_t port = 9080,
                   std::string_view source_namespace = "default", uint64_t seed = 1) {
  SeededRandom random(seed);
  auto d = route_request(table, kHost, port, head, random, source_namespace);
  switch (d.kind) {
    case RouteDecision::Kind::kNoRoute:
      return "404";
    case RouteDecision::Kind::kNoBackend:
      return "500";
    case RouteDecision::Kind::kRedirect:
      return "redirect " + d.redirect.location;
    case RouteDecision::Kind::kDirect:
      return "direct";
    case RouteDecision::Kind::kForward:
      break;
  }
  const std::string host = d.backend->hostname("cluster.local");
  return host.substr(0, host.find('.'));
}

std::string to(const std::string& host) {
  return "    route: [{destination: {host: " + host + "}}]\n";
}

TEST(VirtualServiceParseTest, ReadsEveryHttpRouteField) {
  auto cfg = config_from(vs("reviews", "2026-01-01T00:00:00Z", R"y(
  - name: canary
    match:
    - uri: {prefix: /api}
      ignoreUriCase: true
      method: {exact: GET}
      headers:
        x-user: {exact: tester}
        x-any: {}
        x-star: {regex: "*"}
      withoutHeaders:
        x-skip: {prefix: "1"}
      queryParams:
        debug: {regex: "[01]"}
      port: 9080
      sourceNamespace: frontend
    - sourceLabels: {app: web}
    - gateways: [ingress]
    route:
    - destination: {host: reviews-v1, port: {number: 8080}}
      weight: 90
      headers:
        request: {set: {x-v: "1"}}
        response: {remove: [x-internal]}
    - destination: {host: reviews-v2.other.svc.cluster.local, subset: canary}
      weight: 10
    rewrite: {uri: /v2}
    headers:
      request:
        set: {":authority": reviews.internal, x-set: s}
        add: {x-add: a}
        remove: [x-remove]
      response: {add: {x-resp: r}}
    timeout: 3s
    retries: {attempts: 4, perTryTimeout: 1s, retryOn: "5xx"}
    fault: {abort: {httpStatus: 503, percentage: {value: 5}}}
    mirror: {host: shadow}
    mirrorPercentage: {value: 25}
  - match: [{uri: {exact: /old}}]
    redirect: {uri: /new, authority: example.com, derivePort: FROM_REQUEST_PORT}
  - match: [{uri: {regex: "/r/.*"}}]
    route: [{destination: {host: reviews}}]
    rewrite: {uriRegexRewrite: {match: "^/r/(.*)$", rewrite: "/\\1/x"}}
    mirrors:
    - destination: {host: shadow}
    - destination: {host: shadow2}
      percentage: {value: 50}
  - directResponse: {status: 418, body: {string: teapot}}
)y",
                            "  hosts: [reviews, \"*.example.com\"]\n  gateways: [mesh]\n"
                            "  exportTo: [\".\"]\n  tcp: [{route: []}]\n"));
  ASSERT_EQ(cfg->routes.size(), 1u);
  const auto& r = cfg->routes[0];
  EXPECT_TRUE(r.is_virtual_service());
  EXPECT_EQ(r.hostnames, (std::vector<std::string>{std::string(kHost), "*.example.com"}));
  ASSERT_EQ(r.rules.size(), 4u);

  const auto& canary = r.rules[0];
  EXPECT_EQ(canary.name, "canary");
  ASSERT_EQ(canary.matches.size(), 1u);  // the sourceLabels and ingress-only matches are dropped
  const auto& m = canary.matches[0];
  EXPECT_EQ(m.path.type, config::PathMatchType::kPrefix);
  EXPECT_EQ(m.path.value, "/api");
  EXPECT_TRUE(m.path.ignore_case);
  EXPECT_EQ(m.port, 9080);
  EXPECT_EQ(m.source_namespace, "frontend");
  ASSERT_EQ(m.headers.size(), 5u);
  EXPECT_EQ(m.headers[0].name, ":method");
  EXPECT_EQ(m.headers[2].type, config::ValueMatchType::kPresent);
  EXPECT_EQ(m.headers[3].type, config::ValueMatchType::kPresent);
  EXPECT_TRUE(m.headers[4].invert);
  EXPECT_EQ(m.headers[4].type, config::ValueMatchType::kPrefix);
  ASSERT_EQ(m.query_params.size(), 1u);
  EXPECT_EQ(m.query_params[0].type, config::ValueMatchType::kRegularExpression);

  ASSERT_EQ(canary.backends.size(), 2u);
  EXPECT_EQ(canary.backends[0].hostname("cluster.local"), "reviews-v1.default.svc.cluster.local");
  EXPECT_EQ(canary.backends[0].port, 8080);
  EXPECT_EQ(canary.backends[0].weight, 90u);
  ASSERT_TRUE(canary.backends[0].request_headers);
  ASSERT_TRUE(canary.backends[0].response_headers);
  EXPECT_EQ(canary.backends[1].hostname("cluster.local"), "reviews-v2.other.svc.cluster.local");
  EXPECT_EQ(canary.backends[1].namespace_name, "other");
  EXPECT_FALSE(canary.backends[1].port);
  EXPECT_EQ(canary.backends[1].subset, "canary");
  ASSERT_TRUE(canary.rewrite);
  EXPECT_EQ(canary.rewrite->hostname, "reviews.internal");  // from headers.request.set
  EXPECT_EQ(canary.rewrite->path->type, config::PathModifierType::kRewriteMatched);
  ASSERT_TRUE(canary.request_headers);
  EXPECT_EQ(canary.request_headers->set.size(), 1u);  // x-set; the authority went to the rewrite
  EXPECT_EQ(canary.timeouts.request, 3000ms);
  ASSERT_TRUE(canary.retry);
  EXPECT_EQ(canary.retry->attempts, 4u);
  ASSERT_TRUE(canary.fault && canary.fault->abort);
  EXPECT_EQ(canary.fault->abort->http_status, 503);
  ASSERT_EQ(canary.mirrors.size(), 1u);
  EXPECT_EQ(canary.mirrors[0].percent, 25);

  const auto& redirect = r.rules[1];
  ASSERT_TRUE(redirect.redirect);
  EXPECT_EQ(redirect.redirect->status_code, 301);
  EXPECT_EQ(redirect.redirect->port_rule, config::RequestRedirect::PortRule::kServicePort);
  EXPECT_EQ(redirect.redirect->hostname, "example.com");

  const auto& regex = r.rules[2];
  EXPECT_EQ(regex.rewrite->path->type, config::PathModifierType::kRegexReplace);
  ASSERT_EQ(regex.mirrors.size(), 2u);
  EXPECT_EQ(regex.mirrors[0].percent, 100);
  EXPECT_EQ(regex.mirrors[1].percent, 50);
  EXPECT_EQ(regex.backends[0].weight, 1u);  // one destination takes everything

  ASSERT_TRUE(r.rules[3].direct_response);
  EXPECT_EQ(r.rules[3].direct_response->status, 418);
  EXPECT_EQ(r.rules[3].direct_response->body, "teapot");
  ASSERT_EQ(r.rules[3].matches.size(), 1u);  // no match: every request
}

TEST(VirtualServiceParseTest, ErrorsNameTheField) {
  struct Case {
    std::string http;
    std::string expected;  // substring of the error
  };
  const std::vector<Case> cases = {
      {"  - delegate: {name: other}\n", "spec.http[0].delegate: delegate VirtualServices"},
      {"  - corsPolicy: {allowOrigins: [{}]}\n" + to("reviews"),
       "spec.http[0].corsPolicy.allowOrigins[0]: needs a non-empty exact, prefix or regex"},
      {"  - corsPolicy: {allowMethods: [FETCH]}\n" + to("reviews"),
       "spec.http[0].corsPolicy.allowMethods[0]: \"FETCH\" is not an HTTP method"},
      {"  - corsPolicy: {allowHeaders: [\"a b\"]}\n" + to("reviews"),
       "spec.http[0].corsPolicy.allowHeaders[0]: not a valid token"},
      {"  - corsPolicy: {allowOrigins: [{prefix: \"\"}]}\n" + to("reviews"),
       "spec.http[0].corsPolicy.allowOrigins[0]: needs a non-empty exact, prefix or regex"},
      {"  - corsPolicy: {maxAge: 1.5s}\n" + to("reviews"),
       "spec.http[0].corsPolicy.maxAge: must be whole seconds"},
      {"  - corsPolicy: {unmatchedPreflights: DROP}\n" + to("reviews"),
       "spec.http[0].corsPolicy.unmatchedPreflights: unknown value \"DROP\""},
      {"  - directResponse: {status: 200, body: {bytes: aGk=}}\n",
       "spec.http[0].directResponse.body.bytes: is not supported"},
      {"  - directResponse: {status: 99}\n",
       "spec.http[0].directResponse.status: 99 is out of range"},
      {"  - timeout: 1s\n", "spec.http[0]: needs one of route, redirect and directResponse"},
      {"  - redirect: {uri: /a}\n" + to("reviews"),
       "spec.http[0]: give only one of route, redirect and directResponse"},
      {"  - redirect: {uri: /a}\n    rewrite: {uri: /b}\n",
       "spec.http[0].rewrite: only goes with route"},
      {"  - redirect: {redirectCode: 305}\n", "spec.http[0].redirect.redirectCode: must be 301"},
      {"  - redirect: {port: 80, derivePort: FROM_REQUEST_PORT}\n",
       "spec.http[0].redirect: give port or derivePort, not both"},
      {"  - redirect: {scheme: ftp}\n", "spec.http[0].redirect.scheme: unknown value \"ftp\""},
      {"  - route: [{destination: {host: a}, weight: 0}, {destination: {host: b}, weight: 0}]\n",
       "spec.http[0].route: the weights of several destinations add up to 0"},
      {"  - route: [{destination: {host: \"*.a\"}}]\n",
       "spec.http[0].route[0].destination.host: must not be a wildcard"},
      {"  - route: [{weight: 1}]\n",
       "spec.http[0].route[0]: missing required field \"destination\""},
      {"  - match: [{uri: {regex: \"(\"}}]\n" + to("reviews"),
       "spec.http[0].match[0].uri.regex: invalid regular expression"},
      {"  - match: [{uri: {exact: /a, prefix: /b}}]\n" + to("reviews"),
       "spec.http[0].match[0].uri: give only one of exact, prefix and regex"},
      {"  - match: [{headers: {\"bad name\": {exact: x}}}]\n" + to("reviews"),
       "spec.http[0].match[0].headers.bad name: not a valid header name"},
      {"  - match: [{headers: {\"@request.auth.claims.group\": {exact: x}}}]\n" + to("reviews"),
       "JWT claim matches"},
      {"  - match: [{colour: red}]\n" + to("reviews"),
       "spec.http[0].match[0].colour: unknown or unsupported field"},
      {"  - rewrite: {uri: /a, uriRegexRewrite: {match: a, rewrite: b}}\n" + to("reviews"),
       "spec.http[0].rewrite.uriRegexRewrite: give uri or uriRegexRewrite, not both"},
      {"  - rewrite: {uriRegexRewrite: {match: a, rewrite: \"\\\\2\"}}\n" + to("reviews"),
       "spec.http[0].rewrite.uriRegexRewrite.rewrite: invalid rewrite"},
      {"  - headers: {response: {set: {host: x}}}\n" + to("reviews"),
       "spec.http[0].headers.response.set.host: the authority can only be set"},
      {"  - redirect: {uri: \"/a b\"}\n",
       "spec.http[0].redirect.uri: must not contain spaces, control characters or '#'"},
      {"  - rewrite: {uri: \"/a#b\"}\n" + to("reviews"),
       "spec.http[0].rewrite.uri: must not contain spaces"},
      {"  - rewrite: {uriRegexRewrite: {match: a, rewrite: \"/\\n\"}}\n" + to("reviews"),
       "spec.http[0].rewrite.uriRegexRewrite.rewrite: must not contain"},
      {"  - headers: {request: {set: {\":authority\": \"a\\r\\nb\"}}}\n" + to("reviews"),
       "spec.http[0].headers.request.set.:authority: the value must not contain control"},
      {"  - headers: {request: {set: {x-a: \"a\\nb\"}}}\n" + to("reviews"),
       "spec.http[0].headers.request.set.x-a: the value must not contain control characters"},
      {"  - mirrorPercentage: {value: 5}\n" + to("reviews"),
       "spec.http[0].mirrorPercentage: only goes with `mirror`"},
      {"  - mirror: {host: a}\n    mirrors: [{destination: {host: b}}]\n" + to("reviews"),
       "give mirror or mirrors, not both"},
  };
  for (const auto& c : cases) {
    auto config = config::parse_waypoint_config(vs("bad", "2026-01-01T00:00:00Z", c.http));
    ASSERT_FALSE(config) << c.http;
    EXPECT_NE(config.error().message.find(c.expected), std::string::npos)
        << c.http << "\n  got: " << config.error().message << "\n  want: " << c.expected;
  }
  auto no_hosts = config::parse_waypoint_config(vs(
      "bad", "2026-01-01T00:00:00Z", "  - route: [{destination: {host: a}}]\n", "  hosts: []\n"));
  ASSERT_FALSE(no_hosts);
  EXPECT_NE(no_hosts.error().message.find("spec.hosts: needs at least one host"),
            std::string::npos);
  auto bad_wildcard = config::parse_waypoint_config(vs("bad", "2026-01-01T00:00:00Z",
                                                       "  - route: [{destination: {host: a}}]\n",
                                                       "  hosts: [\"re*views\"]\n"));
  ASSERT_FALSE(bad_wildcard);
  EXPECT_NE(bad_wildcard.error().message.find("spec.hosts[0]: a wildcard must be"),
            std::string::npos);
}

TEST(VirtualServiceRouteTest, RulesApplyInTheOrderWrittenAfterTheServicesHttpRoutes) {
  // Each VirtualService's rules in the order written (a prefix before an exact match of the same
  // path wins), the oldest VirtualService first, those with a wildcard host after those naming
  // the service however old; an HTTPRoute of the service before them all.
  RouteTable table(config_from(
      vs("a-vs", "2026-01-01T00:00:00Z",
         "  - match: [{uri: {prefix: /x}}]\n" + to("first") + "  - match: [{uri: {exact: /x}}]\n" +
             to("second") + "  - match: [{uri: {prefix: /w}}]\n" + to("aw")) +
      vs("older-vs", "2025-01-01T00:00:00Z",
         "  - match: [{uri: {prefix: /old}}]\n" + to("older") +
             "  - match: [{uri: {prefix: /w/old}}]\n" + to("olderw")) +
      vs("wild", "2024-01-01T00:00:00Z",
         "  - match: [{uri: {prefix: /w}}]\n" + to("wildw") + "  - match: [{uri: {prefix: /z}}]\n" +
             to("wild"),
         "  hosts: [\"*.svc.cluster.local\"]\n") +
      "---\nkind: HTTPRoute\nmetadata: {name: hr, namespace: default}\nspec:\n"
      "  parentRefs: [{kind: Service, name: reviews, port: 9080}]\n"
      "  rules: [{matches: [{path: {type: Exact, value: /hr}}], backendRefs: [{name: hr, port: "
      "9080}]}]\n"));
  EXPECT_EQ(routed(table, request("/hr")), "hr");
  EXPECT_EQ(routed(table, request("/x")), "first");
  EXPECT_EQ(routed(table, request("/old/1")), "older");
  EXPECT_EQ(routed(table, request("/w/old")), "olderw");
  EXPECT_EQ(routed(table, request("/w/new")), "aw");
  EXPECT_EQ(routed(table, request("/z")), "wild");
  EXPECT_EQ(routed(table, request("/nothing")), "404");

  RouteTable wild_only(config_from(vs("wild", "2024-01-01T00:00:00Z",
                                      "  - match: [{uri: {prefix: /w}}]\n" + to("wild"),
                                      "  hosts: [\"*.svc.cluster.local\"]\n")));
  EXPECT_TRUE(wild_only.attached(kHost, 9080));
  EXPECT_EQ(routed(wild_only, request("/w")), "wild");
  EXPECT_EQ(routed(wild_only, request("/other")), "404");
  EXPECT_FALSE(wild_only.attached("reviews.default.example", 9080));
}

TEST(VirtualServiceRouteTest, WhatAMatchTests) {
  RouteTable table(config_from(vs("m", "2026-01-01T00:00:00Z", R"y(
  - match: [{uri: {prefix: /abc}, ignoreUriCase: true}]
    route: [{destination: {host: prefix}}]
  - match: [{uri: {exact: /Exact}}]
    route: [{destination: {host: exact}}]
  - match: [{headers: {x-user: {prefix: test}}, withoutHeaders: {x-block: {}}}]
    route: [{destination: {host: header}}]
  - match: [{withoutHeaders: {x-env: {exact: prod}}, uri: {prefix: /w}}]
    route: [{destination: {host: without}}]
  - match: [{method: {regex: "P(UT|OST)"}, scheme: {exact: http}, authority: {prefix: reviews}}]
    route: [{destination: {host: line}}]
  - match: [{queryParams: {v: {exact: "2"}}}]
    route: [{destination: {host: query}}]
  - match: [{port: 8080}]
    route: [{destination: {host: port}}]
  - match: [{sourceNamespace: frontend}]
    route: [{destination: {host: fromfrontend}}]
)y")));
  // uri.prefix is a string prefix, not per segment; ignoreUriCase.
  EXPECT_EQ(routed(table, request("/abcd")), "prefix");
  EXPECT_EQ(routed(table, request("/ABC/x")), "prefix");
  EXPECT_EQ(routed(table, request("/Exact")), "exact");
  EXPECT_EQ(routed(table, request("/exact")), "404");
  EXPECT_EQ(routed(table, request("/h", {{"x-user", "tester"}})), "header");
  EXPECT_EQ(routed(table, request("/h", {{"x-user", "tester"}, {"x-block", ""}})), "404");
  // withoutHeaders: a missing header reads as "", which is not "prod".
  EXPECT_EQ(routed(table, request("/w")), "without");
  EXPECT_EQ(routed(table, request("/w", {{"x-env", "prod"}})), "404");
  EXPECT_EQ(routed(table, request("/m", {}, "POST")), "line");
  EXPECT_EQ(routed(table, request("/m", {}, "GET")), "404");
  EXPECT_EQ(routed(table, request("/q?v=2")), "query");
  EXPECT_EQ(routed(table, request("/p"), 8080), "port");
  EXPECT_EQ(routed(table, request("/p"), 9080, "frontend"), "fromfrontend");
  EXPECT_EQ(routed(table, request("/p"), 9080, "default"), "404");
  // Attached on a port only where one of its matches can apply.
  RouteTable by_port(
      config_from(vs("p", "2026-01-01T00:00:00Z", "  - match: [{port: 8080}]\n" + to("port"))));
  EXPECT_TRUE(by_port.attached(kHost, 8080));
  EXPECT_FALSE(by_port.attached(kHost, 9080));
  // Bound only to gateways: nothing for the mesh.
  RouteTable ingress(
      config_from(vs("g", "2026-01-01T00:00:00Z", "  - route: [{destination: {host: x}}]\n",
                     "  hosts: [reviews]\n  gateways: [istio-system/ingress]\n")));
  EXPECT_FALSE(ingress.attached(kHost, 9080));
}

TEST(VirtualServiceRouteTest, RewritesAsEnvoysPrefixRewrite) {
  RouteTable table(config_from(vs("rw", "2026-01-01T00:00:00Z", R"y(
  - match: [{uri: {prefix: /api/}}]
    route: [{destination: {host: reviews}}]
    rewrite: {uri: /v2/, authority: internal:80}
  - match: [{uri: {exact: /exact}}]
    route: [{destination: {host: reviews}}]
    rewrite: {uri: /replaced}
  - match: [{uri: {regex: "/r/[a-z]+/.*"}}]
    route: [{destination: {host: reviews}}]
    rewrite: {uriRegexRewrite: {match: "^/r/([a-z]+)/(.*)$", rewrite: "/\\2/of/\\1"}}
  - match: [{uri: {prefix: /strip}}]
    route: [{destination: {host: reviews}}]
    rewrite: {uri: ""}
  - route: [{destination: {host: reviews}}]
    rewrite: {uri: /root}
)y")));
  auto rewritten = [&](std::string target) {
    SeededRandom random(1);
    auto head = request(std::move(target));
    auto d = route_request(table, kHost, 9080, head, random);
    EXPECT_EQ(d.kind, RouteDecision::Kind::kForward);
    return head.authority + " " + head.target;
  };
  EXPECT_EQ(rewritten("/api/items?x=1"), "internal:80 /v2/items?x=1");
  EXPECT_EQ(rewritten("/exact?q"), "reviews:9080 /replaced?q");
  EXPECT_EQ(rewritten("/r/abc/d/e"), "reviews:9080 /d/e/of/abc");
  // An empty uri is no rewrite (Istio leaves Envoy's prefix_rewrite unset).
  EXPECT_EQ(rewritten("/strip/x"), "reviews:9080 /strip/x");
  // No uri match is Envoy's prefix "/": that "/" is what is replaced.
  EXPECT_EQ(rewritten("/other"), "reviews:9080 /rootother");
}

TEST(VirtualServiceRouteTest, RedirectsAndDirectResponses) {
  RouteTable table(config_from(vs("rd", "2026-01-01T00:00:00Z", R"y(
  - match: [{uri: {exact: /keep}}]
    redirect: {uri: /new}
  - match: [{uri: {exact: /https}}]
    redirect: {scheme: https}
  - match: [{uri: {exact: /service-port}}]
    redirect: {authority: other, derivePort: FROM_REQUEST_PORT, redirectCode: 308}
  - match: [{uri: {exact: /default-port}}]
    redirect: {authority: other, derivePort: FROM_PROTOCOL_DEFAULT}
  - match: [{uri: {exact: /port}}]
    redirect: {port: 8443, scheme: https}
  - match: [{uri: {exact: /teapot}}]
    directResponse: {status: 418, body: {string: "I'm a teapot"}}
    headers: {response: {set: {x-direct: "yes"}}}
)y")));
  auto redirect = [&](std::string target, std::string authority) {
    SeededRandom random(1);
    auto head = request(std::move(target));
    head.authority = std::move(authority);
    auto d = route_request(table, kHost, 9080, head, random);
    EXPECT_EQ(d.kind, RouteDecision::Kind::kRedirect);
    return std::to_string(d.redirect.status) + " " + d.redirect.location;
  };
  // The Host's port is kept (Envoy), unless the scheme or the host changes.
  EXPECT_EQ(redirect("/keep?a=1", "reviews:9080"), "301 http://reviews:9080/new?a=1");
  EXPECT_EQ(redirect("/keep", "reviews"), "301 http://reviews/new");
  EXPECT_EQ(redirect("/https", "reviews:9080"), "301 https://reviews:9080/https");
  EXPECT_EQ(redirect("/https", "reviews:80"), "301 https://reviews/https");  // http's own port
  EXPECT_EQ(redirect("/service-port", "reviews"), "308 http://other:9080/service-port");
  EXPECT_EQ(redirect("/default-port", "reviews:9080"), "301 http://other/default-port");
  EXPECT_EQ(redirect("/port", "reviews"), "301 https://reviews:8443/port");

  SeededRandom random(1);
  auto head = request("/teapot");
  auto d = route_request(table, kHost, 9080, head, random);
  ASSERT_EQ(d.kind, RouteDecision::Kind::kDirect);
  EXPECT_EQ(d.selection.rule->direct_response->status, 418);
  EXPECT_EQ(d.selection.rule->direct_response->body, "I'm a teapot");
  http::HeaderList response;
  apply_response_filters(*d.selection.rule, nullptr, response);
  EXPECT_EQ(http::joined_header(response, "x-direct"), "yes");
}

TEST(VirtualServiceRouteTest, DestinationHeadersThenTheRules) {
  RouteTable table(config_from(vs("h", "2026-01-01T00:00:00Z", R"y(
  - route:
    - destination: {host: reviews}
      headers:
        request: {set: {x-who: destination, x-dest: "1", ":authority": reviews.internal}}
        response: {set: {x-resp: destination}, add: {x-dest-resp: "1"}}
    headers:
      request: {set: {x-who: rule}, remove: [x-drop]}
      response: {set: {x-resp: rule}}
)y")));
  SeededRandom random(1);
  auto head = request("/", {{"x-drop", "1"}});
  auto d = route_request(table, kHost, 9080, head, random);
  ASSERT_EQ(d.kind, RouteDecision::Kind::kForward);
  EXPECT_EQ(http::joined_header(head.headers, "x-who"), "rule");  // the rule's edit comes last
  EXPECT_EQ(head.authority, "reviews.internal");  // the destination's authority: a host rewrite
  EXPECT_FALSE(http::joined_header(head.headers, ":authority"));
  EXPECT_EQ(http::joined_header(head.headers, "x-dest"), "1");
  EXPECT_FALSE(http::joined_header(head.headers, "x-drop"));
  http::HeaderList response;
  apply_response_filters(*d.selection.rule, d.backend, response);
  EXPECT_EQ(http::joined_header(response, "x-resp"), "rule");
  EXPECT_EQ(http::joined_header(response, "x-dest-resp"), "1");
}

// corsPolicy, as Envoy's CORS filter applies a route's: an allowed origin's preflight is
// answered with the allow-* headers, its other requests get allow-origin (and expose-headers) on
// their answer; another origin's preflight is forwarded, or answered without CORS headers when
// unmatchedPreflights is IGNORE; a request without Origin is no CORS request.
TEST(VirtualServiceRouteTest, CorsPolicies) {
  auto cfg = config_from(vs("c", "2026-01-01T00:00:00Z", R"y(
  - match: [{uri: {prefix: /ignore}}]
    route: [{destination: {host: reviews}}]
    corsPolicy:
      allowOrigin: [https://legacy.example]
      allowMethods: [GET]
      unmatchedPreflights: IGNORE
  - route: [{destination: {host: reviews}}]
    corsPolicy:
      allowOrigins: [{exact: https://shop.example}, {regex: "https://.*[.]partner[.]example"}]
      allowMethods: [GET, POST]
      allowHeaders: [x-user, content-type]
      exposeHeaders: [x-request-id]
      maxAge: 24h
      allowCredentials: true
  - match: [{uri: {prefix: /any}}]
    route: [{destination: {host: reviews}}]
    corsPolicy: {allowOrigins: [{exact: "*"}], allowMethods: ["*"], allowHeaders: ["*"]}
)y"));
  const auto& cors = *cfg->routes[0].rules[1].cors;
  auto names = [](const CorsDecision& d) {
    std::string out;
    for (const auto& h : d.headers) out += h.name + "=" + h.value + ";";
    return out;
  };
  auto request = [](std::string_view method, std::optional<std::string> origin,
                    std::optional<std::string> asks = std::nullopt) {
    return CorsRequest{.method = method, .origin = std::move(origin), .request_method = asks};
  };
  auto pre = decide_cors(cors, request("OPTIONS", "https://shop.example", "POST"));
  EXPECT_TRUE(pre.preflight && pre.answer);
  EXPECT_EQ(names(pre),
            "access-control-allow-origin=https://shop.example;access-control-allow-credentials="
            "true;access-control-allow-methods=GET,POST;access-control-allow-headers=x-user,"
            "content-type;access-control-max-age=86400;");
  auto actual = decide_cors(cors, request("GET", "https://a.partner.example"));
  EXPECT_FALSE(actual.answer);
  EXPECT_EQ(names(actual),
            "access-control-allow-origin=https://a.partner.example;access-control-allow-"
            "credentials=true;access-control-expose-headers=x-request-id;");
  // An OPTIONS without (or with an empty) Access-Control-Request-Method is an ordinary request.
  EXPECT_FALSE(decide_cors(cors, request("OPTIONS", "https://shop.example")).answer);
  EXPECT_FALSE(decide_cors(cors, request("OPTIONS", "https://shop.example", "")).answer);
  auto other = decide_cors(cors, request("OPTIONS", "https://evil.example", "POST"));
  EXPECT_TRUE(other.preflight);
  EXPECT_FALSE(other.answer) << "forwarded";
  EXPECT_TRUE(other.headers.empty());
  EXPECT_TRUE(decide_cors(cors, request("GET", std::nullopt)).headers.empty());

  // IGNORE: another origin's preflight is answered, with all but allow-origin; allowOrigin "*"
  // (and an exact "*" in allowOrigins, as Envoy reads it) allows every origin; "*" methods and
  // headers answer with what the preflight asks for.
  const auto& ignore = *cfg->routes[0].rules[0].cors;
  auto ignored = decide_cors(ignore, request("OPTIONS", "https://evil.example", "PUT"));
  EXPECT_TRUE(ignored.answer);
  EXPECT_EQ(names(ignored), "access-control-allow-methods=GET;");
  EXPECT_EQ(names(decide_cors(ignore, request("GET", "https://legacy.example"))),
            "access-control-allow-origin=https://legacy.example;");
  const auto& any = *cfg->routes[0].rules[2].cors;
  auto asks = request("OPTIONS", "https://anyone.example", "DELETE");
  asks.request_headers = "x-a,x-b";
  EXPECT_EQ(names(decide_cors(any, asks)),
            "access-control-allow-origin=https://anyone.example;access-control-allow-methods="
            "DELETE;access-control-allow-headers=x-a,x-b;");
}

TEST(VirtualServiceRouteTest, WeightedDestinations) {
  RouteTable table(config_from(vs("w", "2026-01-01T00:00:00Z", R"y(
  - route:
    - {destination: {host: v1}, weight: 75}
    - {destination: {host: v2}, weight: 25}
    - {destination: {host: v3}}
)y")));
  std::map<std::string, int> seen;
  for (uint64_t seed = 0; seed < 4000; ++seed) {
    ++seen[routed(table, request("/"), 9080, "default", seed)];
  }
  EXPECT_NEAR(seen["v1"], 3000, 200);
  EXPECT_NEAR(seen["v2"], 1000, 200);
  EXPECT_EQ(seen.count("v3"), 0u);  // no weight among several: none of the traffic
}

}  // namespace
}  // namespace zt::waypoint::route
