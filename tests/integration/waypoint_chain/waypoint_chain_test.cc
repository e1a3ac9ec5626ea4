// Issue 6 acceptance through the real chain: client -> ztunnel (SOCKS5) -> HBONE -> bin/waypoint
// -> HBONE -> ztunnel -> backend, every hop a real process or server on loopback
// (tests/support/waypoint_chain.h; each test case its own slot of 127.0.65.0/24-127.0.69.0/24).
//
//  1. traffic split 90/10 within +-5 points over 1,000 requests; a header match overrides it
//  2. route timeout 504; retries 503,503,200 -> 200 in 3 attempts; outlier ejection and return;
//     connection-pool overflow 503 with the UO flag
//  3. fault abort 50 % (45-55 % of 1,000, backend untouched); fixed delay on every response
//  4. mirroring to a shadow service; a slow or failing shadow changes nothing for the primary
//  5. L7 authorization (path, method, header, principal; normalisation)
//  6. HTTP edge cases: pipelining, chunked, 100-continue, smuggling 400, 431; HTTP/2 and gRPC
//     (UNAVAILABLE retried over the HTTP/2 upstream by the default policy)
//  +  a destination not bound to the waypoint is refused; telemetry (metrics, access log)
#include "tests/support/waypoint_chain.h"

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <mutex>
#include <sstream>
#include <thread>

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "common/net/address.h"
#include "envoy/service/auth/v3/external_auth.grpc.pb.h"
#include "envoy/service/discovery/v3/discovery.grpc.pb.h"
#include "istio/v1/auth/ca.grpc.pb.h"
#include "tests/support/coro.h"
#include "tests/support/grpc_library.h"
#include "tests/support/hbone_client.h"
#include "tests/support/jwt_signer.h"
#include "tests/support/l7_config.h"
#include "waypoint/http1/http1.h"
#include "waypoint/http2/http2.h"

namespace zt::testing {
namespace {

using namespace std::chrono_literals;
using waypoint::Duplex;
using waypoint::HttpVersion;
using waypoint::Request;
using waypoint::Response;

constexpr const char* kClientPrincipal = "cluster.local/ns/default/sa/client";

// An HTTPRoute for Service `parent` (port 80) with `rules` (YAML list items, indented 2).
std::string route(const std::string& parent, const std::string& rules) {
  return fmt::format(R"(apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {0}, namespace: default, creationTimestamp: "2026-01-01T00:00:00Z"}}
spec:
  parentRefs: [{{group: "", kind: Service, name: {0}, port: 80}}]
  rules:
{1}
---
)",
                     parent, rules);
}

// A DestinationRule for service `host`; `policy` is its trafficPolicy's fields, a line each.
std::string destination_rule(const std::string& host, const std::string& policy) {
  std::string out = fmt::format(R"(apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: {0}, namespace: default}}
spec:
  host: {0}
  trafficPolicy:
)",
                                host);
  std::istringstream lines(policy);
  for (std::string line; std::getline(lines, line);) out += "    " + line + "\n";
  return out + "---\n";
}

// Everything for reviews goes to reviews-v1.
std::string reviews_to_v1(const std::string& extra_rule_fields = "") {
  return route("reviews", "  - backendRefs: [{name: reviews-v1, port: 80}]\n" + extra_rule_fields);
}

// The response bodies (backend names) of `n` GETs to `dst` over `connections` keep-alive
// connections in parallel; statuses counted in `statuses`.
struct Tally {
  std::map<std::string, int> bodies;
  std::map<int, int> statuses;
  std::vector<std::string> errors;
};

Tally run_requests(const tcp::endpoint& socks5, const tcp::endpoint& dst, int n, int connections,
                   const std::vector<std::string>& headers = {}, const std::string& target = "/") {
  std::vector<Tally> parts(connections);
  std::vector<std::thread> threads;
  for (int t = 0; t < connections; ++t) {
    threads.emplace_back([&, t] {
      int count = n / connections + (t < n % connections ? 1 : 0);
      std::unique_ptr<ChainHttpConnection> conn;
      for (int i = 0; i < count; ++i) {
        if (!conn || conn->done()) {
          auto c = ChainHttpConnection::open(socks5, dst);
          if (!c) {
            parts[t].errors.push_back(c.error().describe());
            return;
          }
          conn = std::move(*c);
        }
        auto r = conn->request("GET", target, headers);
        if (!r) {
          parts[t].errors.push_back(r.error().describe());
          conn.reset();
          continue;
        }
        parts[t].statuses[r->status]++;
        parts[t].bodies[r->body]++;
      }
    });
  }
  for (auto& th : threads) th.join();
  Tally all;
  for (auto& p : parts) {
    for (auto& [k, v] : p.bodies) all.bodies[k] += v;
    for (auto& [k, v] : p.statuses) all.statuses[k] += v;
    all.errors.insert(all.errors.end(), p.errors.begin(), p.errors.end());
  }
  return all;
}

std::string errors_of(const Tally& t) {
  std::string out;
  for (size_t i = 0; i < t.errors.size() && i < 5; ++i) out += t.errors[i] + "\n";
  return out;
}

// `n` GETs to reviews over 4 connections, all answered 200, by reviews-v1 between `low` and
// `high` times and by reviews-v2 otherwise.
void expect_v1_share(WaypointChain& chain, int n, int low, int high) {
  auto split = run_requests(chain.client().socks5, chain.vip("reviews"), n, 4);
  ASSERT_TRUE(split.errors.empty()) << errors_of(split);
  EXPECT_EQ(split.statuses[200], n);
  EXPECT_GE(split.bodies["reviews-v1"], low);
  EXPECT_LE(split.bodies["reviews-v1"], high);
  EXPECT_EQ(split.bodies["reviews-v1"] + split.bodies["reviews-v2"], n);
}

// A grpc++ server for `service` on the chain's grpc workload, and a channel to the grpc
// service's VIP through the client's ztunnel (grpc++ cannot speak SOCKS5: a forwarder does).
struct GrpcThroughChain {
  GrpcThroughChain(WaypointChain& chain, std::unique_ptr<grpc::Service> s) : service(std::move(s)) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort(net::format_endpoint(chain.endpoint("grpc")),
                             grpc::InsecureServerCredentials());
    builder.RegisterService(service.get());
    server = builder.BuildAndStart();
    forwarder = SocksForwarder::start(chain.client().socks5, chain.vip("grpc"));
    grpc::ChannelArguments args;
    args.SetString(GRPC_ARG_DEFAULT_AUTHORITY, "grpc.default.svc.cluster.local");
    channel = grpc::CreateCustomChannel(net::format_endpoint(forwarder->endpoint()),
                                        grpc::InsecureChannelCredentials(), args);
  }
  std::unique_ptr<grpc::Service> service;  // first: the server (and its handlers) go before it
  std::unique_ptr<grpc::Server> server;
  std::unique_ptr<SocksForwarder> forwarder;
  std::shared_ptr<grpc::Channel> channel;
};

class WaypointChainTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(bin_path("waypoint"))) {
      GTEST_SKIP() << "bin/waypoint is not built (waypoint/main.cc, the waypoint app, is missing)";
    }
  }

  void TearDown() override {
    // The processes' logs on failure, or always with ZT_CHAIN_VERBOSE=1.
    if (!chain_ || (!HasFailure() && std::getenv("ZT_CHAIN_VERBOSE") == nullptr)) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    auto tail = [](const std::string& text) {
      return text.size() > 6000 ? text.substr(text.size() - 6000) : text;
    };
    std::cerr << "client ztunnel running: " << chain_->client().daemon().running()
              << ", waypoint running: " << chain_->waypoint().running() << "\n";
    std::cerr << "---- client ztunnel output (tail) ----\n"
              << tail(chain_->client().daemon().output()) << "\n---- waypoint output (tail) ----\n"
              << tail(chain_->waypoint().output()) << "\n";
  }

  void start(int slot, const std::string& l7,
             std::set<Backend> backends = {Backend::kReviewsV1, Backend::kReviewsV2},
             bool intruder = false) {
    ChainOptions o;
    o.slot = slot;
    o.backends = std::move(backends);
    o.intruder = intruder;
    o.l7_config = l7;
    auto c = WaypointChain::start(std::move(o));
    ASSERT_TRUE(c) << c.error().describe();
    chain_ = std::move(*c);
  }

  Result<HttpResponse> get(const std::string& service, const std::string& target,
                           const std::vector<std::string>& headers = {}) {
    return chain_request(chain_->client().socks5, chain_->vip(service), "GET", target, headers);
  }

  double waypoint_metric(const std::string& family, std::vector<std::string> filters) {
    filters.push_back("reporter=\"waypoint\"");
    return metric_sum(chain_->waypoint_metrics_text(), family, filters);
  }
  // Whether the waypoint's istio_requests_total for `filters` reaches `count` within 5 s.
  bool requests_reach(std::vector<std::string> filters, double count) {
    return poll_until([&] { return waypoint_metric("istio_requests_total", filters) == count; },
                      5s);
  }

  // A chain whose grpc workload is served by `service` (grpc_ owns it).
  void start_grpc(int slot, std::unique_ptr<grpc::Service> service, const std::string& l7 = "") {
    ASSERT_NO_FATAL_FAILURE(start(slot, l7, {Backend::kGrpc}));
    grpc_ = std::make_unique<GrpcThroughChain>(*chain_, std::move(service));
    ASSERT_TRUE(grpc_->server);
  }

  std::unique_ptr<WaypointChain> chain_;
  std::unique_ptr<GrpcThroughChain> grpc_;
};

// ---- 1. traffic split
// ------------------------------------------------------------------------------

TEST_F(WaypointChainTest, WeightedSplitIsNinetyTenAndAHeaderMatchOverridesIt) {
  ASSERT_NO_FATAL_FAILURE(
      start(0, route("reviews", R"(  - matches: [{headers: [{name: end-user, value: jason}]}]
    backendRefs: [{name: reviews-v2, port: 80}]
  - backendRefs: [{name: reviews-v1, port: 80, weight: 90}, {name: reviews-v2, port: 80, weight: 10}])")));
  auto split = run_requests(chain_->client().socks5, chain_->vip("reviews"), 1000, 4);
  ASSERT_TRUE(split.errors.empty()) << errors_of(split);
  EXPECT_EQ(split.statuses[200], 1000);
  const int v1 = split.bodies["reviews-v1"];
  const int v2 = split.bodies["reviews-v2"];
  EXPECT_EQ(v1 + v2, 1000);
  EXPECT_GE(v1, 850) << "v1 " << v1 << " v2 " << v2;
  EXPECT_LE(v1, 950) << "v1 " << v1 << " v2 " << v2;
  EXPECT_EQ(chain_->backend("reviews-v1").hits(), v1);
  EXPECT_EQ(chain_->backend("reviews-v2").hits(), v2);

  auto jason =
      run_requests(chain_->client().socks5, chain_->vip("reviews"), 100, 2, {"end-user: jason"});
  ASSERT_TRUE(jason.errors.empty()) << errors_of(jason);
  EXPECT_EQ(jason.bodies["reviews-v2"], 100);
  EXPECT_EQ(chain_->backend("reviews-v1").hits(), v1) << "the header match must override the split";
}

// A VirtualService at the waypoint (what Istio users migrating from sidecars bring): its rules in
// the order written, a header route with a response edit, a direct response, a redirect, a
// fault, and a weighted split, each as the client sees it through both ztunnels.
TEST_F(WaypointChainTest, VirtualServiceRoutesAnswersRedirectsFaultsAndSplits) {
  ASSERT_NO_FATAL_FAILURE(start(21, R"(apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews-v2}, headers: {response: {set: {x-dest: v2}}}}]
    headers: {response: {set: {x-routed-by: virtualservice}}}
  - match: [{uri: {prefix: /from}, sourceNamespace: other}]
    directResponse: {status: 403, body: {string: other}}
  - match: [{uri: {prefix: /from}, sourceNamespace: default}]
    directResponse: {status: 200, body: {string: default}}
  - match: [{uri: {prefix: /teapot}}]
    directResponse: {status: 418, body: {string: short and stout}}
  - match: [{uri: {exact: /old}}]
    redirect: {uri: /new}
  - match: [{uri: {prefix: /faulty}}]
    fault: {abort: {httpStatus: 503, percentage: {value: 100}}}
    route: [{destination: {host: reviews-v1}}]
  - match: [{uri: {prefix: /ghost}}]
    route: [{destination: {host: ghost}}]
    corsPolicy: {allowOrigins: [{exact: "https://shop.example"}]}
  - match: [{uri: {prefix: /api}}]
    route: [{destination: {host: reviews-v1}}]
    corsPolicy:
      allowOrigins: [{exact: "https://shop.example"}]
      allowMethods: [GET, POST]
      maxAge: 1m
      exposeHeaders: [x-request-id]
  - route:
    - {destination: {host: reviews-v1}, weight: 90}
    - {destination: {host: reviews-v2}, weight: 10}
---
)"));
  auto& v1 = chain_->backend("reviews-v1");
  auto& v2 = chain_->backend("reviews-v2");
  // (Binomial, n = 500, p = 0.9: sd 6.7; 410..490 is 6 sd.)
  ASSERT_NO_FATAL_FAILURE(expect_v1_share(*chain_, 500, 410, 490));

  auto conn = ChainHttpConnection::open(chain_->client().socks5, chain_->vip("reviews"));
  ASSERT_TRUE(conn) << conn.error().describe();
  auto jason = (*conn)->request("GET", "/teapot", {"end-user: jason"});  // the first rule wins
  ASSERT_TRUE(jason) << jason.error().describe();
  EXPECT_EQ(jason->status, 200);
  EXPECT_EQ(jason->body, "reviews-v2");
  EXPECT_EQ(jason->headers["x-routed-by"], "virtualservice");
  EXPECT_EQ(jason->headers["x-dest"], "v2");  // the destination's own edit

  v1.reset_counts();
  v2.reset_counts();
  auto teapot = (*conn)->request("GET", "/teapot/1");
  ASSERT_TRUE(teapot) << teapot.error().describe();
  EXPECT_EQ(teapot->status, 418);
  EXPECT_EQ(teapot->body, "short and stout");
  auto old = (*conn)->request("GET", "/old?q=1");
  ASSERT_TRUE(old) << old.error().describe();
  EXPECT_EQ(old->status, 301);
  // (the Host's port is kept; 80 is http's own, so the Location has none)
  EXPECT_EQ(old->headers["location"],
            "http://" + chain_->vip("reviews").address().to_string() + "/new?q=1");
  // sourceNamespace is the client's, from its identity (the client pod is in "default").
  auto from = (*conn)->request("GET", "/from");
  ASSERT_TRUE(from) << from.error().describe();
  EXPECT_EQ(from->status, 200);
  EXPECT_EQ(from->body, "default");
  auto faulty = (*conn)->request("GET", "/faulty");
  ASSERT_TRUE(faulty) << faulty.error().describe();
  EXPECT_EQ(faulty->status, 503);
  EXPECT_EQ(faulty->body, "fault filter abort");
  // CORS: the allowed origin's preflight is answered by the waypoint, its request gets the
  // allow-origin header on the backend's answer; another origin's preflight goes to the backend.
  auto preflight =
      (*conn)->request("OPTIONS", "/api/items",
                       {"Origin: https://shop.example", "Access-Control-Request-Method: POST"});
  ASSERT_TRUE(preflight) << preflight.error().describe();
  EXPECT_EQ(preflight->status, 200);
  EXPECT_EQ(preflight->headers["access-control-allow-origin"], "https://shop.example");
  EXPECT_EQ(preflight->headers["access-control-allow-methods"], "GET,POST");
  EXPECT_EQ(preflight->headers["access-control-max-age"], "60");
  EXPECT_EQ(v1.hits() + v2.hits(), 0) << "answered by the waypoint, no backend asked";
  auto cors = (*conn)->request("GET", "/api/items", {"Origin: https://shop.example"});
  ASSERT_TRUE(cors) << cors.error().describe();
  EXPECT_EQ(cors->status, 200);
  EXPECT_EQ(cors->body, "reviews-v1");
  EXPECT_EQ(cors->headers["access-control-allow-origin"], "https://shop.example");
  EXPECT_EQ(cors->headers["access-control-expose-headers"], "x-request-id");
  auto foreign =
      (*conn)->request("OPTIONS", "/api/items",
                       {"Origin: https://evil.example", "Access-Control-Request-Method: POST"});
  ASSERT_TRUE(foreign) << foreign.error().describe();
  EXPECT_EQ(foreign->body, "reviews-v1") << "forwarded";
  EXPECT_EQ(foreign->headers.count("access-control-allow-origin"), 0u);
  // The waypoint's own error answers carry the CORS headers too (a service that does not exist:
  // 500 NC, after CORS, as Envoy's router answers it), and its preflight is answered.
  auto ghost = (*conn)->request("GET", "/ghost", {"Origin: https://shop.example"});
  ASSERT_TRUE(ghost) << ghost.error().describe();
  EXPECT_EQ(ghost->status, 500);
  EXPECT_EQ(ghost->headers["access-control-allow-origin"], "https://shop.example");
  auto ghost_preflight = (*conn)->request(
      "OPTIONS", "/ghost", {"Origin: https://shop.example", "Access-Control-Request-Method: GET"});
  ASSERT_TRUE(ghost_preflight) << ghost_preflight.error().describe();
  EXPECT_EQ(ghost_preflight->status, 200);
  EXPECT_EQ(v1.hits(), 2);
}

// DestinationRule subsets named by a VirtualService: a weighted split and a header route
// between subsets of one service, each reaching only its member workloads (the SubsetEndpoints
// meshd would send); a subset without members has no healthy upstream, an unknown one is 503 NC.
TEST_F(WaypointChainTest, VirtualServiceSubsetsSplitOneServicesEndpoints) {
  ASSERT_NO_FATAL_FAILURE(start(22, R"(apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
  - {name: v3, labels: {version: v3}}
---
apiVersion: ambientmesh.io/v1
kind: SubsetEndpoints
metadata: {name: reviews, namespace: default}
spec:
  subsets:
  - {name: v1, workloads: [default/reviews-v1]}
  - {name: v2, workloads: [default/reviews-v2]}
  - {name: v3, workloads: []}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - match: [{uri: {prefix: /v3}}]
    route: [{destination: {host: reviews, subset: v3}}]
  - match: [{uri: {prefix: /v9f}}]
    fault: {abort: {httpStatus: 418, percentage: {value: 100}}}
    route: [{destination: {host: reviews, subset: v9}}]
  - match: [{uri: {prefix: /v9}}]
    route: [{destination: {host: reviews, subset: v9}}]
  - route:
    - {destination: {host: reviews, subset: v1}, weight: 75}
    - {destination: {host: reviews, subset: v2}, weight: 25}
---
)"));
  // (Binomial, n = 400, p = 0.75: sd 8.7; 250..350 is 5.8 sd.)
  ASSERT_NO_FATAL_FAILURE(expect_v1_share(*chain_, 400, 250, 350));

  auto jason =
      run_requests(chain_->client().socks5, chain_->vip("reviews"), 60, 2, {"end-user: jason"});
  ASSERT_TRUE(jason.errors.empty()) << errors_of(jason);
  EXPECT_EQ(jason.bodies["reviews-v2"], 60) << "subset v2 has only reviews-v2";

  auto conn = ChainHttpConnection::open(chain_->client().socks5, chain_->vip("reviews"));
  ASSERT_TRUE(conn) << conn.error().describe();
  auto none = (*conn)->request("GET", "/v3");
  ASSERT_TRUE(none) << none.error().describe();
  EXPECT_EQ(none->status, 503);
  EXPECT_EQ(none->body, "no healthy upstream");
  auto aborted = (*conn)->request("GET", "/v9f");  // (the fault comes before the subset)
  ASSERT_TRUE(aborted) << aborted.error().describe();
  EXPECT_EQ(aborted->status, 418);
  auto unknown = (*conn)->request("GET", "/v9");
  ASSERT_TRUE(unknown) << unknown.error().describe();
  EXPECT_EQ(unknown->status, 503);
  EXPECT_TRUE(poll_until(
      [&] { return waypoint_metric("istio_requests_total", {"response_flags=\"NC\""}) == 1; }, 5s));
}

// ---- 2. resilience
// -----------------------------------------------------------------------------------

TEST_F(WaypointChainTest, RouteTimeoutAnswers504InTimeAndRetriesTurn503sInto200) {
  ASSERT_NO_FATAL_FAILURE(start(1, reviews_to_v1("    timeouts: {request: 300ms}\n")));
  auto& v1 = chain_->backend("reviews-v1");
  v1.script({{200, 3s}});
  auto slow = get("reviews", "/slow");
  ASSERT_TRUE(slow) << slow.error().describe();
  EXPECT_EQ(slow->status, 504) << slow->body;
  EXPECT_GE(slow->elapsed, 250ms);
  EXPECT_LT(slow->elapsed, 1500ms) << "the route timeout is 300ms";
  EXPECT_TRUE(poll_until(
      [&] {
        return waypoint_metric("istio_requests_total",
                               {"response_code=\"504\"", "response_flags=\"UT\""}) == 1;
      },
      5s))
      << chain_->waypoint_metrics_text();
  auto fast = get("reviews", "/fast");
  ASSERT_TRUE(fast) << fast.error().describe();
  EXPECT_EQ(fast->status, 200);
  EXPECT_LT(fast->elapsed, 1000ms);

  // Retries (Istio HTTPRetry on the rule: 2 retries on 5xx): 503, 503, 200 -> 200.
  ASSERT_TRUE(chain_->set_config(reviews_to_v1(
      "    retries: {attempts: 2, retryOn: \"5xx\"}\n    timeouts: {request: 10s}\n")));
  v1.reset_counts();
  v1.script({{503, 0ms}, {503, 0ms}, {200, 0ms}});
  auto retried = get("reviews", "/retry");
  ASSERT_TRUE(retried) << retried.error().describe();
  EXPECT_EQ(retried->status, 200);
  EXPECT_EQ(retried->body, "reviews-v1");
  EXPECT_EQ(v1.hits(), 3) << "3 backend attempts";

  // Exhausted: 503 x3 -> the last 503 comes back, still 3 attempts.
  v1.reset_counts();
  v1.script({{503, 0ms}, {503, 0ms}, {503, 0ms}});
  auto exhausted = get("reviews", "/exhausted");
  ASSERT_TRUE(exhausted) << exhausted.error().describe();
  EXPECT_EQ(exhausted->status, 503);
  EXPECT_EQ(v1.hits(), 3);
}

TEST_F(WaypointChainTest, FailingEndpointIsEjectedAndReturnsAfterItsEjectionTime) {
  ASSERT_NO_FATAL_FAILURE(
      start(2, route("reviews", "  - backendRefs: [{name: reviews, port: 80}]\n") +
                   destination_rule("reviews",
                                    "loadBalancer: {simple: ROUND_ROBIN}\n"
                                    "outlierDetection: {consecutive5xxErrors: 2, interval: 200ms, "
                                    "baseEjectionTime: 2s, maxEjectionPercent: 100}")));
  auto& v1 = chain_->backend("reviews-v1");
  auto& v2 = chain_->backend("reviews-v2");
  v1.set_default({503, 0ms});
  // Enough requests for v1 to fail twice in a row and be ejected.
  auto first = run_requests(chain_->client().socks5, chain_->vip("reviews"), 12, 1);
  ASSERT_TRUE(first.errors.empty()) << errors_of(first);
  const int v1_before = v1.hits();
  EXPECT_GE(v1_before, 2);
  auto ejected = run_requests(chain_->client().socks5, chain_->vip("reviews"), 20, 1);
  ASSERT_TRUE(ejected.errors.empty()) << errors_of(ejected);
  EXPECT_EQ(v1.hits(), v1_before) << "an ejected endpoint gets no traffic";
  EXPECT_EQ(ejected.statuses[200], 20);
  EXPECT_GE(metric_sum(chain_->waypoint_metrics_text(), "waypoint_outlier_ejections_total"), 1);

  // Healthy again; after the ejection time (2 s) it is back in rotation.
  v1.set_default({200, 0ms});
  std::this_thread::sleep_for(2500ms);
  const int v2_before = v2.hits();
  auto back = run_requests(chain_->client().socks5, chain_->vip("reviews"), 20, 1);
  ASSERT_TRUE(back.errors.empty()) << errors_of(back);
  EXPECT_EQ(back.statuses[200], 20);
  EXPECT_GT(v1.hits(), v1_before) << "the endpoint returns after its ejection time";
  EXPECT_GT(v2.hits(), v2_before);
}

TEST_F(WaypointChainTest, ConnectionPoolOverflowAnswers503WithTheOverloadFlag) {
  ASSERT_NO_FATAL_FAILURE(start(
      3, reviews_to_v1() + destination_rule("reviews-v1",
                                            "connectionPool: {tcp: {maxConnections: 1}, http: "
                                            "{http1MaxPendingRequests: 1, maxRetries: 0}}")));
  chain_->backend("reviews-v1").set_default({200, 1500ms});
  constexpr int kClients = 5;
  std::vector<Result<HttpResponse>> got(kClients, failf("not run"));
  std::vector<std::thread> threads;
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([&, i] { got[i] = get("reviews", "/pool"); });
  }
  for (auto& t : threads) t.join();
  int ok = 0, overflow = 0;
  for (auto& r : got) {
    ASSERT_TRUE(r) << r.error().describe();
    if (r->status == 200) ++ok;
    if (r->status == 503) {
      ++overflow;
      EXPECT_LT(r->elapsed, 1000ms) << "an overflow is answered at once";
      EXPECT_EQ(r->header("x-envoy-overloaded"), "true");
    }
  }
  EXPECT_GE(ok, 1);
  EXPECT_GE(overflow, 1);
  EXPECT_EQ(ok + overflow, kClients);
  EXPECT_LE(chain_->backend("reviews-v1").hits(), 2) << "1 connection + 1 pending at most";
  EXPECT_TRUE(poll_until(
      [&] {
        return waypoint_metric("istio_requests_total",
                               {"response_code=\"503\"", "response_flags=\"UO\""}) >= overflow;
      },
      5s))
      << chain_->waypoint_metrics_text();
}

// A client that closes its connection while its request waits for the upstream has gone away, as
// Envoy takes an HTTP/1.1 client's FIN: the waypoint resets the upstream request at once, so the
// one connection the pool allows is free for the next request, and records the request as 0 DC.
TEST_F(WaypointChainTest, AClientThatClosesWhileItsRequestWaitsFreesTheUpstreamAtOnce) {
  ASSERT_NO_FATAL_FAILURE(start(
      14,
      reviews_to_v1() +
          destination_rule("reviews-v1",
                           "connectionPool: {tcp: {maxConnections: 1}, http: {maxRetries: 0}}"),
      {Backend::kReviewsV1}));
  auto& backend = chain_->backend("reviews-v1");
  backend.script({{200, 8000ms}});  // the first request is held, later ones answered at once
  {
    auto conn = ChainHttpConnection::open(chain_->client().socks5, chain_->vip("reviews"));
    ASSERT_TRUE(conn) << conn.error().describe();
    ASSERT_TRUE((*conn)->write("GET /abandoned HTTP/1.1\r\nHost: reviews\r\n\r\n"));
    ASSERT_TRUE(poll_until([&] { return backend.hits() == 1; }, 5s));
  }  // closed
  auto after = get("reviews", "/after");
  ASSERT_TRUE(after) << after.error().describe();
  EXPECT_EQ(after->status, 200);
  EXPECT_LT(after->elapsed, 3000ms) << "the abandoned request still held the only connection";
  EXPECT_EQ(backend.hits(), 2);
  EXPECT_TRUE(requests_reach({"response_code=\"0\"", "response_flags=\"DC\""}, 1))
      << chain_->waypoint_metrics_text();
  EXPECT_TRUE(requests_reach({"response_code=\"200\""}, 1)) << chain_->waypoint_metrics_text();
}

// ---- 3. fault injection
// ------------------------------------------------------------------------------

TEST_F(WaypointChainTest, FaultAbortsHalfWithoutTouchingTheBackendAndDelaysEveryResponse) {
  ASSERT_NO_FATAL_FAILURE(
      start(4, reviews_to_v1("    fault: {abort: {httpStatus: 503, percentage: {value: 50}}}\n")));
  auto& v1 = chain_->backend("reviews-v1");
  auto t = run_requests(chain_->client().socks5, chain_->vip("reviews"), 1000, 4);
  ASSERT_TRUE(t.errors.empty()) << errors_of(t);
  const int aborted = t.statuses[503];
  // (Binomial, n = 1000, p = 0.5: sd 15.8; 400..600 is 6.3 sd, and still tells 50 % from 40 %.)
  EXPECT_GE(aborted, 400);
  EXPECT_LE(aborted, 600);
  EXPECT_EQ(aborted + t.statuses[200], 1000);
  EXPECT_EQ(v1.hits(), t.statuses[200]) << "an aborted request never reaches the backend";
  EXPECT_TRUE(poll_until(
      [&] { return waypoint_metric("istio_requests_total", {"response_flags=\"FI\""}) == aborted; },
      5s));

  ASSERT_TRUE(chain_->set_config(
      reviews_to_v1("    fault: {delay: {fixedDelay: 300ms, percentage: {value: 100}}}\n")));
  v1.reset_counts();
  auto conn = ChainHttpConnection::open(chain_->client().socks5, chain_->vip("reviews"));
  ASSERT_TRUE(conn) << conn.error().describe();
  for (int i = 0; i < 5; ++i) {
    auto r = (*conn)->request("GET", "/delayed");
    ASSERT_TRUE(r) << r.error().describe();
    EXPECT_EQ(r->status, 200);
    EXPECT_GE(r->elapsed, 290ms);
    EXPECT_LT(r->elapsed, 2000ms);
  }
  EXPECT_EQ(v1.hits(), 5);
}

// ---- 4. mirroring
// -------------------------------------------------------------------------------------

TEST_F(WaypointChainTest, MirrorCopiesToTheShadowAndASlowOrFailingShadowChangesNothing) {
  const std::string mirrored = route("reviews", R"(  - backendRefs: [{name: reviews-v1, port: 80}]
    filters:
    - type: RequestMirror
      requestMirror: {backendRef: {name: shadow, port: 80}})");
  ASSERT_NO_FATAL_FAILURE(start(5, mirrored, {Backend::kReviewsV1, Backend::kShadow}));
  auto& shadow = chain_->backend("shadow");
  auto& v1 = chain_->backend("reviews-v1");

  // A slow shadow (2 s).
  shadow.set_default({200, 2000ms});
  auto conn = ChainHttpConnection::open(chain_->client().socks5, chain_->vip("reviews"));
  ASSERT_TRUE(conn) << conn.error().describe();
  for (int i = 0; i < 5; ++i) {
    auto r = (*conn)->request("GET", fmt::format("/m{}", i));
    ASSERT_TRUE(r) << r.error().describe();
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->body, "reviews-v1");
    EXPECT_LT(r->elapsed, 700ms) << "the primary does not wait for the shadow";
  }
  EXPECT_EQ(v1.hits(), 5);
  EXPECT_TRUE(poll_until([&] { return shadow.hits() == 5; }, 5s)) << shadow.hits();
  auto seen = shadow.requests();
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen[0].target, "/m0");
  EXPECT_NE(seen[0].headers["host"].find("-shadow"), std::string::npos)
      << "Envoy's mirror host is <host>-shadow: " << seen[0].headers["host"];

  // A failing shadow (500 at once).
  shadow.set_default({500, 0ms});
  shadow.reset_counts();
  for (int i = 0; i < 5; ++i) {
    auto r = (*conn)->request("GET", "/f");
    ASSERT_TRUE(r) << r.error().describe();
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->body, "reviews-v1");
    EXPECT_LT(r->elapsed, 700ms);
  }
  EXPECT_TRUE(poll_until([&] { return shadow.hits() == 5; }, 5s)) << shadow.hits();
}

// ---- 5. L7 authorization
// -------------------------------------------------------------------------------

TEST_F(WaypointChainTest, AuthorizationByPathMethodHeaderAndPrincipalWithNormalisation) {
  const std::string policies =
      testing::authorization_policy("deny-admin", "reviews", "DENY",
                                    R"(  - to: [{operation: {paths: ["/admin", "/admin/*"]}}]
  - to: [{operation: {methods: ["DELETE"]}}]
  - when: [{key: "request.headers[x-evil]", values: ["yes"]}]
)") +
      testing::authorization_policy(
          "allow-client", "reviews", "ALLOW",
          R"(  - from: [{source: {principals: ["cluster.local/ns/default/sa/client"]}}]
)");
  ASSERT_NO_FATAL_FAILURE(start(6, reviews_to_v1() + policies, {Backend::kReviewsV1}, true));
  auto& v1 = chain_->backend("reviews-v1");
  struct Case {
    std::string method, target;
    std::vector<std::string> headers;
    int want;
  };
  const std::vector<Case> cases = {
      {"GET", "/public", {}, 200},
      {"GET", "/admin", {}, 403},
      {"GET", "/admin/users", {}, 403},
      {"GET", "/a/../admin", {}, 403},
      {"GET", "/public/../admin", {}, 403},
      {"GET", "/%61dmin", {}, 403},
      {"GET", "/./admin", {}, 403},
      {"GET", "/Admin", {}, 200},  // paths are case-sensitive
      {"DELETE", "/public", {}, 403},
      {"POST", "/public", {}, 200},
      {"GET", "/public", {"x-evil: yes"}, 403},
      {"GET", "/public", {"x-evil: no"}, 200},
      {"GET", "/public%00", {}, 400},  // an encoded NUL is refused before any policy
  };
  int allowed = 0;
  for (const auto& c : cases) {
    SCOPED_TRACE(c.method + " " + c.target);
    auto r = chain_request(chain_->client().socks5, chain_->vip("reviews"), c.method, c.target,
                           c.headers);
    ASSERT_TRUE(r) << r.error().describe();
    EXPECT_EQ(r->status, c.want) << r->body;
    if (c.want == 403) {
      EXPECT_EQ(r->body, "RBAC: access denied");
    }
    if (r->status == 200) ++allowed;
  }
  EXPECT_EQ(v1.hits(), allowed) << "a denied request never reaches the backend";

  // What is forwarded is the normalised path the policy saw.
  v1.reset_counts();
  auto n = get("reviews", "/public/./x/../y?q=1");
  ASSERT_TRUE(n) << n.error().describe();
  EXPECT_EQ(n->status, 200);
  ASSERT_EQ(v1.requests().size(), 1u);
  EXPECT_EQ(v1.requests()[0].target, "/public/y?q=1");

  // Doubled slashes and encoded slashes: Istio's default normalisation (BASE) neither merges
  // nor decodes them, so they are not "/admin" and pass; what the backend gets is exactly the
  // path the policy checked (escapes upper-cased), never "/admin".
  const std::vector<std::pair<std::string, std::string>> kept = {
      {"//admin", "//admin"}, {"/admin%2Fx", "/admin%2Fx"}, {"/admin%2fx", "/admin%2Fx"}};
  for (const auto& [target, forwarded] : kept) {
    SCOPED_TRACE(target);
    v1.reset_counts();
    auto r = get("reviews", target);
    ASSERT_TRUE(r) << r.error().describe();
    EXPECT_EQ(r->status, 200);
    ASSERT_EQ(v1.requests().size(), 1u);
    EXPECT_EQ(v1.requests()[0].target, forwarded);
  }

  // Another principal is not allowed.
  v1.reset_counts();
  auto other = chain_request(chain_->intruder().socks5, chain_->vip("reviews"), "GET", "/public");
  ASSERT_TRUE(other) << other.error().describe();
  EXPECT_EQ(other->status, 403);
  EXPECT_EQ(v1.hits(), 0);
}

// RequestAuthentication + AuthorizationPolicy, as Istio's "require a JWT" task sets them up: a
// request without a token is denied by the ALLOW policy (403), a bad token is refused by the
// authentication (401), a good one reaches the backend without its Authorization header, and a
// claim decides who may see /admin.
TEST_F(WaypointChainTest, JwtRequestAuthenticationAndRequestPrincipals) {
  const testing::JwtSigner key(testing::JwtSigner::Kind::kRsa, "chain-key");
  const std::string authn = fmt::format(R"(apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: jwt, namespace: default}}
spec:
  targetRefs: [{{kind: Service, group: "", name: reviews}}]
  jwtRules:
  - issuer: https://issuer.example
    audiences: [reviews]
    jwks: '{}'
---
)",
                                        key.jwks());
  const std::string policies = testing::authorization_policy(
      "require-jwt", "reviews", "ALLOW",
      R"(  - from: [{source: {requestPrincipals: ["https://issuer.example/*"]}}]
    to: [{operation: {notPaths: ["/admin"]}}]
  - from: [{source: {requestPrincipals: ["https://issuer.example/*"]}}]
    to: [{operation: {paths: ["/admin"]}}]
    when: [{key: "request.auth.claims[groups]", values: ["admins"]}]
)");
  ASSERT_NO_FATAL_FAILURE(start(18, reviews_to_v1() + authn + policies, {Backend::kReviewsV1}));
  auto& v1 = chain_->backend("reviews-v1");
  const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  const nlohmann::json alice{{"iss", "https://issuer.example"},
                             {"sub", "alice"},
                             {"aud", "reviews"},
                             {"groups", {"users"}},
                             {"exp", now + 600}};
  auto with = [&](const char* key_name, nlohmann::json value) {
    auto c = alice;
    c[key_name] = std::move(value);
    return c;
  };
  const testing::JwtSigner stranger(testing::JwtSigner::Kind::kRsa, "chain-key");
  struct Case {
    std::string name, target, token;
    int want;
    std::string body;
  };
  const std::vector<Case> cases = {
      {"no token", "/public", "", 403, "RBAC: access denied"},
      {"good token", "/public", key.sign(alice), 200, "reviews-v1"},
      {"as a query parameter", "/public?access_token=" + key.sign(alice), "", 200, "reviews-v1"},
      {"not an admin", "/admin", key.sign(alice), 403, "RBAC: access denied"},
      {"an admin", "/admin", key.sign(with("groups", {"admins"})), 200, "reviews-v1"},
      {"another key", "/public", stranger.sign(alice), 401, "Jwt verification fails"},
      {"expired", "/public", key.sign(with("exp", now - 3600)), 401, "Jwt is expired"},
      {"another audience", "/public", key.sign(with("aud", "ratings")), 401,
       "Audiences in Jwt are not allowed"},
      {"another issuer", "/public", key.sign(with("iss", "https://evil.example")), 401,
       "Jwt issuer is not configured"},
      {"garbage", "/public", "not-a-jwt", 401,
       "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections"},
  };
  int reached = 0;
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    std::vector<std::string> headers;
    if (!c.token.empty()) headers.push_back("Authorization: Bearer " + c.token);
    v1.reset_counts();
    auto r =
        chain_request(chain_->client().socks5, chain_->vip("reviews"), "GET", c.target, headers);
    ASSERT_TRUE(r) << r.error().describe();
    EXPECT_EQ(r->status, c.want) << r->body;
    EXPECT_EQ(r->body, c.body);
    if (c.want == 401) {
      const auto challenge = r->header("www-authenticate");
      EXPECT_TRUE(challenge.starts_with("Bearer realm=\"http://") &&
                  challenge.ends_with(c.target + "\", error=\"invalid_token\""))
          << "Envoy's challenge: " << challenge;
    }
    if (c.want != 200) {
      EXPECT_EQ(v1.hits(), 0) << "a refused request never reaches the backend";
      continue;
    }
    ++reached;
    ASSERT_EQ(v1.requests().size(), 1u);
    EXPECT_EQ(v1.requests()[0].headers.count("authorization"), 0u)
        << "the token is not forwarded (forwardOriginalToken: false)";
  }
  EXPECT_EQ(reached, 3);
}

// A CUSTOM policy for Service reviews asking `provider` about /protected/*, and the MeshConfig
// ConfigMap with `providers` (MeshConfig extensionProviders items, indented 4).
std::string custom_policy(const std::string& provider, const std::string& providers) {
  return fmt::format(R"(apiVersion: v1
kind: ConfigMap
metadata: {{name: istio, namespace: istio-system}}
data:
  mesh: |-
    extensionProviders:
{1}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: ext-authz, namespace: default}}
spec:
  targetRefs: [{{kind: Service, group: "", name: reviews}}]
  action: CUSTOM
  provider: {{name: {0}}}
  rules:
  - to: [{{operation: {{paths: ["/protected/*"]}}}}]
---
)",
                     provider, providers);
}

// An authorizer's refusal as the client gets it: the authorizer's status and body, and its
// x-ext-authz-check-result: denied.
void expect_denied(const Result<HttpResponse>& r, int status, const std::string& body) {
  ASSERT_TRUE(r) << r.error().describe();
  EXPECT_EQ(r->status, status);
  EXPECT_EQ(r->body, body);
  EXPECT_EQ(r->header("x-ext-authz-check-result"), "denied");
}

// The HTTP provider of Istio's ext-authz sample, behind the chain's ext-authz service.
std::string http_provider(const std::string& extra = "") {
  return R"(    - name: sample-http
      envoyExtAuthzHttp:
        service: ext-authz.default.svc.cluster.local
        port: 80
        pathPrefix: /check
        includeRequestHeadersInCheck: ["x-ext-authz"]
        headersToUpstreamOnAllow: ["x-ext-authz-check-*"]
        headersToDownstreamOnAllow: ["x-ext-authz-decision"]
        headersToDownstreamOnDeny: ["x-ext-authz-check-result"]
)" + extra;
}

TEST_F(WaypointChainTest, CustomPolicyAsksAnHttpAuthorizerWhichAllowsDeniesOrFails) {
  const std::string l7 = reviews_to_v1() + custom_policy("sample-http", http_provider());
  ASSERT_NO_FATAL_FAILURE(start(19, l7, {Backend::kReviewsV1, Backend::kExtAuthz}));
  auto& v1 = chain_->backend("reviews-v1");
  auto& authz = chain_->backend("ext-authz");
  // As Istio's sample: allow with header `x-ext-authz: allow`.
  authz.set_responder([](const SeenRequest& r) {
    auto it = r.headers.find("x-ext-authz");
    if (it != r.headers.end() && it->second == "allow") {
      return ScriptStep{.status = 200,
                        .headers = {{"x-ext-authz-check-result", "allowed"},
                                    {"x-ext-authz-decision", "yes"},
                                    {"x-not-for-upstream", "1"},
                                    {"x-envoy-auth-headers-to-remove", "x-remove-me"}}};
    }
    return ScriptStep{.status = 403,
                      .headers = {{"x-ext-authz-check-result", "denied"}, {"x-hidden", "1"}},
                      .body = "denied by ext_authz for not found header `x-ext-authz: allow`"};
  });

  // The admin config dump names the providers the waypoint has.
  const auto dump = chain_->config_dump();
  EXPECT_NE(dump.find(R"("name": "sample-http")"), std::string::npos) << dump;
  EXPECT_NE(dump.find(R"("kind": "envoyExtAuthzHttp")"), std::string::npos) << dump;

  // Not matched by the CUSTOM policy: the authorizer is not asked.
  auto r = get("reviews", "/public");
  ASSERT_TRUE(r) << r.error().describe();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(authz.hits(), 0);

  // Allowed: the check carried the method, the prefixed path, the included header and not the
  // others; the request goes on with the authorizer's headers set and removed as it said.
  v1.reset_counts();
  r = get("reviews", "/protected/a?x=1",
          {"x-ext-authz: allow", "x-remove-me: 1", "x-private: secret"});
  ASSERT_TRUE(r) << r.error().describe();
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(r->body, "reviews-v1");
  EXPECT_EQ(r->header("x-ext-authz-decision"), "yes") << "headersToDownstreamOnAllow";
  ASSERT_EQ(authz.requests().size(), 1u);
  const auto check = authz.requests()[0];
  EXPECT_EQ(check.method, "GET");
  EXPECT_EQ(check.target, "/check/protected/a?x=1");
  EXPECT_EQ(check.headers.count("x-ext-authz"), 1u);
  EXPECT_EQ(check.headers.count("x-private"), 0u) << "only the headers named are sent";
  EXPECT_EQ(check.headers.count("x-remove-me"), 0u);
  EXPECT_EQ(check.headers.at("host"), net::format_endpoint(chain_->vip("reviews")))
      << "the original Host";
  ASSERT_EQ(v1.requests().size(), 1u);
  const auto forwarded = v1.requests()[0];
  EXPECT_EQ(forwarded.headers.count("x-ext-authz-check-result"), 1u);
  EXPECT_EQ(forwarded.headers.at("x-ext-authz-check-result"), "allowed");
  EXPECT_EQ(forwarded.headers.count("x-not-for-upstream"), 0u);
  EXPECT_EQ(forwarded.headers.count("x-remove-me"), 0u) << "x-envoy-auth-headers-to-remove";
  EXPECT_EQ(forwarded.headers.count("x-private"), 1u);

  // Denied: the authorizer's status, body and the headers headersToDownstreamOnDeny names.
  v1.reset_counts();
  r = get("reviews", "/protected/b", {"x-ext-authz: deny"});
  expect_denied(r, 403, "denied by ext_authz for not found header `x-ext-authz: allow`");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->header("x-hidden"), "");
  EXPECT_EQ(v1.hits(), 0) << "a denied request never reaches the backend";
  EXPECT_TRUE(poll_until(
      [&] {
        for (const auto& l : chain_->access_lines()) {
          if (l.find("path=\"/protected/b\"") != std::string::npos &&
              l.find("flags=UAEX") != std::string::npos) {
            return true;
          }
        }
        return false;
      },
      5s))
      << "the refusal is logged with Envoy's UAEX flag";

  // A 5xx is an error: statusOnError (403 by default), empty body.
  authz.set_responder([](const SeenRequest&) { return ScriptStep{.status = 500}; });
  authz.reset_counts();
  r = get("reviews", "/protected/c", {"x-ext-authz: allow"});
  ASSERT_TRUE(r) << r.error().describe();
  EXPECT_EQ(r->status, 403);
  EXPECT_EQ(r->body, "");
  EXPECT_EQ(authz.hits(), 1) << "the authorizer was asked and failed";
  EXPECT_EQ(v1.hits(), 0);

  // A slow authorizer: after `timeout`, statusOnError 503; with failOpen the request goes on.
  authz.set_responder(
      [](const SeenRequest&) { return ScriptStep{.status = 200, .delay = 3000ms}; });
  const std::string slow = "        timeout: 300ms\n        statusOnError: \"503\"\n";
  ASSERT_TRUE(
      chain_->set_config(reviews_to_v1() + custom_policy("sample-http", http_provider(slow))));
  r = get("reviews", "/protected/d", {"x-ext-authz: allow"});
  ASSERT_TRUE(r) << r.error().describe();
  EXPECT_EQ(r->status, 503);
  EXPECT_LT(r->elapsed, 2500ms) << "not waiting for the authorizer past its timeout";
  EXPECT_EQ(v1.hits(), 0);
  ASSERT_TRUE(chain_->set_config(
      reviews_to_v1() + custom_policy("sample-http", http_provider(slow + R"(        failOpen: true
)"))));
  r = get("reviews", "/protected/e");
  ASSERT_TRUE(r) << r.error().describe();
  EXPECT_EQ(r->status, 200) << "failOpen";
  EXPECT_EQ(r->body, "reviews-v1");

  // includeRequestBodyInCheck: the body goes with the check up to maxRequestBytes; a longer one
  // is refused with 413, or sent in part with allowPartialMessage. Either way the backend gets
  // the whole body, a streamed one (past 64 KiB) included.
  authz.set_responder([](const SeenRequest&) { return ScriptStep{.status = 200}; });
  const std::string body_limit =
      "        includeRequestBodyInCheck: {maxRequestBytes: 10, allowPartialMessage: ";
  ASSERT_TRUE(chain_->set_config(
      reviews_to_v1() + custom_policy("sample-http", http_provider(body_limit + "false}\n"))));
  auto post = [&](const std::string& target, const std::string& body) {
    return chain_request(chain_->client().socks5, chain_->vip("reviews"), "POST", target, {}, body);
  };
  authz.reset_counts();
  v1.reset_counts();
  r = post("/protected/g", "hello");
  ASSERT_TRUE(r) << r.error().describe();
  EXPECT_EQ(r->status, 200) << r->body;
  ASSERT_EQ(authz.requests().size(), 1u);
  EXPECT_EQ(authz.requests()[0].body, "hello");
  EXPECT_EQ(authz.requests()[0].method, "POST");
  ASSERT_EQ(v1.requests().size(), 1u);
  EXPECT_EQ(v1.requests()[0].body, "hello");
  r = post("/protected/h", std::string(11, 'x'));
  ASSERT_TRUE(r) << r.error().describe();
  EXPECT_EQ(r->status, 413);
  EXPECT_EQ(authz.hits(), 1) << "a body over the limit is refused before the check";
  EXPECT_EQ(v1.hits(), 1);
  // A body streamed past 64 KiB is read up to the limit for the check, and still goes on whole:
  // one that ends within the limit (read to its end), one longer (sent in part).
  ASSERT_TRUE(chain_->set_config(
      reviews_to_v1() +
      custom_policy("sample-http",
                    http_provider("        includeRequestBodyInCheck: {maxRequestBytes: 100000, "
                                  "allowPartialMessage: true}\n"))));
  for (size_t size : {90'000, 300'000}) {
    SCOPED_TRACE(size);
    authz.reset_counts();
    v1.reset_counts();
    std::string body;
    for (size_t i = 0; body.size() < size; ++i) body += std::to_string(i) + ",";
    body.resize(size);
    r = post("/protected/i", body);
    ASSERT_TRUE(r) << r.error().describe();
    EXPECT_EQ(r->status, 200) << r->body;
    ASSERT_EQ(authz.requests().size(), 1u);
    EXPECT_EQ(authz.requests()[0].body, body.substr(0, 100000));
    EXPECT_EQ(authz.requests()[0].headers.at("x-envoy-auth-partial-body"),
              size > 100000 ? "true" : "false");
    ASSERT_EQ(v1.requests().size(), 1u);
    EXPECT_TRUE(v1.requests()[0].body == body) << "the whole body goes on";
  }

  // A CUSTOM policy naming no provider there is: what it matches is denied.
  ASSERT_TRUE(chain_->set_config(reviews_to_v1() + custom_policy("missing", http_provider())));
  r = get("reviews", "/protected/f", {"x-ext-authz: allow"});
  ASSERT_TRUE(r) << r.error().describe();
  EXPECT_EQ(r->status, 403);
  EXPECT_EQ(r->body, "RBAC: access denied");
  r = get("reviews", "/public");
  ASSERT_TRUE(r) << r.error().describe();
  EXPECT_EQ(r->status, 200) << "only what the policy matches";
}

// ---- 6. HTTP edge cases
// ----------------------------------------------------------------------------------

TEST_F(WaypointChainTest, Http1PipeliningChunkedContinueSmugglingAndOversizedHeaders) {
  ASSERT_NO_FATAL_FAILURE(start(7, reviews_to_v1(), {Backend::kReviewsV1}));
  auto& v1 = chain_->backend("reviews-v1");
  const auto socks = chain_->client().socks5;
  const auto vip = chain_->vip("reviews");

  {  // Pipelining: two requests in one write, two answers in order.
    SCOPED_TRACE("pipelining");
    auto c = ChainHttpConnection::open(socks, vip);
    ASSERT_TRUE(c) << c.error().describe();
    ASSERT_TRUE(
        (*c)->write("GET /p1 HTTP/1.1\r\nHost: reviews\r\n\r\n"
                    "GET /p2 HTTP/1.1\r\nHost: reviews\r\n\r\n"));
    auto r1 = (*c)->read_response();
    ASSERT_TRUE(r1) << r1.error().describe();
    auto r2 = (*c)->read_response();
    ASSERT_TRUE(r2) << r2.error().describe();
    EXPECT_EQ(r1->status, 200);
    EXPECT_EQ(r1->header("x-seen-path"), "/p1");
    EXPECT_EQ(r2->status, 200);
    EXPECT_EQ(r2->header("x-seen-path"), "/p2");
  }
  {  // Chunked request body: the backend gets the whole body.
    SCOPED_TRACE("chunked");
    v1.reset_counts();
    auto c = ChainHttpConnection::open(socks, vip);
    ASSERT_TRUE(c) << c.error().describe();
    ASSERT_TRUE(
        (*c)->write("POST /chunked HTTP/1.1\r\nHost: reviews\r\nTransfer-Encoding: chunked\r\n\r\n"
                    "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"));
    auto r = (*c)->read_response();
    ASSERT_TRUE(r) << r.error().describe();
    EXPECT_EQ(r->status, 200);
    ASSERT_EQ(v1.requests().size(), 1u);
    EXPECT_EQ(v1.requests()[0].body, "hello world");
  }
  {  // Expect: 100-continue: the 100 comes before the body is sent.
    SCOPED_TRACE("100-continue");
    v1.reset_counts();
    auto c = ChainHttpConnection::open(socks, vip, 3s);
    ASSERT_TRUE(c) << c.error().describe();
    ASSERT_TRUE(
        (*c)->write("POST /continue HTTP/1.1\r\nHost: reviews\r\nExpect: 100-continue\r\n"
                    "Content-Length: 4\r\n\r\n"));
    auto cont = (*c)->read_response();
    ASSERT_TRUE(cont) << cont.error().describe();
    EXPECT_EQ(cont->status, 100);
    ASSERT_TRUE((*c)->write("data"));
    auto r = (*c)->read_response();
    ASSERT_TRUE(r) << r.error().describe();
    EXPECT_EQ(r->status, 200);
    ASSERT_EQ(v1.requests().size(), 1u);
    EXPECT_EQ(v1.requests()[0].body, "data");
  }
  {  // Smuggling (Content-Length and Transfer-Encoding): 400, closed, nothing forwarded.
    SCOPED_TRACE("smuggling");
    v1.reset_counts();
    auto c = ChainHttpConnection::open(socks, vip);
    ASSERT_TRUE(c) << c.error().describe();
    ASSERT_TRUE(
        (*c)->write("POST /s HTTP/1.1\r\nHost: reviews\r\nContent-Length: 6\r\n"
                    "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                    "GET /smuggled HTTP/1.1\r\nHost: reviews\r\n\r\n"));
    auto r = (*c)->read_response();
    ASSERT_TRUE(r) << r.error().describe();
    EXPECT_EQ(r->status, 400);
    EXPECT_TRUE((*c)->closed_by_peer());
    EXPECT_EQ(v1.hits(), 0);
  }
  {  // Oversized headers: 431.
    SCOPED_TRACE("431");
    v1.reset_counts();
    auto c = ChainHttpConnection::open(socks, vip);
    ASSERT_TRUE(c) << c.error().describe();
    auto r = (*c)->request("GET", "/big", {"X-Big: " + std::string(70 * 1024, 'b')});
    ASSERT_TRUE(r) << r.error().describe();
    EXPECT_EQ(r->status, 431);
    EXPECT_EQ(v1.hits(), 0);
  }
}

// `n` bytes of letters in a pattern that does not repeat every few KiB (a piece dropped,
// doubled or moved shows).
std::string patterned_body(size_t n) {
  std::string out(n, '\0');
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<char>('a' + (i * 7 + i / 4093) % 26);
  return out;
}

// What a large body is reported as: its size and a hash.
std::string body_digest(const std::string& body) {
  return fmt::format("{} {:x}", body.size(), std::hash<std::string>{}(body));
}

// A response body of one piece, then an error (`fail`: its stream or connection is cut), or
// its end after `wait`.
class OnePieceThen final : public waypoint::BodySource {
 public:
  OnePieceThen(std::string first, bool fail, std::chrono::milliseconds wait = {})
      : first_(std::move(first)), fail_(fail), wait_(wait) {}
  awaitable<Piece> next() override {
    Piece p;
    if (given_++ == 0) {
      p.data = std::move(first_);
      co_return p;
    }
    asio::steady_timer t(co_await asio::this_coro::executor, wait_);
    co_await t.async_wait(kTuple);
    if (fail_) {
      p.error = "backend broke";
    } else {
      p.end = true;
    }
    co_return p;
  }

 private:
  std::string first_;
  bool fail_;
  std::chrono::milliseconds wait_;
  int given_ = 0;
};

// An h2c backend: the waypoint's own HTTP/2 server codec with a handler naming what it got;
// "/reset-mid-body" is answered with one piece of body, then a reset. "/upload" answers the
// request body's digest (body_digest), "/download/<n>" a patterned body of n bytes: bodies up to
// 64 MiB, far more than the waypoint buffers. "/cut/<n>": n such bytes, then the body fails.
// "/events": one server-sent event, the end 3 s later.
class H2Backend : public LoopbackServer {
 public:
  static std::unique_ptr<H2Backend> start(const tcp::endpoint& at) {
    std::unique_ptr<H2Backend> b(new H2Backend(at));
    b->LoopbackServer::start();
    return b;
  }
  std::atomic<int> hits{0};

 private:
  explicit H2Backend(const tcp::endpoint& at) : LoopbackServer(at) {}
  // HTTP/2 (prior knowledge), or HTTP/1.1 when the first bytes are not the preface.
  awaitable<void> serve(tcp::socket s) override {
    std::string preface(waypoint::http2::kClientPreface.size(), '\0');
    auto [ec, n] = co_await asio::async_read(s, asio::buffer(preface), kTuple);
    if (ec) co_return;
    auto handler = [this](Request r) { return handle(std::move(r)); };
    if (preface != waypoint::http2::kClientPreface) {
      co_await waypoint::http1::serve_http1(Duplex::of_socket(std::move(s)), preface, kLimits,
                                            handler);
      co_return;
    }
    co_await waypoint::http2::serve_http2(Duplex::of_socket(std::move(s)), preface, kLimits,
                                          handler);
  }
  awaitable<Response> handle(Request r) {
    ++hits;
    Response resp;
    resp.status = 200;
    resp.headers.push_back({"content-type", "text/plain"});
    resp.headers.push_back({"x-backend", "h2"});
    if (r.head.target == "/reset-mid-body") {
      resp.source = std::make_shared<OnePieceThen>("first", true);
      co_return resp;
    }
    if (r.head.target == "/upload") {
      resp.body = body_digest(r.body);
    } else if (r.head.target.starts_with("/download/")) {
      resp.body = patterned_body(std::stoul(r.head.target.substr(10)));
    } else if (r.head.target == "/events") {
      resp.headers = {{"content-type", "text/event-stream"}};
      resp.source = std::make_shared<OnePieceThen>("data: one\n\n", false, 3s);
    } else if (r.head.target.starts_with("/cut/")) {
      resp.source =
          std::make_shared<OnePieceThen>(patterned_body(std::stoul(r.head.target.substr(5))), true);
    } else {
      resp.body = fmt::format("h2 {} {} {}", r.head.method, r.head.target, r.body);
    }
    co_return resp;
  }
  static constexpr waypoint::Limits kLimits{.max_body_bytes = 64 << 20,
                                            .max_connection_body_bytes = 64 << 20};
};

struct H2Results {
  std::vector<Result<Response>> responses;
};

// Request `i` (i < 0: a gRPC one to "/reset-mid-body", taken streamed: its body, or its error,
// lands in `out`'s body).
awaitable<void> one_h2(std::shared_ptr<waypoint::http2::Http2Client> client, int i,
                       Result<Response>& out) {
  Request req;
  req.version = HttpVersion::kHttp2;
  req.head.method = "POST";
  req.head.target = i < 0 ? std::string("/reset-mid-body") : fmt::format("/h2/{}", i);
  req.head.authority = "h2.default.svc.cluster.local";
  req.head.scheme = "http";
  req.head.headers.push_back({"content-type", i < 0 ? "application/grpc" : "text/plain"});
  req.body = fmt::format("body{}", i);
  req.stream_response = i < 0;
  out = co_await client->send(std::move(req));
  while (out && out->source) {
    auto piece = co_await out->source->next();
    out->body += piece.data;
    if (!piece.error.empty()) out->body += "|error: " + piece.error;
    if (piece.end || !piece.error.empty()) out->source.reset();
  }
}

awaitable<void> h2_session(tcp::endpoint socks, tcp::endpoint dst, int n, H2Results& results) {
  auto s = co_await socks5_connect(socks, dst);
  if (!s) {
    results.responses.push_back(tl::unexpected(s.error()));
    co_return;
  }
  auto ex = co_await asio::this_coro::executor;
  auto client = waypoint::http2::Http2Client::start(ex, Duplex::of_socket(std::move(*s)));
  results.responses.assign(n + 1, failf("not answered"));
  // Concurrent streams on the one connection; the last one fails in mid-body.
  async::TaskGroup group(ex);
  for (int i = 0; i < n; ++i) group.spawn(one_h2(client, i, results.responses[i]), "h2-request");
  group.spawn(one_h2(client, -1, results.responses[n]), "h2-request");
  co_await group.wait_empty(std::chrono::seconds(30));
  client->close();
}

TEST_F(WaypointChainTest, Http2ClientThroughTheWaypoint) {
  ASSERT_NO_FATAL_FAILURE(start(8, "", {Backend::kH2}));
  auto backend = H2Backend::start(chain_->endpoint("h2"));
  asio::io_context io;
  H2Results results;
  run_coroutine(
      io, [&] { return h2_session(chain_->client().socks5, chain_->vip("h2"), 10, results); }, 30s);
  ASSERT_EQ(results.responses.size(), 11u);
  for (int i = 0; i < 10; ++i) {
    auto& r = results.responses[i];
    ASSERT_TRUE(r) << r.error().describe();
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->body, fmt::format("h2 POST /h2/{} body{}", i, i));
  }
  // A streamed gRPC answer whose upstream stream is reset in mid-body: the downstream gets the
  // piece before, then a reset; the waypoint logs it with Envoy's UR flag.
  auto& broken = results.responses[10];
  ASSERT_TRUE(broken) << broken.error().describe();
  EXPECT_EQ(broken->status, 200);
  EXPECT_EQ(broken->body, "first|error: stream reset: INTERNAL_ERROR");
  EXPECT_EQ(backend->hits.load(), 11);
  EXPECT_TRUE(poll_until(
      [&] { return waypoint_metric("istio_requests_total", {"response_code=\"200\""}) == 11; },
      5s));
  EXPECT_EQ(waypoint_metric("istio_requests_total", {"response_flags=\"UR\""}), 1)
      << chain_->waypoint_metrics_text();
}

// One HTTP/2 request with `body` to the h2 service on a connection of its own; the answer
// (any size up to 64 MiB) lands in `out`.
awaitable<void> one_large_h2(tcp::endpoint socks, tcp::endpoint dst, std::string method,
                             std::string target, std::string body, Result<Response>& out) {
  auto s = co_await socks5_connect(socks, dst);
  if (!s) {
    out = tl::unexpected(s.error());
    co_return;
  }
  auto client = waypoint::http2::Http2Client::start(co_await asio::this_coro::executor,
                                                    Duplex::of_socket(std::move(*s)),
                                                    waypoint::Limits{.max_body_bytes = 64 << 20});
  Request req{.version = HttpVersion::kHttp2,
              .head = {.method = std::move(method),
                       .target = std::move(target),
                       .authority = "h2.default.svc.cluster.local"},
              .body = std::move(body)};
  out = co_await client->send(std::move(req));
  client->close();
}

// Bodies longer than the waypoint buffers (64 KiB; it used to refuse more than 8 MiB: a request
// with 413, a response with 502 or, after its retries, 503) stream through it both ways, over
// HTTP/2 and HTTP/1.1, byte for byte, and are counted whole.
TEST_F(WaypointChainTest, BodiesOfAnySizeStreamThroughTheWaypoint) {
  ASSERT_NO_FATAL_FAILURE(start(15, "", {Backend::kH2}));
  auto backend = H2Backend::start(chain_->endpoint("h2"));
  constexpr size_t kLarge = 20 << 20;
  const std::string large = patterned_body(kLarge);
  asio::io_context io;
  Result<Response> up = failf("not answered");
  run_coroutine(
      io,
      [&] {
        return one_large_h2(chain_->client().socks5, chain_->vip("h2"), "POST", "/upload", large,
                            up);
      },
      60s);
  ASSERT_TRUE(up) << up.error().describe();
  EXPECT_EQ(up->status, 200);
  EXPECT_EQ(up->body, body_digest(large));

  Result<Response> down = failf("not answered");
  run_coroutine(
      io,
      [&] {
        return one_large_h2(chain_->client().socks5, chain_->vip("h2"), "GET",
                            fmt::format("/download/{}", kLarge), "", down);
      },
      60s);
  ASSERT_TRUE(down) << down.error().describe();
  EXPECT_EQ(down->status, 200);
  EXPECT_EQ(body_digest(down->body), body_digest(large));
  // HTTP/1.1, on one keep-alive connection: after a download its upstream connection serves
  // again; then an upload.
  auto h1 = ChainHttpConnection::open(chain_->client().socks5, chain_->vip("h2"), 30s);
  ASSERT_TRUE(h1) << h1.error().describe();
  (*h1)->host = "h2.default.svc.cluster.local";
  auto h1_down = (*h1)->request("GET", fmt::format("/download/{}", kLarge));
  ASSERT_TRUE(h1_down) << h1_down.error().describe();
  EXPECT_EQ(h1_down->status, 200);
  EXPECT_EQ(body_digest(h1_down->body), body_digest(large));
  auto h1_small = (*h1)->request("GET", "/download/10");
  ASSERT_TRUE(h1_small) << h1_small.error().describe();
  EXPECT_EQ(h1_small->body, large.substr(0, 10));
  auto h1_up = (*h1)->request("POST", "/upload", {}, large);
  ASSERT_TRUE(h1_up) << h1_up.error().describe();
  EXPECT_EQ(h1_up->status, 200);
  EXPECT_EQ(h1_up->body, body_digest(large));
  // An HTTP/1.1 upstream whose body breaks after the answer began: the client's connection is
  // cut (no other way to tell it), and the waypoint records the upstream's failure (UC).
  auto cut = (*h1)->request("GET", "/cut/1048576");
  EXPECT_FALSE(cut) << "a cut body must not look complete";
  EXPECT_EQ(backend->hits.load(), 6);

  // Counted whole: every byte in the size histograms, once per request.
  const std::vector<std::string> whole = {"response_code=\"200\"", "response_flags=\"-\""};
  EXPECT_TRUE(requests_reach(whole, 5));
  EXPECT_TRUE(requests_reach({"response_flags=\"UC\""}, 1)) << chain_->waypoint_metrics_text();
  EXPECT_GE(waypoint_metric("istio_request_bytes_sum", whole), static_cast<double>(2 * kLarge));
  EXPECT_LT(waypoint_metric("istio_request_bytes_sum", whole),
            static_cast<double>(2 * kLarge + 4096));
  EXPECT_GE(waypoint_metric("istio_response_bytes_sum", whole), static_cast<double>(2 * kLarge));
  EXPECT_LT(waypoint_metric("istio_response_bytes_sum", whole),
            static_cast<double>(2 * kLarge + 4096));
}

// Server-sent events through the waypoint: the first event reaches an HTTP/1.1 client as it is
// written, not when the body ends 3 s later (the waypoint streams a body still coming 10 ms
// after its head).
TEST_F(WaypointChainTest, ServerSentEventsReachTheClientAsTheyAreWritten) {
  ASSERT_NO_FATAL_FAILURE(start(16, "", {Backend::kH2}));
  auto backend = H2Backend::start(chain_->endpoint("h2"));
  asio::io_context io;
  std::string got;
  std::chrono::steady_clock::duration took{};
  run_coroutine(
      io,
      [&]() -> awaitable<void> {
        auto s = co_await socks5_connect(chain_->client().socks5, chain_->vip("h2"));
        EXPECT_TRUE(s) << s.error().describe();
        if (!s) co_return;
        const std::string req =
            "GET /events HTTP/1.1\r\nHost: h2.default.svc.cluster.local\r\n\r\n";
        co_await asio::async_write(*s, asio::buffer(req), kTuple);
        const auto start = std::chrono::steady_clock::now();
        char buf[4096];
        while (got.find("data: one") == std::string::npos) {
          auto [ec, n] = co_await s->async_read_some(asio::buffer(buf), kTuple);
          got.append(buf, n);
          if (ec) break;
        }
        took = std::chrono::steady_clock::now() - start;
      },
      10s);
  EXPECT_NE(got.find("data: one"), std::string::npos) << got;
  EXPECT_NE(got.find("text/event-stream"), std::string::npos) << got;
  EXPECT_LT(took, 2s) << "the event waited for the end of the body";
}

// A gRPC backend: the Istio CA service, answering with a fixed chain or an error; the next
// `unavailable` calls fail with UNAVAILABLE. The CSR "hang" waits up to 10 s for its call to be
// cancelled, and notes after how long it was (-1: never).
class GrpcBackend final : public istio::v1::auth::IstioCertificateService::Service {
 public:
  grpc::Status CreateCertificate(grpc::ServerContext* ctx,
                                 const istio::v1::auth::IstioCertificateRequest* req,
                                 istio::v1::auth::IstioCertificateResponse* resp) override {
    ++hits;
    if (req->csr() == "hang") {
      hanging = true;
      const auto began = std::chrono::steady_clock::now();
      while (!ctx->IsCancelled() && std::chrono::steady_clock::now() - began < 10s) {
        std::this_thread::sleep_for(5ms);
      }
      const auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(
          std::chrono::steady_clock::now() - began);
      cancelled_after_ms = ctx->IsCancelled() ? static_cast<int>(waited.count()) : -1;
      return {grpc::StatusCode::CANCELLED, "cancelled"};
    }
    if (unavailable.fetch_sub(1) > 0) return {grpc::StatusCode::UNAVAILABLE, "try again"};
    if (req->csr() == "fail") return {grpc::StatusCode::NOT_FOUND, "no such certificate"};
    resp->add_cert_chain("grpc-backend");
    resp->add_cert_chain(req->csr());
    return grpc::Status::OK;
  }
  std::atomic<int> hits{0};
  std::atomic<int> unavailable{0};
  std::atomic<bool> hanging{false};
  std::atomic<int> cancelled_after_ms{-2};  // -2: not over yet
};

// Envoy's gRPC ext_authz service, deciding as Istio's sample does.
class SampleGrpcAuthorizer final : public envoy::service::auth::v3::Authorization::Service {
 public:
  grpc::Status Check(grpc::ServerContext*, const envoy::service::auth::v3::CheckRequest* request,
                     envoy::service::auth::v3::CheckResponse* response) override {
    {
      std::lock_guard lock(mu_);
      seen_.push_back(*request);
    }
    const auto& headers = request->attributes().request().http().headers();
    auto it = headers.find("x-ext-authz");
    if (it != headers.end() && it->second == "allow") {
      response->mutable_status()->set_code(0);
      auto* ok = response->mutable_ok_response();
      auto* h = ok->add_headers();
      h->mutable_header()->set_key("x-ext-authz-check-result");
      h->mutable_header()->set_value("allowed");
      h->set_append_action(envoy::config::core::v3::HeaderValueOption::OVERWRITE_IF_EXISTS_OR_ADD);
      ok->add_headers_to_remove("x-remove-me");
      auto* down = ok->add_response_headers_to_add();
      down->mutable_header()->set_key("x-ext-authz-decision");
      down->mutable_header()->set_value("yes");
      return grpc::Status::OK;
    }
    response->mutable_status()->set_code(7);  // PERMISSION_DENIED
    auto* denied = response->mutable_denied_response();
    denied->mutable_status()->set_code(envoy::type::v3::Unauthorized);
    auto* h = denied->add_headers();
    h->mutable_header()->set_key("x-ext-authz-check-result");
    h->mutable_header()->set_value("denied");
    denied->set_body("denied by the gRPC authorizer");
    return grpc::Status::OK;
  }
  std::vector<envoy::service::auth::v3::CheckRequest> seen() {
    std::lock_guard lock(mu_);
    return seen_;
  }

 private:
  std::mutex mu_;
  std::vector<envoy::service::auth::v3::CheckRequest> seen_;
};

TEST_F(WaypointChainTest, CustomPolicyAsksAGrpcAuthorizer) {
  const std::string provider = R"(    - name: sample-grpc
      envoyExtAuthzGrpc:
        service: grpc.default.svc.cluster.local
        port: 80
        timeout: 5s
        statusOnError: "503"
)";
  // (the grpc service is asked about its own calls too: one provider for both services)
  const std::string grpc_custom = R"(apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext-authz-grpc, namespace: default}
spec:
  targetRefs: [{kind: Service, group: "", name: grpc}]
  action: CUSTOM
  provider: {name: sample-grpc}
  rules: [{}]
---
)";
  ASSERT_NO_FATAL_FAILURE(
      start(20, reviews_to_v1() + custom_policy("sample-grpc", provider) + grpc_custom,
            {Backend::kReviewsV1, Backend::kGrpc}));
  auto& v1 = chain_->backend("reviews-v1");
  // One grpc++ server on the grpc workload: the authorizer, and an app for calls through the
  // waypoint.
  SampleGrpcAuthorizer authorizer;
  GrpcBackend app;
  grpc::ServerBuilder builder;
  builder.AddListeningPort(net::format_endpoint(chain_->endpoint("grpc")),
                           grpc::InsecureServerCredentials());
  builder.RegisterService(&authorizer);
  builder.RegisterService(&app);
  auto server = builder.BuildAndStart();
  ASSERT_TRUE(server);

  auto r = get("reviews", "/protected/a", {"x-ext-authz: allow", "x-remove-me: 1"});
  ASSERT_TRUE(r) << r.error().describe();
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(r->body, "reviews-v1");
  EXPECT_EQ(r->header("x-ext-authz-decision"), "yes");
  ASSERT_EQ(v1.requests().size(), 1u);
  EXPECT_EQ(v1.requests()[0].headers.count("x-remove-me"), 0u);
  ASSERT_EQ(v1.requests()[0].headers.count("x-ext-authz-check-result"), 1u);
  EXPECT_EQ(v1.requests()[0].headers.at("x-ext-authz-check-result"), "allowed");
  auto seen = authorizer.seen();
  ASSERT_EQ(seen.size(), 1u);
  const auto& attrs = seen[0].attributes();
  EXPECT_EQ(attrs.request().http().method(), "GET");
  EXPECT_EQ(attrs.request().http().path(), "/protected/a");
  EXPECT_EQ(attrs.request().http().protocol(), "HTTP/1.1");
  EXPECT_EQ(attrs.source().principal(), std::string("spiffe://") + kClientPrincipal);
  // (the chain's client reaches its ztunnel over SOCKS5 from 127.0.0.1: that is the source)
  EXPECT_EQ(attrs.source().address().socket_address().address(), "127.0.0.1");
  EXPECT_EQ(attrs.destination().address().socket_address().address(),
            chain_->vip("reviews").address().to_string());
  EXPECT_EQ(attrs.destination().address().socket_address().port_value(), 80u);
  EXPECT_EQ(attrs.destination().principal(), "spiffe://cluster.local/ns/default/sa/waypoint");
  EXPECT_EQ(attrs.request().http().id(), v1.requests()[0].headers.at("x-request-id"))
      << "the check and the forwarded request carry one request id";

  v1.reset_counts();
  expect_denied(get("reviews", "/protected/b", {"x-ext-authz: no"}), 401,
                "denied by the gRPC authorizer");
  EXPECT_EQ(v1.hits(), 0);

  // A gRPC call through the waypoint gets the refusal as a gRPC status (Envoy's local reply):
  // the denied_response's 401 is UNAUTHENTICATED, with its body as the message.
  {
    auto forwarder = SocksForwarder::start(chain_->client().socks5, chain_->vip("grpc"));
    grpc::ChannelArguments args;
    args.SetString(GRPC_ARG_DEFAULT_AUTHORITY, "grpc.default.svc.cluster.local");
    auto channel = grpc::CreateCustomChannel(net::format_endpoint(forwarder->endpoint()),
                                             grpc::InsecureChannelCredentials(), args);
    auto stub = istio::v1::auth::IstioCertificateService::NewStub(channel);
    auto call = [&](bool allow) {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + 10s);
      if (allow) ctx.AddMetadata("x-ext-authz", "allow");
      istio::v1::auth::IstioCertificateRequest req;
      req.set_csr("c");
      istio::v1::auth::IstioCertificateResponse resp;
      return stub->CreateCertificate(&ctx, req, &resp);
    };
    auto denied = call(false);
    EXPECT_EQ(denied.error_code(), grpc::StatusCode::UNAUTHENTICATED);
    EXPECT_EQ(denied.error_message(), "denied by the gRPC authorizer");
    EXPECT_EQ(app.hits.load(), 0);
    auto allowed = call(true);
    EXPECT_TRUE(allowed.ok()) << allowed.error_code() << " " << allowed.error_message();
    EXPECT_EQ(app.hits.load(), 1);
  }

  // The authorizer gone: statusOnError, at once (not after the 5 s timeout).
  server->Shutdown();
  r = get("reviews", "/protected/c", {"x-ext-authz: allow"});
  ASSERT_TRUE(r) << r.error().describe();
  EXPECT_EQ(r->status, 503);
  EXPECT_EQ(r->body, "");
  EXPECT_LT(r->elapsed, 2000ms);
  EXPECT_EQ(v1.hits(), 0);
}

TEST_F(WaypointChainTest, GrpcCallThroughTheWaypoint) {
  auto owned = std::make_unique<GrpcBackend>();
  auto& service = *owned;
  const std::string deny_flagged = testing::authorization_policy(
      "deny-flagged", "grpc", "DENY",
      "  - when: [{key: \"request.headers[x-deny]\", values: [\"yes\"]}]\n");
  ASSERT_NO_FATAL_FAILURE(start_grpc(9, std::move(owned), deny_flagged));
  auto stub = istio::v1::auth::IstioCertificateService::NewStub(grpc_->channel);
  for (int i = 0; i < 3; ++i) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 10s);
    istio::v1::auth::IstioCertificateRequest req;
    req.set_csr(fmt::format("csr-{}", i));
    istio::v1::auth::IstioCertificateResponse resp;
    auto st = stub->CreateCertificate(&ctx, req, &resp);
    ASSERT_TRUE(st.ok()) << st.error_code() << " " << st.error_message();
    ASSERT_EQ(resp.cert_chain_size(), 2);
    EXPECT_EQ(resp.cert_chain(0), "grpc-backend");
    EXPECT_EQ(resp.cert_chain(1), fmt::format("csr-{}", i));
  }
  {  // A gRPC error travels in the trailers.
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 10s);
    istio::v1::auth::IstioCertificateRequest req;
    req.set_csr("fail");
    istio::v1::auth::IstioCertificateResponse resp;
    auto st = stub->CreateCertificate(&ctx, req, &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND);
    EXPECT_EQ(st.error_message(), "no such certificate");
  }
  EXPECT_EQ(service.hits.load(), 4) << "NOT_FOUND is not retried";

  // Istio's default retry policy (no HTTPRoute) retries UNAVAILABLE twice, over the waypoint's
  // HTTP/2 upstream: one failure is hidden, three come back after three attempts.
  auto call = [&](std::string csr) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 10s);
    istio::v1::auth::IstioCertificateRequest req;
    req.set_csr(std::move(csr));
    istio::v1::auth::IstioCertificateResponse resp;
    return stub->CreateCertificate(&ctx, req, &resp);
  };
  service.hits = 0;
  service.unavailable = 1;
  auto retried = call("retried");
  EXPECT_TRUE(retried.ok()) << retried.error_code() << " " << retried.error_message();
  EXPECT_EQ(service.hits.load(), 2);
  service.hits = 0;
  service.unavailable = 3;
  auto exhausted = call("exhausted");
  EXPECT_EQ(exhausted.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(exhausted.error_message(), "try again");
  EXPECT_EQ(service.hits.load(), 3) << "1 attempt and 2 retries";
  EXPECT_TRUE(requests_reach({"request_protocol=\"grpc\""}, 6)) << chain_->waypoint_metrics_text();
  EXPECT_EQ(waypoint_metric("istio_requests_total", {"grpc_response_status=\"14\""}), 1)
      << chain_->waypoint_metrics_text();

  // A call the client cancels (RST_STREAM(CANCEL); no deadline, so nothing else could tell the
  // backend): the waypoint resets its upstream stream at once, and records the call as the
  // downstream's doing (code 0, DR), not as an upstream failure.
  {
    grpc::ClientContext ctx;
    istio::v1::auth::IstioCertificateRequest req;
    req.set_csr("hang");
    istio::v1::auth::IstioCertificateResponse resp;
    std::thread canceller([&] {
      poll_until([&] { return service.hanging.load(); }, 10s);
      ctx.TryCancel();
    });
    auto st = stub->CreateCertificate(&ctx, req, &resp);
    canceller.join();
    EXPECT_EQ(st.error_code(), grpc::StatusCode::CANCELLED);
    EXPECT_TRUE(poll_until([&] { return service.cancelled_after_ms.load() != -2; }, 15s));
    const int after = service.cancelled_after_ms.load();
    EXPECT_TRUE(after >= 0 && after < 3000)
        << "the backend learnt of the cancellation after " << after << " ms (-1: never)";
    EXPECT_TRUE(requests_reach({"response_code=\"0\"", "response_flags=\"DR\""}, 1))
        << chain_->waypoint_metrics_text();
  }

  // A call the policy denies gets gRPC's PERMISSION_DENIED with Envoy's reason, as a client of
  // Istio's waypoint sees it, not an HTTP 403 it must map itself.
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 10s);
    ctx.AddMetadata("x-deny", "yes");
    istio::v1::auth::IstioCertificateRequest req;
    req.set_csr("denied");
    istio::v1::auth::IstioCertificateResponse resp;
    const int before = service.hits.load();
    auto st = stub->CreateCertificate(&ctx, req, &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED) << st.error_message();
    EXPECT_EQ(st.error_message(), "RBAC: access denied");
    EXPECT_EQ(service.hits.load(), before);
    EXPECT_TRUE(requests_reach({"response_code=\"200\"", "grpc_response_status=\"7\""}, 1))
        << chain_->waypoint_metrics_text();
  }
  grpc_->server->Shutdown(std::chrono::system_clock::now() + 1s);
}

// An HTTPRoute for the ADS service of `grpc` with a route timeout and one retry.
std::string ads_timeout_route(std::string_view request, std::string_view per_try) {
  return fmt::format(R"(apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: ads-timeout, namespace: default}}
spec:
  parentRefs: [{{group: "", kind: Service, name: grpc, port: 80}}]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /envoy.service.discovery.v3.AggregatedDiscoveryService}}}}]
    backendRefs: [{{name: grpc, port: 80}}]
    timeouts: {{request: {}}}
    retries: {{attempts: 1, perTryTimeout: {}}}
)",
                     request, per_try);
}

using AdsStream = grpc::ServerReaderWriter<envoy::service::discovery::v3::DeltaDiscoveryResponse,
                                           envoy::service::discovery::v3::DeltaDiscoveryRequest>;

// A streaming gRPC backend (the ADS service): after the client's requests end it sends one
// response, waits until the client says it has that one (or 5 s), then sends a second.
class StreamingBackend final
    : public envoy::service::discovery::v3::AggregatedDiscoveryService::Service {
 public:
  grpc::Status DeltaAggregatedResources(grpc::ServerContext*, AdsStream* stream) override {
    ++calls;
    envoy::service::discovery::v3::DeltaDiscoveryRequest req;
    std::string type;
    while (stream->Read(&req)) type = req.type_url();
    envoy::service::discovery::v3::DeltaDiscoveryResponse resp;
    resp.set_type_url(type);
    resp.set_nonce("first");
    stream->Write(resp);
    if (type == "fail-after-first") return {grpc::StatusCode::UNAVAILABLE, "gone"};
    std::unique_lock lock(mu);
    bool acked = seen.wait_for(lock, 5s, [&] { return first_seen; });
    resp.set_nonce(acked ? "second, after the client had the first" : "second, unseen first");
    stream->Write(resp);
    return grpc::Status::OK;
  }
  std::mutex mu;
  std::condition_variable seen;
  bool first_seen = false;
  std::atomic<int> calls{0};
};

TEST_F(WaypointChainTest, GrpcServerStreamingReachesTheClientMessageByMessage) {
  auto owned = std::make_unique<StreamingBackend>();
  auto& service = *owned;
  // One request at a time to grpc: a running stream holds its place until its body ends.
  ASSERT_NO_FATAL_FAILURE(
      start_grpc(12, std::move(owned),
                 destination_rule("grpc", "connectionPool: {http: {http2MaxRequests: 1}}")));
  auto stub = envoy::service::discovery::v3::AggregatedDiscoveryService::NewStub(grpc_->channel);
  // The backend's second message waits for set_seen(true) (at most 5 s).
  auto set_seen = [&](bool seen) {
    {
      std::lock_guard lock(service.mu);
      service.first_seen = seen;
    }
    service.seen.notify_all();
  };
  envoy::service::discovery::v3::DeltaDiscoveryRequest req;
  req.set_type_url("type.googleapis.com/istio.workload.Address");
  // A call whose requests are all sent.
  auto open = [&](grpc::ClientContext& c) {
    c.set_deadline(std::chrono::system_clock::now() + 20s);
    auto call = stub->DeltaAggregatedResources(&c);
    EXPECT_TRUE(call->Write(req));
    EXPECT_TRUE(call->WritesDone());
    return call;
  };
  envoy::service::discovery::v3::DeltaDiscoveryResponse first, second;
  grpc::ClientContext ctx;
  auto call = open(ctx);
  ASSERT_TRUE(call->Read(&first));
  EXPECT_EQ(first.nonce(), "first");
  EXPECT_EQ(first.type_url(), req.type_url());
  {  // The stream is still running: a second call overflows the pool (503 UO: UNAVAILABLE).
    grpc::ClientContext other_ctx;
    other_ctx.set_deadline(std::chrono::system_clock::now() + 5s);
    auto other = stub->DeltaAggregatedResources(&other_ctx);
    other->WritesDone();
    envoy::service::discovery::v3::DeltaDiscoveryResponse ignored;
    EXPECT_FALSE(other->Read(&ignored));
    EXPECT_EQ(other->Finish().error_code(), grpc::StatusCode::UNAVAILABLE);
  }
  set_seen(true);
  ASSERT_TRUE(call->Read(&second));
  EXPECT_EQ(second.nonce(), "second, after the client had the first")
      << "the waypoint held the first message until the stream ended";
  EXPECT_FALSE(call->Read(&second));
  auto st = call->Finish();
  EXPECT_TRUE(st.ok()) << st.error_code() << " " << st.error_message();
  // One request in the metrics, recorded when the stream ended, with its grpc-status.
  EXPECT_TRUE(requests_reach({"request_protocol=\"grpc\"", "grpc_response_status=\"0\""}, 1))
      << chain_->waypoint_metrics_text();
  {  // The ended stream gave its place back: the next call goes through.
    grpc::ClientContext again_ctx;
    auto again = open(again_ctx);
    EXPECT_TRUE(again->Read(&first) && again->Read(&second) && !again->Read(&second));
    EXPECT_TRUE(again->Finish().ok()) << "the pool place of the ended stream was not given back";
  }
  {  // UNAVAILABLE after a message is in the trailers of a started answer: not retried, even by
     // Istio's default policy (which retries it in a head), as in Envoy.
    auto plain = req;
    req.set_type_url("fail-after-first");
    service.calls = 0;
    grpc::ClientContext failing_ctx;
    auto failing = open(failing_ctx);
    EXPECT_TRUE(failing->Read(&first));
    EXPECT_FALSE(failing->Read(&second));
    auto failed = failing->Finish();
    EXPECT_EQ(failed.error_code(), grpc::StatusCode::UNAVAILABLE);
    EXPECT_EQ(failed.error_message(), "gone");
    EXPECT_EQ(service.calls.load(), 1);
    req = plain;
  }

  // Timeouts: the per-try timeout covers the head only (a started stream continues, as in
  // Envoy); the route timeout bounds the whole streamed response, which is then reset (UT).
  ASSERT_TRUE(chain_->set_config(ads_timeout_route("1500ms", "300ms")));
  set_seen(false);
  {
    grpc::ClientContext slow_ctx;
    auto slow = open(slow_ctx);
    ASSERT_TRUE(slow->Read(&first));
    std::this_thread::sleep_for(600ms);
    set_seen(true);
    EXPECT_TRUE(slow->Read(&second)) << "the per-try timeout (300ms) cut a stream that had begun";
    EXPECT_FALSE(slow->Read(&second));
    EXPECT_TRUE(slow->Finish().ok());
  }
  set_seen(false);
  grpc::ClientContext timed_ctx;
  auto started = std::chrono::steady_clock::now();
  auto timed = open(timed_ctx);
  ASSERT_TRUE(timed->Read(&first));
  EXPECT_EQ(first.nonce(), "first");
  EXPECT_FALSE(timed->Read(&second)) << "got " << second.nonce();
  auto elapsed = std::chrono::steady_clock::now() - started;
  EXPECT_FALSE(timed->Finish().ok());
  EXPECT_GE(elapsed, 1200ms);
  EXPECT_LT(elapsed, 4s) << "the route timeout is 1500ms; the backend would stall for 5s";
  EXPECT_TRUE(requests_reach({"request_protocol=\"grpc\"", "response_flags=\"UT\""}, 1))
      << chain_->waypoint_metrics_text();
  set_seen(true);  // lets the stalled backend call end
  grpc_->server->Shutdown(std::chrono::system_clock::now() + 1s);
}

// A bidirectional gRPC backend (the ADS service). Every request it reads is recorded for its
// call; type "echo" answers each one at once (nonce "echo:<request's response_nonce>"); at the
// end it sends one summary (the nonces it read, comma-separated) and then its status:
// "unavailable-once" fails the first call with UNAVAILABLE before any message,
// "unavailable" every call; "echo-stall" echoes, then stalls before the summary until
// release() (at most 4 s).
class BidiBackend final
    : public envoy::service::discovery::v3::AggregatedDiscoveryService::Service {
 public:
  grpc::Status DeltaAggregatedResources(grpc::ServerContext*, AdsStream* stream) override {
    const int call = ++calls;
    envoy::service::discovery::v3::DeltaDiscoveryRequest req;
    envoy::service::discovery::v3::DeltaDiscoveryResponse resp;
    std::string type, seen;
    while (stream->Read(&req)) {
      type = req.type_url();
      seen += (seen.empty() ? "" : ",") + req.response_nonce().substr(0, 16);
      if (type == "echo" || type == "echo-stall") {
        resp.set_nonce("echo:" + req.response_nonce());
        stream->Write(resp);
      }
    }
    if (type == "echo-stall") {  // until released (at most 4 s)
      std::unique_lock lock(mu);
      released.wait_for(lock, 4s, [&] { return release_all; });
    }
    {
      std::lock_guard lock(mu);
      read_by_call.push_back(seen);
    }
    if (type == "unavailable" || (type == "unavailable-once" && call == 1)) {
      return {grpc::StatusCode::UNAVAILABLE, "again"};
    }
    resp.set_nonce("read:" + seen);
    stream->Write(resp);
    return grpc::Status::OK;
  }
  std::vector<std::string> reads() {
    std::lock_guard lock(mu);
    return read_by_call;
  }
  void release() {
    {
      std::lock_guard lock(mu);
      release_all = true;
    }
    released.notify_all();
  }
  std::atomic<int> calls{0};

 private:
  std::mutex mu;
  std::condition_variable released;
  bool release_all = false;
  std::vector<std::string> read_by_call;
};

TEST_F(WaypointChainTest, GrpcClientAndBidirectionalStreamingFlowBothWaysAndRetryWithinTheBuffer) {
  auto owned = std::make_unique<BidiBackend>();
  auto& service = *owned;
  ASSERT_NO_FATAL_FAILURE(start_grpc(13, std::move(owned)));
  auto stub = envoy::service::discovery::v3::AggregatedDiscoveryService::NewStub(grpc_->channel);
  using Request = envoy::service::discovery::v3::DeltaDiscoveryRequest;
  using Response = envoy::service::discovery::v3::DeltaDiscoveryResponse;
  auto message = [](std::string type, std::string nonce) {
    Request r;
    r.set_type_url(std::move(type));
    r.set_response_nonce(std::move(nonce));
    return r;
  };
  {  // Ping-pong: each answer comes back before the client sends the next request, let alone
     // ends its side. A waypoint that waits for the whole request would stall the first Read.
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 10s);
    auto call = stub->DeltaAggregatedResources(&ctx);
    Response resp;
    for (std::string nonce : {"a", "b", "c"}) {
      ASSERT_TRUE(call->Write(message("echo", nonce)));
      ASSERT_TRUE(call->Read(&resp)) << "no answer to " << nonce << " before the client's end";
      EXPECT_EQ(resp.nonce(), "echo:" + nonce);
    }
    ASSERT_TRUE(call->WritesDone());
    ASSERT_TRUE(call->Read(&resp));
    EXPECT_EQ(resp.nonce(), "read:a,b,c");
    EXPECT_FALSE(call->Read(&resp));
    auto st = call->Finish();
    EXPECT_TRUE(st.ok()) << st.error_code() << " " << st.error_message();
  }
  EXPECT_TRUE(requests_reach({"request_protocol=\"grpc\"", "grpc_response_status=\"0\""}, 1))
      << chain_->waypoint_metrics_text();

  // Client streaming: a call that fails with UNAVAILABLE at its head is retried (Istio's
  // default policy), its whole request stream sent again from the waypoint's copy.
  auto client_stream = [&](const std::string& type, const std::vector<std::string>& nonces,
                           Response& last) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 10s);
    auto call = stub->DeltaAggregatedResources(&ctx);
    for (const auto& n : nonces) EXPECT_TRUE(call->Write(message(type, n)));
    EXPECT_TRUE(call->WritesDone());
    while (call->Read(&last)) {
    }
    return call->Finish();
  };
  service.calls = 0;
  Response last;
  auto retried = client_stream("unavailable-once", {"x", "y", "z"}, last);
  EXPECT_TRUE(retried.ok()) << retried.error_code() << " " << retried.error_message();
  EXPECT_EQ(last.nonce(), "read:x,y,z");
  EXPECT_EQ(service.calls.load(), 2);
  auto reads = service.reads();
  ASSERT_GE(reads.size(), 3u);
  EXPECT_EQ(reads[reads.size() - 2], "x,y,z") << "the first attempt";
  EXPECT_EQ(reads.back(), "x,y,z") << "the retry had the whole request stream again";

  // Past the retry buffer (1 MiB) the request stream is not kept: UNAVAILABLE comes back after
  // one attempt. Within it, the default policy's two retries.
  service.calls = 0;
  auto small = client_stream("unavailable", {"s1", "s2"}, last);
  EXPECT_EQ(small.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(service.calls.load(), 3) << "1 attempt and 2 retries";
  service.calls = 0;
  const std::string big(512 * 1024, 'b');
  auto large = client_stream("unavailable", {"1" + big, "2" + big, "3" + big}, last);
  EXPECT_EQ(large.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(large.error_message(), "again");
  EXPECT_EQ(service.calls.load(), 1) << "a request stream past the retry buffer was retried";
  EXPECT_EQ(service.reads().back().size(), 3 * 16 + 2u) << "the backend had all three messages";

  // The timeouts start once the request stream has ended, as in Envoy.
  ASSERT_TRUE(chain_->set_config(ads_timeout_route("1s", "400ms")));
  {  // A slow client stream outlasts both timeouts before its end, and is not cut.
    service.calls = 0;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 10s);
    auto call = stub->DeltaAggregatedResources(&ctx);
    for (std::string nonce : {"x", "y"}) {
      EXPECT_TRUE(call->Write(message("slow", nonce)));
      std::this_thread::sleep_for(700ms);
    }
    EXPECT_TRUE(call->WritesDone());
    Response resp;
    EXPECT_TRUE(call->Read(&resp));
    EXPECT_EQ(resp.nonce(), "read:x,y");
    auto st = call->Finish();
    EXPECT_TRUE(st.ok()) << st.error_code() << " " << st.error_message();
    EXPECT_EQ(service.calls.load(), 1);
  }
  {  // A bidirectional stream answered all along, 1.2 s long: then the backend stalls after the
     // client's end, and the route timeout, counted from that end, cuts it (UT).
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 10s);
    auto call = stub->DeltaAggregatedResources(&ctx);
    Response resp;
    for (std::string nonce : {"p", "q"}) {
      ASSERT_TRUE(call->Write(message("echo-stall", nonce)));
      ASSERT_TRUE(call->Read(&resp));
      EXPECT_EQ(resp.nonce(), "echo:" + nonce);
      std::this_thread::sleep_for(600ms);
    }
    const auto ended = std::chrono::steady_clock::now();
    EXPECT_TRUE(call->WritesDone());
    EXPECT_FALSE(call->Read(&resp)) << "got " << resp.nonce();
    const auto cut_after = std::chrono::steady_clock::now() - ended;
    EXPECT_FALSE(call->Finish().ok());
    EXPECT_GE(cut_after, 800ms) << "cut before the route timeout, counted from the request's end";
    EXPECT_LT(cut_after, 3s) << "the route timeout (1s) did not cut the stalled stream";
    EXPECT_TRUE(requests_reach({"request_protocol=\"grpc\"", "response_flags=\"UT\""}, 1))
        << chain_->waypoint_metrics_text();
  }
  service.release();
  grpc_->server->Shutdown(std::chrono::system_clock::now() + 1s);
}

// ---- binding, telemetry
// ------------------------------------------------------------------------------------

awaitable<void> connect_status(tcp::endpoint hbone, std::shared_ptr<asio::ssl::context> ctx,
                               std::string authority, Result<int>& out) {
  out = co_await hbone_request(hbone, *ctx, "CONNECT", authority);
}

TEST_F(WaypointChainTest, DestinationNotBoundToTheWaypointIsRefusedBeforeAnyByte) {
  ASSERT_NO_FATAL_FAILURE(start(10, reviews_to_v1(), {Backend::kReviewsV1, Backend::kPlain}));
  auto creds = chain_->pki().credentials(chain_->pki().id("default", "client"));
  auto& plain = chain_->backend("plain");
  auto status_of = [&](const std::string& authority) {
    asio::io_context io;
    Result<int> got = failf("not run");
    run_coroutine(
        io,
        [&] { return connect_status(chain_->waypoint_hbone, creds->client_ctx, authority, got); },
        20s);
    return got;
  };
  // A service and a workload that exist but use no waypoint: 401; an unknown address: 503.
  const std::vector<std::pair<std::string, int>> refused = {
      {net::format_endpoint(chain_->vip("plain")), 401},
      {net::format_endpoint(chain_->endpoint("plain")), 401},
      {"127.0.0.1:8080", 503}};
  for (const auto& [authority, want] : refused) {
    SCOPED_TRACE(authority);
    auto st = status_of(authority);
    ASSERT_TRUE(st) << st.error().describe();
    EXPECT_EQ(*st, want) << "the waypoint must refuse a destination not bound to it";
  }
  EXPECT_EQ(plain.connections(), 0) << "no byte relayed to an unbound destination";
  EXPECT_EQ(plain.hits(), 0);

  // The bound service is accepted.
  auto bound = status_of(net::format_endpoint(chain_->vip("reviews")));
  ASSERT_TRUE(bound) << bound.error().describe();
  EXPECT_EQ(*bound, 200);

  // And the plain service is reachable without the waypoint (its ztunnel, not the waypoint).
  auto direct = get("plain", "/direct");
  ASSERT_TRUE(direct) << direct.error().describe();
  EXPECT_EQ(direct->status, 200);
  EXPECT_EQ(direct->body, "plain");
  EXPECT_EQ(plain.hits(), 1);
  std::this_thread::sleep_for(200ms);
  for (const auto& l : chain_->access_lines()) {
    EXPECT_EQ(l.find("/direct"), std::string::npos) << "the waypoint saw plain's traffic: " << l;
  }
}

TEST_F(WaypointChainTest, RequestsAreCountedWithReporterWaypointAndLoggedOncePerRequest) {
  ASSERT_NO_FATAL_FAILURE(start(11, reviews_to_v1(), {Backend::kReviewsV1}));
  auto ok = run_requests(chain_->client().socks5, chain_->vip("reviews"), 5, 1, {}, "/counted");
  ASSERT_TRUE(ok.errors.empty()) << errors_of(ok);
  EXPECT_EQ(ok.statuses[200], 5);
  EXPECT_TRUE(poll_until(
      [&] { return waypoint_metric("istio_requests_total", {"response_code=\"200\""}) == 5; }, 5s))
      << chain_->waypoint_metrics_text();
  const auto text = chain_->waypoint_metrics_text();
  EXPECT_EQ(metric_sum(text, "istio_requests_total",
                       {"reporter=\"waypoint\"", "request_protocol=\"http\"",
                        fmt::format("source_principal=\"spiffe://{}\"", kClientPrincipal),
                        "destination_service_namespace=\"default\""}),
            5)
      << text;
  EXPECT_EQ(
      metric_sum(text, "istio_request_duration_milliseconds_count", {"reporter=\"waypoint\""}), 5);
  EXPECT_TRUE(poll_until(
      [&] {
        int n = 0;
        for (const auto& l : chain_->access_lines()) {
          if (l.find("reporter=waypoint") != std::string::npos &&
              l.find("/counted") != std::string::npos) {
            ++n;
          }
        }
        return n == 5;
      },
      5s))
      << chain_->waypoint().output();
}

}  // namespace
}  // namespace zt::testing
