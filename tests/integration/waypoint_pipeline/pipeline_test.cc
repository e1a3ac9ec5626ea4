// The waypoint's per-request pipeline (waypoint/proxy/pipeline.h) in process, end to end: a
// real Pipeline on the test's io_context drives requests through authorization, routing,
// faults, load balancing, outlier detection, pool limits, retries and timeouts, to endpoints
// reached over HBONE through real ztunnel processes (dedicated mode, one per endpoint workload
// on 127.0.61.x, certified by one test CA) in front of scripted HTTP/1.1 backends.
#include "waypoint/proxy/pipeline.h"

#include <map>
#include <set>
#include <sstream>

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include "common/identity/certificate_manager.h"
#include "common/identity/certificate_provider.h"
#include "common/stats/registry.h"
#include "tests/integration/waypoint_pipeline/scripted_server.h"
#include "tests/support/coro.h"
#include "tests/support/l7_config.h"
#include "tests/support/mesh.h"
#include "tests/support/test_pki.h"
#include "waypoint/state/config_store.h"
#include "ztunnel/state/local_config.h"
#include "ztunnel/state/store.h"

namespace zt::waypoint::proxy {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr uint16_t kAppPort = 8080;
constexpr uint16_t kServicePort = 80;
constexpr std::string_view kClientPrincipal = "cluster.local/ns/default/sa/client";

struct EndpointSpec {
  std::string name;     // workload (and service account) name
  int host = 0;         // 127.0.61.<host>
  std::string service;  // the service it serves (short name, namespace default)
  std::string version;
  bool h2 = false;  // an h2c backend (H2Server) instead of a ScriptedServer
};

std::string endpoint_ip(int host) { return fmt::format("127.0.61.{}", host); }
std::string fqdn(std::string_view name) {
  return fmt::format("{}.default.svc.cluster.local", name);
}

// Sends every request of `requests` through the pipeline one after another.
awaitable<void> send_all(Pipeline& p, std::shared_ptr<const StreamContext> stream,
                         std::vector<Request> requests, std::vector<Response>& out) {
  for (auto& r : requests) out.push_back(co_await p.handle(stream, std::move(r)));
}

// One request; its response and how long it took.
awaitable<void> send_timed(Pipeline& p, std::shared_ptr<const StreamContext> stream, Request r,
                           Response& out, Clock::duration& took, int& pending) {
  auto start = Clock::now();
  out = co_await p.handle(stream, std::move(r));
  took = Clock::now() - start;
  --pending;
}

Request get(std::string target, http::HeaderList headers = {}, std::string method = "GET") {
  Request r;
  r.version = HttpVersion::kHttp11;
  r.head.method = std::move(method);
  r.head.target = std::move(target);
  r.head.authority = "reviews:80";
  r.head.headers = std::move(headers);
  return r;
}

// A gRPC call from an HTTP/2 downstream to service "grpc", its body (if any) still to be set.
Request grpc_request(std::string target) {
  Request r = get(std::move(target));
  r.version = HttpVersion::kHttp2;
  r.head.method = "POST";
  r.head.authority = "grpc:80";
  r.head.headers.push_back({"content-type", "application/grpc"});
  return r;
}

// A DestinationRule for service `host` with `policy` (trafficPolicy's fields, YAML flow).
std::string destination_rule(std::string_view host, std::string_view policy) {
  return fmt::format(R"(
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: {0}, namespace: default}}
spec:
  host: {0}
  trafficPolicy: {{{1}}}
)",
                     host, policy);
}

// An HTTPRoute sending service `name` to itself, with `rule` (more of its one rule's fields).
std::string route_to_itself(const std::string& name, std::string_view rule) {
  return fmt::format(R"(
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {0}, namespace: default}}
spec:
  parentRefs: [{{kind: Service, name: {0}, port: 80}}]
  rules:
  - backendRefs: [{{name: {0}, port: 80}}]
{1})",
                     name, rule);
}

std::string version_of(const Response& r) {
  auto v = http::find_header(r.headers, "x-version");
  return v ? std::string(*v) : std::string();
}

// A connected TCP pair on 127.0.62.<host>: [0] is the test's end, [1] the downstream's.
std::pair<tcp::socket, tcp::socket> socket_pair(asio::io_context& io, int host) {
  tcp::acceptor acceptor(
      io, tcp::endpoint(asio::ip::make_address(fmt::format("127.0.62.{}", host)), 0));
  tcp::socket a(io);
  a.connect(acceptor.local_endpoint());
  tcp::socket b = acceptor.accept();
  return {std::move(a), std::move(b)};
}

// Runs the upgraded relay for `downstream`, writes `send` from the test's end and reads
// `expect_bytes` bytes back, then closes the test's end.
awaitable<void> exercise_relay(std::function<awaitable<void>(Duplex, std::string)> relay,
                               tcp::socket& mine, tcp::socket downstream, std::string already,
                               std::string send, size_t expect_bytes, std::string& got,
                               bool& relay_done) {
  auto ex = co_await asio::this_coro::executor;
  asio::co_spawn(ex, relay(Duplex::of_socket(std::move(downstream)), std::move(already)),
                 [&relay_done](std::exception_ptr) { relay_done = true; });
  auto [wec, wn] = co_await asio::async_write(mine, asio::buffer(send), kTuple);
  EXPECT_FALSE(wec);
  got.resize(expect_bytes);
  auto [rec, rn] = co_await asio::async_read(mine, asio::buffer(got), kTuple);
  EXPECT_FALSE(rec) << rec.message();
  got.resize(rn);
  error_code ec;
  mine.shutdown(tcp::socket::shutdown_send, ec);
  asio::steady_timer t(ex);
  for (int i = 0; i < 100 && !relay_done; ++i) {
    t.expires_after(20ms);
    co_await t.async_wait(kTuple);
  }
}

// relay_tcp with `already` as the first bytes; reads everything the upstream sends until EOF.
awaitable<void> exercise_tcp(Pipeline& p, std::shared_ptr<const StreamContext> stream,
                             tcp::socket& mine, tcp::socket downstream, std::string already,
                             std::string& got, bool& relay_done) {
  auto ex = co_await asio::this_coro::executor;
  asio::co_spawn(ex,
                 p.relay_tcp(stream, Duplex::of_socket(std::move(downstream)), std::move(already)),
                 [&relay_done](std::exception_ptr) { relay_done = true; });
  char buf[4096];
  for (;;) {
    auto [ec, n] = co_await mine.async_read_some(asio::buffer(buf), kTuple);
    got.append(buf, n);
    if (ec) break;
  }
  error_code ec;
  mine.close(ec);
  asio::steady_timer t(ex);
  for (int i = 0; i < 100 && !relay_done; ++i) {
    t.expires_after(20ms);
    co_await t.async_wait(kTuple);
  }
}

class WaypointPipelineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    log_sink_ = std::make_shared<spdlog::sinks::ostream_sink_mt>(log_stream_);
    spdlog::default_logger()->sinks().push_back(log_sink_);
  }

  void TearDown() override {
    // Requests still in flight (a failed test) go away before the pipeline does.
    for (auto& l : leaving_) {
      if (!l->done) l->leave("DC", "the test ended");
    }
    run_until(
        [&] {
          return std::all_of(leaving_.begin(), leaving_.end(),
                             [](const auto& l) { return l->done; });
        },
        10s);
    if (pipeline_) {
      pipeline_->close_idle();
      tasks_.cancel_all();
      testing::run_coroutine(
          io_, [&]() -> awaitable<void> { co_await tasks_.wait_empty(std::chrono::seconds(20)); });
      pipeline_.reset();
      // Let aborted streams and connections finish their coroutines.
      io_.run_for(200ms);
    }
    auto& sinks = spdlog::default_logger()->sinks();
    sinks.erase(std::remove(sinks.begin(), sinks.end(), log_sink_), sinks.end());
  }

  // The local config: a client workload (127.0.62.<block+9>, not running), the endpoint
  // workloads, one service per distinct `service` (VIP 127.0.62.<block+i>, port 80 -> 8080).
  std::string mesh_yaml(const std::vector<EndpointSpec>& eps, int block) {
    std::string out = fmt::format(R"(workloads:
- uid: cluster1//v1/Pod/default/client
  name: client
  namespace: default
  serviceAccount: client
  workloadIps: ["127.0.62.{}"]
  protocol: HBONE
  workloadName: client-deploy
  canonicalName: client-app
  canonicalRevision: v1
  clusterId: Kubernetes
)",
                                  block + 9);
    for (const auto& e : eps) {
      out += fmt::format(R"(- uid: cluster1//v1/Pod/default/{0}
  name: {0}
  namespace: default
  serviceAccount: {0}
  workloadIps: ["{1}"]
  protocol: HBONE
  workloadName: {0}-deploy
  canonicalName: {2}
  canonicalRevision: {3}
  clusterId: Kubernetes
  services:
    "default/{4}": {{"80": 8080}}
)",
                         e.name, endpoint_ip(e.host), e.service, e.version, fqdn(e.service));
    }
    out += "services:\n";
    std::vector<std::string> names;
    for (const auto& e : eps) {
      if (std::find(names.begin(), names.end(), e.service) == names.end()) {
        names.push_back(e.service);
      }
    }
    for (size_t i = 0; i < names.size(); ++i) {
      out += fmt::format(R"(- name: {0}
  namespace: default
  hostname: {1}
  vips: ["/127.0.62.{2}"]
  ports: {{"80": 8080}}
)",
                         names[i], fqdn(names[i]), block + static_cast<int>(i));
    }
    return out;
  }

  // Publishes the state and `l7` config, starts a backend and a ztunnel per endpoint and the
  // pipeline. `block` keeps each test's addresses apart (127.0.6x.<block..block+9>).
  void start(const std::vector<EndpointSpec>& eps, const std::string& l7, int block) {
    block_ = block;
    ca_ = pki_.write_ca_files(dir_.path());
    auto mesh = mesh_yaml(eps, block);
    auto config_path = dir_.path() / "mesh.yaml";
    testing::write_file(config_path, mesh);
    auto parsed = zt::state::parse_local_config(mesh);
    ASSERT_TRUE(parsed) << parsed.error().describe() << "\n" << mesh;
    store_.publish(*parsed);
    auto snapshot = state::build_config_snapshot(l7, "test");
    ASSERT_TRUE(snapshot) << snapshot.error().describe();
    config_.publish(*snapshot);

    for (const auto& e : eps) {
      tcp::endpoint app(asio::ip::make_address(endpoint_ip(e.host)), kAppPort);
      if (e.h2) {
        h2_servers_[e.name] = std::make_unique<testing::H2Server>(app);
      } else {
        servers_[e.name] = std::make_unique<testing::ScriptedServer>(app, e.version);
      }
      auto z = testing::ZtunnelProcess::start({.name = e.name,
                                               .config = config_path,
                                               .ca_cert = ca_.cert_path,
                                               .ca_key = ca_.key_path,
                                               .socks5 = false,
                                               .workers = 1});
      ASSERT_TRUE(z) << z.error().describe();
      ztunnels_.push_back(std::move(*z));
    }

    auto ca = identity::CertificateAuthority::load(ca_.cert_path.string(), ca_.key_path.string());
    ASSERT_TRUE(ca) << ca.error().describe();
    certs_ = std::make_unique<identity::CertificateManager>(
        std::make_shared<identity::BuiltinCaProvider>(std::move(*ca)));
    Self self{.name = "waypoint",
              .namespace_name = "default",
              .identity = pki_.id("default", "waypoint"),
              .ips = {asio::ip::make_address(fmt::format("127.0.62.{}", block + 8))},
              .hostname = "waypoint.default.svc.cluster.local"};
    ctx_ = std::make_unique<WaypointContext>(WaypointContext{
        .self = self,
        .settings = {},
        .state = store_,
        .certs = *certs_,
        .config = config_,
        .metrics = metrics_,
    });
    pipeline_ = std::make_unique<Pipeline>(*ctx_, io_.get_executor(), tasks_);
  }

  // A stream bound to service `name` on port 80, from the client workload.
  std::shared_ptr<StreamContext> service_stream(
      const std::string& name,
      std::optional<std::string> principal = std::string(kClientPrincipal)) {
    auto st = store_.current();
    auto s = std::make_shared<StreamContext>();
    s->principal = principal;
    s->peer_identity = principal ? "spiffe://" + *principal : std::string();
    s->source_ip = asio::ip::make_address(fmt::format("127.0.62.{}", block_ + 9));
    s->peer_ip = s->source_ip;
    s->source_workload = st->find_workload("", s->source_ip);
    s->service = st->find_service_by_hostname(fqdn(name));
    EXPECT_TRUE(s->service) << name;
    if (s->service) s->destination_ip = s->service->vips.front().address;
    s->port = kServicePort;
    s->authority = net::format_endpoint(tcp::endpoint(s->destination_ip, kServicePort));
    return s;
  }

  std::vector<Response> run(std::shared_ptr<const StreamContext> stream,
                            std::vector<Request> requests,
                            std::chrono::seconds limit = std::chrono::seconds(120)) {
    std::vector<Response> out;
    testing::run_coroutine(
        io_, [&]() { return send_all(*pipeline_, stream, std::move(requests), out); }, limit);
    return out;
  }

  Response run_one(std::shared_ptr<const StreamContext> stream, Request r) {
    std::vector<Request> v;
    v.push_back(std::move(r));
    auto out = run(std::move(stream), std::move(v));
    return out.empty() ? Response{} : std::move(out.front());
  }

  // `n` copies of the same request, sent concurrently; responses and latencies.
  void run_concurrent(std::shared_ptr<const StreamContext> stream, const Request& r, int n,
                      std::vector<Response>& out, std::vector<Clock::duration>& took) {
    out.assign(n, Response{});
    took.assign(n, Clock::duration{});
    int pending = n;
    for (int i = 0; i < n; ++i) {
      asio::co_spawn(io_, send_timed(*pipeline_, stream, r, out[i], took[i], pending),
                     asio::detached);
    }
    auto deadline = Clock::now() + 60s;
    while (pending > 0 && Clock::now() < deadline) io_.run_one_for(100ms);
    io_.restart();
    EXPECT_EQ(pending, 0);
  }

  // A request in flight whose downstream can go away, as serve_http2 tells the pipeline: its
  // Request::gone filled in, then its handler cancelled.
  struct Leaving {
    std::shared_ptr<DownstreamGone> gone = std::make_shared<DownstreamGone>();
    asio::cancellation_signal cancel;
    bool done = false;
    Response answer;
    void leave(std::string flag, std::string why) {
      gone->flag = std::move(flag);
      gone->why = std::move(why);
      cancel.emit(asio::cancellation_type::terminal);
    }
  };
  // (Shared with the request's coroutine, which may outlive a failed test's body.)
  std::shared_ptr<Leaving> start_leaving(std::shared_ptr<const StreamContext> stream, Request r) {
    auto l = std::make_shared<Leaving>();
    r.gone = l->gone;
    asio::co_spawn(
        io_,
        [](Pipeline& p, std::shared_ptr<const StreamContext> s, Request req,
           std::shared_ptr<Leaving> into) -> awaitable<void> {
          into->answer = co_await p.handle(s, std::move(req));
        }(*pipeline_, std::move(stream), std::move(r), l),
        asio::bind_cancellation_slot(l->cancel.slot(),
                                     [l](std::exception_ptr) { l->done = true; }));
    leaving_.push_back(l);
    return l;
  }
  // Runs the io_context until `condition` holds or `limit` passes; whether it holds.
  bool run_until(const std::function<bool()>& condition, Clock::duration limit) {
    auto deadline = Clock::now() + limit;
    while (!condition() && Clock::now() < deadline) {
      io_.run_for(10ms);
      io_.restart();
    }
    return condition();
  }

  std::string metrics_text() const { return registry_.render_prometheus(); }
  std::string log_text() {
    spdlog::default_logger()->flush();
    return log_stream_.str();
  }

  testing::TempDir dir_;
  testing::TestPki pki_;
  testing::TestPki::CaFiles ca_;
  int block_ = 0;
  std::map<std::string, std::unique_ptr<testing::ScriptedServer>> servers_;
  std::map<std::string, std::unique_ptr<testing::H2Server>> h2_servers_;
  std::vector<std::unique_ptr<testing::ZtunnelProcess>> ztunnels_;
  stats::Registry registry_;
  WaypointMetrics metrics_{registry_};
  zt::state::StateStore store_;
  state::ConfigStore config_;
  std::unique_ptr<identity::CertificateManager> certs_;
  asio::io_context io_;
  async::TaskGroup tasks_{io_.get_executor()};
  std::unique_ptr<WaypointContext> ctx_;
  std::unique_ptr<Pipeline> pipeline_;
  std::vector<std::shared_ptr<Leaving>> leaving_;  // start_leaving's
  std::ostringstream log_stream_;
  std::shared_ptr<spdlog::sinks::ostream_sink_mt> log_sink_;
};

constexpr std::string_view kSplitRoute = R"(
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: reviews, namespace: default}
spec:
  parentRefs: [{group: "", kind: Service, name: reviews, port: 80}]
  rules:
  - matches: [{headers: [{name: end-user, value: jason}]}]
    backendRefs: [{name: reviews-v2, port: 80}]
  - backendRefs: [{name: reviews-v1, port: 80, weight: 90}, {name: reviews-v2, port: 80, weight: 10}]
)";

TEST_F(WaypointPipelineTest, WeightedSplitAndHeaderMatch) {
  start({{"reviews-a", 1, "reviews", "v0"},
         {"reviews-v1-pod", 2, "reviews-v1", "v1"},
         {"reviews-v2-pod", 3, "reviews-v2", "v2"}},
        std::string(kSplitRoute), 0);
  auto stream = service_stream("reviews");
  std::vector<Request> requests;
  for (int i = 0; i < 1000; ++i) requests.push_back(get("/reviews/1"));
  auto out = run(stream, std::move(requests), std::chrono::seconds(200));
  std::map<std::string, int> by_version;
  for (const auto& r : out) {
    EXPECT_EQ(r.status, 200);
    ++by_version[version_of(r)];
  }
  EXPECT_EQ(by_version["v1"] + by_version["v2"], 1000);
  EXPECT_GE(by_version["v1"], 850) << "v1=" << by_version["v1"] << " v2=" << by_version["v2"];
  EXPECT_LE(by_version["v1"], 950);
  EXPECT_EQ(servers_["reviews-a"]->hits(), 0);  // the route replaces the default

  std::vector<Request> jason;
  for (int i = 0; i < 50; ++i) jason.push_back(get("/reviews/1", {{"end-user", "jason"}}));
  for (const auto& r : run(stream, std::move(jason))) EXPECT_EQ(version_of(r), "v2");

  // The forwarded request: authority kept, forwarding headers added.
  auto seen = servers_["reviews-v2-pod"]->seen();
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen.back().host, "reviews:80");
  EXPECT_FALSE(seen.back().headers["x-request-id"].empty());
  EXPECT_FALSE(seen.back().headers["traceparent"].empty());
  EXPECT_EQ(seen.back().headers["x-forwarded-for"], "127.0.62.9");
}

TEST_F(WaypointPipelineTest, DefaultRouteTimeoutAndRetries) {
  start({{"details-a", 11, "details", "v1"}}, R"(
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: details, namespace: default}
spec:
  parentRefs: [{kind: Service, name: details, port: 80}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /slow}}]
    backendRefs: [{name: details, port: 80}]
    timeouts: {request: 300ms}
  - matches: [{path: {type: PathPrefix, value: /retry}}]
    backendRefs: [{name: details, port: 80}]
    retry: {codes: [503], attempts: 2, backoff: 10ms}
  - matches: [{path: {type: PathPrefix, value: /once}}]
    backendRefs: [{name: details, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: other, namespace: default}
spec:
  parentRefs: [{kind: Service, name: other, port: 80}]
  rules: [{backendRefs: [{name: other, port: 80}]}]
)",
        10);
  auto& backend = *servers_["details-a"];
  auto stream = service_stream("details");

  // No rule matches "/" here: 404 NR.
  auto nr = run_one(stream, get("/"));
  EXPECT_EQ(nr.status, 404);

  // Route timeout: the backend takes 2 s, the route allows 300 ms.
  backend.set_delay(2000ms);
  auto start = Clock::now();
  auto timed_out = run_one(stream, get("/slow"));
  auto took = Clock::now() - start;
  EXPECT_EQ(timed_out.status, 504);
  EXPECT_EQ(timed_out.body, "upstream request timeout");
  EXPECT_GE(took, 290ms);
  EXPECT_LT(took, 1500ms);
  backend.set_delay(0ms);

  // Retries: 503, 503, 200 -> 200 with exactly three hits.
  int before = backend.hits();
  backend.script({503, 503, 200});
  auto retried = run_one(stream, get("/retry"));
  EXPECT_EQ(retried.status, 200);
  EXPECT_EQ(backend.hits() - before, 3);

  // Exhausted: 503 x3 -> the last 503, flag URX.
  before = backend.hits();
  backend.script({503, 503, 503});
  auto exhausted = run_one(stream, get("/retry"));
  EXPECT_EQ(exhausted.status, 503);
  EXPECT_EQ(backend.hits() - before, 3);

  // Istio's default policy does not retry an application's 503.
  before = backend.hits();
  backend.script({503});
  EXPECT_EQ(run_one(stream, get("/once")).status, 503);
  EXPECT_EQ(backend.hits() - before, 1);

  auto text = metrics_text();
  EXPECT_GE(testing::metric_sum(
                text, "istio_requests_total",
                {"reporter=\"waypoint\"", "response_flags=\"UT\"", "response_code=\"504\""}),
            1);
  EXPECT_GE(testing::metric_sum(text, "istio_requests_total",
                                {"response_flags=\"URX\"", "response_code=\"503\""}),
            1);
  EXPECT_GE(testing::metric_sum(text, "istio_requests_total",
                                {"response_flags=\"NR\"", "response_code=\"404\""}),
            1);
  EXPECT_GE(testing::metric_sum(text, "waypoint_upstream_attempts_total"), 8);
}

TEST_F(WaypointPipelineTest, OutlierEjectionAndReturn) {
  start({{"ratings-1", 21, "ratings", "v1"},
         {"ratings-2", 22, "ratings", "v1"},
         {"ratings-3", 23, "ratings", "v1"}},
        destination_rule("ratings",
                         "loadBalancer: {simple: ROUND_ROBIN}, outlierDetection: "
                         "{consecutive5xxErrors: 2, interval: 100ms, baseEjectionTime: 2s, "
                         "maxEjectionPercent: 100}"),
        20);
  auto& bad = *servers_["ratings-3"];
  bad.set_default_status(500);
  auto stream = service_stream("ratings");
  std::vector<Request> warm;
  for (int i = 0; i < 12; ++i) warm.push_back(get("/r"));
  auto first = run(stream, std::move(warm));
  int bad_hits = bad.hits();
  EXPECT_EQ(bad_hits, 2) << "ejected after its second consecutive 5xx";

  // Ejected: the others take all the traffic.
  std::vector<Request> more;
  for (int i = 0; i < 20; ++i) more.push_back(get("/r"));
  for (const auto& r : run(stream, std::move(more))) EXPECT_EQ(r.status, 200);
  EXPECT_EQ(bad.hits(), bad_hits);
  EXPECT_GT(servers_["ratings-1"]->hits(), 10);
  EXPECT_GT(servers_["ratings-2"]->hits(), 10);
  EXPECT_GE(testing::metric_sum(metrics_text(), "waypoint_outlier_ejections_total"), 1);

  // After the ejection time it gets traffic again.
  bad.set_default_status(200);
  io_.run_for(2200ms);
  io_.restart();
  std::vector<Request> after;
  for (int i = 0; i < 12; ++i) after.push_back(get("/r"));
  for (const auto& r : run(stream, std::move(after))) EXPECT_EQ(r.status, 200);
  EXPECT_GE(bad.hits() - bad_hits, 3);
}

// A configuration change that leaves a destination's DestinationRule as it was (here: a new
// route for another service) keeps its state: the ejected endpoint stays ejected. A change of
// its own policy starts afresh, and the endpoint gets traffic again at once.
TEST_F(WaypointPipelineTest, AnEjectionOutlivesAConfigurationChangeThatKeepsItsPolicy) {
  const std::string rule =
      destination_rule("ratings",
                       "loadBalancer: {simple: ROUND_ROBIN}, outlierDetection: "
                       "{consecutive5xxErrors: 2, interval: 100ms, baseEjectionTime: 60s, "
                       "maxEjectionPercent: 100}");
  start({{"ratings-1", 161, "ratings", "v1"},
         {"ratings-2", 162, "ratings", "v1"},
         {"ratings-3", 163, "ratings", "v1"}},
        rule, 160);
  auto& bad = *servers_["ratings-3"];
  bad.set_default_status(500);
  auto stream = service_stream("ratings");
  auto requests = [](int n) {
    std::vector<Request> out;
    for (int i = 0; i < n; ++i) out.push_back(get("/r"));
    return out;
  };
  (void)run(stream, requests(12));
  const int bad_hits = bad.hits();
  ASSERT_EQ(bad_hits, 2) << "ejected after its second consecutive 5xx";
  bad.set_default_status(200);

  auto publish = [&](const std::string& l7) {
    auto snapshot = state::build_config_snapshot(l7, "test");
    ASSERT_TRUE(snapshot) << snapshot.error().describe();
    config_.publish(*snapshot);
  };
  const auto generation = config_.current()->generation;
  ASSERT_NO_FATAL_FAILURE(publish(rule + "---\n" + route_to_itself("other", "")));
  ASSERT_GT(config_.current()->generation, generation);
  for (const auto& r : run(stream, requests(20))) EXPECT_EQ(r.status, 200);
  EXPECT_EQ(bad.hits(), bad_hits) << "still ejected after a change that kept its policy";

  ASSERT_NO_FATAL_FAILURE(
      publish(destination_rule("ratings",
                               "loadBalancer: {simple: ROUND_ROBIN}, outlierDetection: "
                               "{consecutive5xxErrors: 3, interval: 100ms, baseEjectionTime: 60s, "
                               "maxEjectionPercent: 100}")));
  for (const auto& r : run(stream, requests(12))) EXPECT_EQ(r.status, 200);
  EXPECT_GE(bad.hits() - bad_hits, 3) << "a changed policy starts with no ejection";
}

TEST_F(WaypointPipelineTest, ConsistentHashIsSticky) {
  start({{"cart-1", 81, "cart", "v1"}, {"cart-2", 82, "cart", "v2"}, {"cart-3", 83, "cart", "v3"}},
        R"(
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: cart, namespace: default}
spec:
  host: cart
  trafficPolicy:
    loadBalancer: {consistentHash: {httpHeaderName: x-user}}
)",
        80);
  auto stream = service_stream("cart");
  std::map<std::string, std::set<std::string>> versions_by_user;
  std::set<std::string> all;
  for (int u = 0; u < 12; ++u) {
    std::vector<Request> requests;
    auto user = fmt::format("user-{}", u);
    for (int i = 0; i < 5; ++i) requests.push_back(get("/cart", {{"x-user", user}}));
    for (const auto& r : run(stream, std::move(requests))) {
      EXPECT_EQ(r.status, 200);
      versions_by_user[user].insert(version_of(r));
      all.insert(version_of(r));
    }
  }
  for (const auto& [user, versions] : versions_by_user) {
    EXPECT_EQ(versions.size(), 1u) << user << " was spread over several endpoints";
  }
  EXPECT_GE(all.size(), 2u) << "users spread over the endpoints";
}

TEST_F(WaypointPipelineTest, PoolOverflowIsUO) {
  start({{"slow-1", 31, "slow", "v1"}}, R"(
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: slow, namespace: default}
spec:
  host: slow.default.svc.cluster.local
  trafficPolicy:
    connectionPool: {tcp: {maxConnections: 1}, http: {http1MaxPendingRequests: 1}}
)",
        30);
  auto& backend = *servers_["slow-1"];
  backend.set_delay(400ms);
  auto stream = service_stream("slow");
  std::vector<Response> out;
  std::vector<Clock::duration> took;
  run_concurrent(stream, get("/"), 5, out, took);
  int ok = 0, overflow = 0;
  for (const auto& r : out) {
    if (r.status == 200) ++ok;
    if (r.status == 503) {
      ++overflow;
      EXPECT_EQ(http::find_header(r.headers, "x-envoy-overloaded").value_or(""), "true");
    }
  }
  EXPECT_EQ(ok, 2) << "one on the connection, one queued for it";
  EXPECT_EQ(overflow, 3);
  EXPECT_EQ(backend.hits(), 2);
  EXPECT_EQ(testing::metric_sum(metrics_text(), "istio_requests_total",
                                {"response_flags=\"UO\"", "response_code=\"503\""}),
            3);
}

// A request waiting in the pool's queue whose downstream goes away leaves the queue: it is
// recorded as the downstream's (DR, not UO), and its place is free for the next one.
TEST_F(WaypointPipelineTest, AQueuedRequestWhoseDownstreamGoesAwayLeavesTheQueue) {
  start({{"slow-2", 141, "slow", "v1"}},
        destination_rule("slow",
                         "connectionPool: {tcp: {maxConnections: 1}, http: "
                         "{http1MaxPendingRequests: 1}}"),
        140);
  auto& backend = *servers_["slow-2"];
  backend.set_delay(2s);
  auto stream = service_stream("slow");
  auto first = start_leaving(stream, get("/first"));
  ASSERT_TRUE(run_until([&] { return backend.hits() == 1; }, 30s));
  auto queued = start_leaving(stream, get("/queued"));
  // It holds the one queue place (http1MaxPendingRequests: 1): the next request overflows.
  auto probe = run_one(stream, get("/probe"));
  EXPECT_EQ(probe.status, 503);
  EXPECT_EQ(http::find_header(probe.headers, "x-envoy-overloaded").value_or(""), "true");
  ASSERT_FALSE(queued->done);
  queued->leave("DR", "the downstream reset the stream");
  EXPECT_TRUE(run_until([&] { return queued->done; }, 1s)) << "it stayed in the queue";
  EXPECT_TRUE(run_until([&] { return first->done; }, 10s));
  EXPECT_EQ(first->answer.status, 200);
  EXPECT_EQ(backend.hits(), 1) << "the request that went away was sent";
  // One on the connection and one queued, as before: its place in the queue was given back.
  std::vector<Response> out;
  std::vector<Clock::duration> took;
  run_concurrent(stream, get("/after"), 2, out, took);
  for (const auto& r : out) EXPECT_EQ(r.status, 200) << r.body;
  const auto text = metrics_text();
  EXPECT_EQ(testing::metric_sum(text, "istio_requests_total",
                                {"response_flags=\"DR\"", "response_code=\"0\""}),
            1)
      << text;
  // (Only the probe overflowed: the request that went away is not recorded UO.)
  EXPECT_EQ(testing::metric_sum(text, "istio_requests_total", {"response_flags=\"UO\""}), 1);
}

// A 101 whose relay never runs (its downstream went away, or the answer could not be written)
// gives its upstream connection's place back when the answer is dropped.
TEST_F(WaypointPipelineTest, AnUpgradeWhoseRelayNeverRunsGivesItsConnectionBack) {
  start({{"echo-2", 191, "echo", "v1"}},
        destination_rule("echo",
                         "connectionPool: {tcp: {maxConnections: 1}, http: "
                         "{http1MaxPendingRequests: 1}}"),
        190);
  auto stream = service_stream("echo");
  {
    auto up = run_one(stream, get("/ws", {{"connection", "Upgrade"}, {"upgrade", "websocket"}}));
    ASSERT_EQ(up.status, 101);
    ASSERT_TRUE(up.upgraded);
  }
  auto next = start_leaving(stream, get("/after"));
  EXPECT_TRUE(run_until([&] { return next->done; }, 5s)) << "the upgrade kept the connection";
  EXPECT_EQ(next->answer.status, 200) << next->answer.body;
}

TEST_F(WaypointPipelineTest, FaultAbortAndDelay) {
  start({{"faulty-1", 41, "faulty", "v1"}}, R"(
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: faulty, namespace: default}
spec:
  parentRefs: [{kind: Service, name: faulty, port: 80}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /abort}}]
    backendRefs: [{name: faulty, port: 80}]
    fault: {abort: {httpStatus: 503, percentage: {value: 50}}}
  - matches: [{path: {type: PathPrefix, value: /delay}}]
    backendRefs: [{name: faulty, port: 80}]
    fault: {delay: {fixedDelay: 200ms, percentage: {value: 100}}}
  - backendRefs: [{name: faulty, port: 80}]
)",
        40);
  auto& backend = *servers_["faulty-1"];
  auto stream = service_stream("faulty");
  backend.set_default_status(200);
  // Abort 50%: the aborted ones never reach the backend.
  std::vector<Request> requests;
  for (int i = 0; i < 1000; ++i) requests.push_back(get("/abort"));
  auto out = run(stream, std::move(requests), std::chrono::seconds(200));
  int aborted = 0;
  for (const auto& r : out) aborted += r.status == 503 ? 1 : 0;
  // (Binomial, n = 1000, p = 0.5: sd 15.8. 450..550 failed about once in 600 runs; 400..600 is
  // 6.3 sd, about once in 3 billion, and still tells 50 % from 40 % or 60 %.)
  EXPECT_GE(aborted, 400);
  EXPECT_LE(aborted, 600);
  EXPECT_EQ(backend.hits(), 1000 - aborted);

  // A fixed delay on every matched request; unmatched ones are not delayed.
  for (int i = 0; i < 3; ++i) {
    auto start = Clock::now();
    EXPECT_EQ(run_one(stream, get("/delay")).status, 200);
    EXPECT_GE(Clock::now() - start, 195ms);
  }
  auto start_fast = Clock::now();
  EXPECT_EQ(run_one(stream, get("/plain")).status, 200);
  EXPECT_LT(Clock::now() - start_fast, 150ms);

  auto text = metrics_text();
  EXPECT_EQ(testing::metric_sum(text, "istio_requests_total",
                                {"reporter=\"waypoint\"", "response_flags=\"FI\""}),
            aborted);
  EXPECT_EQ(testing::metric_sum(text, "istio_requests_total", {"response_flags=\"DI\""}), 3);
  auto log = log_text();
  EXPECT_NE(log.find("component=access reporter=waypoint"), std::string::npos);
  EXPECT_NE(log.find("flags=FI"), std::string::npos);
  EXPECT_NE(log.find("flags=DI"), std::string::npos);
}

// ... mirrored to `<name>-shadow`.
std::string mirrored_route(const std::string& name) {
  return route_to_itself(name, fmt::format(R"(    filters:
    - type: RequestMirror
      requestMirror: {{backendRef: {{name: {}-shadow, port: 80}}}}
)",
                                           name));
}

TEST_F(WaypointPipelineTest, MirrorNeverAffectsThePrimary) {
  start({{"web-1", 51, "web", "v1"}, {"shadow-1", 52, "web-shadow", "shadow"}},
        mirrored_route("web"), 50);
  auto& shadow = *servers_["shadow-1"];
  shadow.set_delay(1500ms);
  shadow.set_default_status(500);
  auto stream = service_stream("web");
  for (int i = 0; i < 5; ++i) {
    auto start = Clock::now();
    auto r = run_one(stream, get("/page"));
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(version_of(r), "v1");
    EXPECT_LT(Clock::now() - start, 700ms);
  }
  EXPECT_EQ(servers_["web-1"]->hits(), 5);
  // The shadow copies arrive (its answers are ignored).
  auto deadline = Clock::now() + 10s;
  while (shadow.hits() < 5 && Clock::now() < deadline) {
    io_.run_for(50ms);
    io_.restart();
  }
  EXPECT_EQ(shadow.hits(), 5);
  auto seen = shadow.seen();
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen.front().host, "reviews-shadow:80");
  EXPECT_EQ(seen.front().target, "/page");
}

// A shadow's long answer is no failure of the shadow's: the mirror takes its head and drops the
// rest, and outlier detection (one error ejects) does not eject the shadow.
TEST_F(WaypointPipelineTest, AShadowsLongAnswerIsNoFailure) {
  start({{"grpc-1", 201, "grpc", "v1", true}, {"grpc-shadow-1", 202, "grpc-shadow", "v1", true}},
        mirrored_route("grpc") + "---\n" +
            destination_rule("grpc-shadow",
                             "outlierDetection: {consecutive5xxErrors: 1, "
                             "consecutiveGatewayErrors: 1, interval: 100ms, baseEjectionTime: "
                             "30s, maxEjectionPercent: 100}"),
        200);
  auto stream = service_stream("grpc");
  Request r = get("/big");
  r.version = HttpVersion::kHttp2;
  r.head.authority = "grpc:80";
  auto primary = run_one(stream, std::move(r));
  EXPECT_EQ(primary.status, 200);
  primary.source.reset();
  auto& shadow = *h2_servers_["grpc-shadow-1"];
  ASSERT_TRUE(run_until([&] { return shadow.hits() == 1; }, 10s));
  // (The mirror's attempt ends within a moment of the shadow's answer; 1 s is ample.)
  io_.run_for(1s);
  io_.restart();
  // Not ejected: the shadow still takes requests of its own.
  Request direct = get("/ok");
  direct.version = HttpVersion::kHttp2;
  direct.head.authority = "grpc-shadow:80";
  auto answer = run_one(service_stream("grpc-shadow"), std::move(direct));
  EXPECT_EQ(answer.status, 200) << answer.body;
  EXPECT_EQ(shadow.hits(), 2);
}

// A shadow that fails is ejected by its own outlier detection, and the ejection is counted as
// any other is.
TEST_F(WaypointPipelineTest, AShadowThatFailsIsEjectedAndCounted) {
  start({{"web-1", 211, "web", "v1"}, {"shadow-1", 212, "web-shadow", "shadow"}},
        mirrored_route("web") + "---\n" +
            destination_rule("web-shadow",
                             "outlierDetection: {consecutive5xxErrors: 1, interval: 100ms, "
                             "baseEjectionTime: 30s, maxEjectionPercent: 100}"),
        210);
  servers_["shadow-1"]->set_default_status(500);
  auto r = run_one(service_stream("web"), get("/page"));
  EXPECT_EQ(r.status, 200);
  EXPECT_TRUE(run_until(
      [&] {
        return testing::metric_sum(metrics_text(), "waypoint_outlier_ejections_total",
                                   {"web-shadow.default"}) == 1;
      },
      10s))
      << metrics_text();
}

// A request body given out in the pieces it was made of, then its trailers.
class PiecesBody final : public BodySource {
 public:
  explicit PiecesBody(std::vector<std::string> pieces) : pieces_(std::move(pieces)) {}
  // Its sender is done from the start: every piece is here.
  awaitable<void> until_done() override { co_return; }
  awaitable<Piece> next() override {
    Piece p;
    if (at_ < pieces_.size()) {
      p.data = pieces_[at_++];
    } else {
      p.end = true;
      p.trailers.push_back({"x-end", "yes"});
    }
    co_return p;
  }

 private:
  std::vector<std::string> pieces_;
  size_t at_ = 0;
};

// A gRPC request from an HTTP/2 downstream arrives with its body still streaming (the server
// codec's Request::source): the primary gets it as it comes, and a mirror gets the whole body
// once it has ended, only if it was kept (within the retry buffer).
TEST_F(WaypointPipelineTest, AStreamedGrpcRequestIsMirroredWholeWithinTheRetryBuffer) {
  start({{"grpc-1", 101, "grpc", "v1", true}, {"grpc-shadow-1", 102, "grpc-shadow", "v1", true}},
        mirrored_route("grpc"), 100);
  auto stream = service_stream("grpc");
  auto call = [&](std::string target) {
    Request r = grpc_request(target);
    r.source = std::make_shared<PiecesBody>(std::vector<std::string>{"one-", "two-", "three"});
    return run_one(stream, std::move(r));
  };
  auto& primary = *h2_servers_["grpc-1"];
  auto& shadow = *h2_servers_["grpc-shadow-1"];
  auto wait_for_shadow = [&](int hits, Clock::duration limit) {
    auto deadline = Clock::now() + limit;
    while (shadow.hits() < hits && Clock::now() < deadline) {
      io_.run_for(20ms);
      io_.restart();
    }
  };
  auto kept = call("/kept");
  EXPECT_EQ(kept.status, 200);
  EXPECT_EQ(kept.body, "h2:/kept");
  ASSERT_EQ(primary.bodies().size(), 1u);
  EXPECT_EQ(primary.bodies().back(), "one-two-three");
  wait_for_shadow(1, 5s);
  ASSERT_EQ(shadow.bodies().size(), 1u);
  EXPECT_EQ(shadow.bodies().back(), "one-two-three");

  // A body longer than the retry buffer is not kept: the primary still gets all of it, the
  // mirror nothing.
  ctx_->settings.limits.retry_buffer_bytes = 8;
  auto long_call = call("/long");
  EXPECT_EQ(long_call.status, 200);
  ASSERT_EQ(primary.bodies().size(), 2u);
  EXPECT_EQ(primary.bodies().back(), "one-two-three");
  wait_for_shadow(2, 500ms);  // (the kept body's copy arrived within a few ms)
  EXPECT_EQ(shadow.hits(), 1) << "a body that was not kept was mirrored";
}

// A streamed request's route timeout starts when the downstream has sent its whole body, even
// if the backend stops reading it first (the body is then still being sent upstream).
TEST_F(WaypointPipelineTest, AStreamedRequestsTimeoutStartsAtItsEndThoughTheBackendReadsNothing) {
  start({{"grpc-1", 103, "grpc", "v1", true}},
        route_to_itself("grpc", "    timeouts: {request: 500ms}\n"), 110);
  Request r = grpc_request("/hold");
  // 2 MiB: more than the backend's 1 MiB stream window and the 64 KiB sent ahead of it.
  r.source =
      std::make_shared<PiecesBody>(std::vector<std::string>(4, std::string(512 * 1024, 'h')));
  auto started = Clock::now();
  auto answer = run_one(service_stream("grpc"), std::move(r));
  // (A local answer to a gRPC request: 504 as gRPC's UNAVAILABLE.)
  EXPECT_EQ(answer.status, 200);
  EXPECT_EQ(answer.body, "");
  EXPECT_EQ(http::find_header(answer.headers, "grpc-status").value_or(""), "14") << answer.status;
  EXPECT_EQ(http::find_header(answer.headers, "grpc-message").value_or(""),
            "upstream request timeout");
  EXPECT_LT(Clock::now() - started, 5s) << "the route timeout never started";
  EXPECT_EQ(testing::metric_sum(metrics_text(), "istio_requests_total",
                                {"reporter=\"waypoint\"", "response_flags=\"UT\""}),
            1);
}

// A downstream that goes away (serve_http2 fills in Request::gone, then cancels the handler)
// stops its request: the upstream stream is reset at once, the request is recorded as the
// downstream's doing (code 0, DR), and the endpoint is not blamed: outlier detection (one
// gateway error ejects) ejects nothing, and the next request reaches the same endpoint.
TEST_F(WaypointPipelineTest, ADownstreamThatGoesAwayStopsItsRequestAndIsNotTheEndpointsFault) {
  start({{"grpc-1", 121, "grpc", "v1", true}},
        destination_rule("grpc",
                         "outlierDetection: {consecutive5xxErrors: 1, consecutiveGatewayErrors: "
                         "1, interval: 100ms, baseEjectionTime: 30s, maxEjectionPercent: 100}"),
        120);
  auto& backend = *h2_servers_["grpc-1"];
  auto stream = service_stream("grpc");
  auto grpc_call = [](std::string target) {
    Request r = grpc_request(std::move(target));
    r.body = "unary";
    return r;
  };
  auto held = start_leaving(stream, grpc_call("/hold"));
  ASSERT_TRUE(run_until([&] { return backend.hits() == 1; }, 30s));
  // The downstream resets its stream.
  const auto left = Clock::now();
  held->leave("DR", "the downstream reset the stream");
  EXPECT_TRUE(run_until([&] { return held->done; }, 5s));
  EXPECT_TRUE(run_until([&] { return !backend.gone().empty(); }, 5s))
      << "the upstream request was not reset";
  EXPECT_LT(Clock::now() - left, 3s);
  EXPECT_EQ(backend.gone(), std::vector<std::string>{"DR"});
  const auto text = metrics_text();
  EXPECT_EQ(testing::metric_sum(text, "istio_requests_total",
                                {"response_flags=\"DR\"", "response_code=\"0\""}),
            1)
      << text;
  EXPECT_EQ(testing::metric_sum(text, "waypoint_outlier_ejections_total"), 0) << text;
  EXPECT_EQ(backend.hits(), 1) << "a request whose downstream went away was retried";
  EXPECT_NE(log_text().find("flags=DR"), std::string::npos);

  auto next = run_one(stream, grpc_call("/next"));
  EXPECT_EQ(next.status, 200) << next.body;
  EXPECT_EQ(backend.hits(), 2);
}

// A streamed answer whose upstream resets in mid-body is flagged UR and reported to outlier
// detection, as Envoy reports an upstream reset at any point: the endpoint is ejected.
TEST_F(WaypointPipelineTest, AnUpstreamThatFailsInMidBodyIsReportedToOutlierDetection) {
  start({{"grpc-1", 131, "grpc", "v1", true}, {"grpc-2", 132, "grpc", "v1", true}},
        destination_rule("grpc",
                         "loadBalancer: {simple: ROUND_ROBIN}, outlierDetection: "
                         "{consecutive5xxErrors: 1, interval: 100ms, baseEjectionTime: 30s, "
                         "maxEjectionPercent: 100}"),
        130);
  auto stream = service_stream("grpc");
  auto call = [&](std::string target) {
    Request r = grpc_request(std::move(target));
    r.body = "unary";
    return run_one(stream, std::move(r));
  };
  auto broken = call("/break");
  EXPECT_EQ(broken.status, 200);
  ASSERT_TRUE(broken.source) << "not streamed";
  std::string data, error;
  testing::run_coroutine(io_, [&]() -> awaitable<void> {
    for (;;) {
      auto piece = co_await broken.source->next();
      data += piece.data;
      if (piece.end || !piece.error.empty()) {
        error = piece.error;
        co_return;
      }
    }
  });
  EXPECT_EQ(data, "first");
  EXPECT_NE(error.find("stream reset"), std::string::npos) << error;
  broken.source.reset();
  const auto text = metrics_text();
  EXPECT_EQ(testing::metric_sum(text, "istio_requests_total", {"response_flags=\"UR\""}), 1)
      << text;
  EXPECT_EQ(testing::metric_sum(text, "waypoint_outlier_ejections_total"), 1) << text;
  // The endpoint that broke gets nothing more.
  auto& one = *h2_servers_["grpc-1"];
  auto& two = *h2_servers_["grpc-2"];
  ASSERT_EQ(one.hits() + two.hits(), 1);
  auto& ejected = one.hits() == 1 ? one : two;
  for (int i = 0; i < 4; ++i) EXPECT_EQ(call("/ok").status, 200);
  EXPECT_EQ(ejected.hits(), 1);
}

// A local answer to a gRPC request is a gRPC status, as Envoy sends its local replies: :status
// 200, trailers-only, grpc-status from the HTTP status, grpc-message the reason. It is logged as
// sent (200) with its grpc-status and flags. Other requests keep the HTTP answer.
TEST_F(WaypointPipelineTest, LocalAnswersToGrpcRequestsAreGrpcStatuses) {
  start(
      {{"grpc-1", 151, "grpc", "v1", true}},
      testing::authorization_policy("deny-secret", "grpc", "DENY",
                                    "  - to: [{operation: {paths: [\"/pkg.Secret/*\"]}}]\n") +
          route_to_itself("grpc", "    matches: [{path: {type: PathPrefix, value: /pkg.Open/}}]\n"),
      150);
  auto stream = service_stream("grpc");
  auto call = [&](std::string target, std::string content_type = "application/grpc") {
    Request r = grpc_request(std::move(target));
    http::set_header(r.head.headers, "content-type", content_type);
    r.body = "unary";
    return run_one(stream, std::move(r));
  };
  auto expect_grpc_status = [](const Response& r, std::string_view code, std::string_view message) {
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(http::find_header(r.headers, "content-type").value_or(""), "application/grpc");
    EXPECT_EQ(http::find_header(r.headers, "grpc-status").value_or(""), code);
    EXPECT_EQ(http::find_header(r.headers, "grpc-message").value_or(""), message);
    EXPECT_EQ(r.body, "");
  };
  expect_grpc_status(call("/pkg.Secret/Get"), "7", "RBAC: access denied");
  expect_grpc_status(call("/pkg.Secret/Get", "application/grpc+proto"), "7", "RBAC: access denied");
  auto not_routed = call("/pkg.Other/Get");  // no route: 404, "UNIMPLEMENTED"
  EXPECT_EQ(http::find_header(not_routed.headers, "grpc-status").value_or(""), "12");
  auto open = call("/pkg.Open/Get");  // the backend's own answer, untouched
  EXPECT_EQ(open.status, 200);
  EXPECT_EQ(version_of(open), "h2");
  EXPECT_EQ(open.body, "h2:/pkg.Open/Get");
  EXPECT_FALSE(http::find_header(open.headers, "grpc-status"));
  EXPECT_EQ(h2_servers_["grpc-1"]->hits(), 1);
  // gRPC-Web and plain HTTP/2 keep the HTTP status.
  EXPECT_EQ(call("/pkg.Secret/Get", "application/grpc-web").status, 403);
  EXPECT_EQ(call("/pkg.Secret/Get", "text/plain").status, 403);
  const auto text = metrics_text();
  EXPECT_EQ(testing::metric_sum(text, "istio_requests_total",
                                {"response_code=\"200\"", "grpc_response_status=\"7\""}),
            2)
      << text;
  EXPECT_EQ(testing::metric_sum(
                text, "istio_requests_total",
                {"response_code=\"200\"", "grpc_response_status=\"12\"", "response_flags=\"NR\""}),
            1)
      << text;
}

// A GRPCRoute on the service: one method goes to another service's endpoints, a header picks a
// third; the route's metrics and access line name it. Real gRPC framing over h2c to real HTTP/2
// backends.
TEST_F(WaypointPipelineTest, GrpcRouteRoutesByMethodAndHeader) {
  start({{"grpc-1", 181, "grpc", "v1", true},
         {"grpc-2", 182, "grpc-v2", "v2", true},
         {"grpc-3", 183, "grpc-canary", "v3", true}},
        R"(
{apiVersion: gateway.networking.k8s.io/v1, kind: GRPCRoute,
 metadata: {name: grpc, namespace: default},
 spec: {parentRefs: [{kind: Service, name: grpc, port: 80}], rules: [
   {matches: [{method: {service: pkg.Reviews, method: Get}}],
    backendRefs: [{name: grpc-v2, port: 80}]},
   {matches: [{method: {service: pkg.Reviews}, headers: [{name: end-user, value: jason}]}],
    backendRefs: [{name: grpc-canary, port: 80}]},
   {backendRefs: [{name: grpc, port: 80}]}]}}
)",
        180);
  auto stream = service_stream("grpc");
  auto call = [&](std::string target, http::HeaderList extra = {}) {
    Request r = grpc_request(std::move(target));
    for (auto& h : extra) r.head.headers.push_back(std::move(h));
    r.body = "unary";
    return run_one(stream, std::move(r));
  };
  auto get = call("/pkg.Reviews/Get");
  EXPECT_EQ(get.status, 200);
  EXPECT_EQ(version_of(get), "h2");
  EXPECT_EQ(get.body, "h2:/pkg.Reviews/Get");
  EXPECT_EQ(h2_servers_["grpc-2"]->hits(), 1);
  EXPECT_EQ(call("/pkg.Reviews/List", {{"end-user", "jason"}}).status, 200);
  EXPECT_EQ(h2_servers_["grpc-3"]->hits(), 1);
  EXPECT_EQ(call("/pkg.Reviews/List").status, 200);
  EXPECT_EQ(call("/pkg.Ratings/Get", {{"end-user", "jason"}}).status, 200);
  EXPECT_EQ(h2_servers_["grpc-1"]->hits(), 2);
  EXPECT_EQ(h2_servers_["grpc-2"]->hits(), 1);
  EXPECT_EQ(h2_servers_["grpc-3"]->hits(), 1);
  const auto text = metrics_text();
  EXPECT_EQ(
      testing::metric_sum(text, "istio_requests_total",
                          {"request_protocol=\"grpc\"", "destination_service_name=\"grpc-v2\"",
                           "destination_canonical_service=\"grpc-v2\""}),
      1)
      << text;
  EXPECT_NE(log_text().find("route=\"default/grpc\""), std::string::npos);
}

// meshConfig.pathNormalization DECODE_AND_MERGE_SLASHES (--path-normalization): doubled and
// percent-encoded slashes are normalised before the policy sees the path, so they cannot bypass
// a DENY on /admin; the backend gets the normalised path.
TEST_F(WaypointPipelineTest, MergedAndDecodedSlashesCannotBypassADeny) {
  start(
      {{"locked-1", 91, "locked", "v1"}},
      testing::authorization_policy("deny-admin", "locked", "DENY",
                                    "  - to: [{operation: {paths: [\"/admin\", \"/admin/*\"]}}]\n"),
      90);
  ctx_->settings.path_normalization.mode = authz::PathNormalization::kDecodeAndMergeSlashes;
  auto& backend = *servers_["locked-1"];
  auto stream = service_stream("locked");
  for (std::string target : {"//admin", "/admin%2Fusers", "/admin%2fusers", "///admin//users",
                             "/public/..//admin", "/admin%5Cusers"}) {
    int before = backend.hits();
    auto r = run_one(stream, get(target));
    EXPECT_EQ(r.status, 403) << target;
    EXPECT_EQ(backend.hits(), before) << target;
  }
  EXPECT_EQ(run_one(stream, get("//public//page")).status, 200);
  bool merged = false;
  for (const auto& seen : backend.seen()) merged |= seen.target == "/public/page";
  EXPECT_TRUE(merged);
}

TEST_F(WaypointPipelineTest, AuthorizationWithNormalisation) {
  start({{"secure-1", 61, "secure", "v1"}},
        testing::authorization_policy("deny-admin", "secure", "DENY",
                                      R"(  - to: [{operation: {paths: ["/admin", "/admin/*"]}}]
  - to: [{operation: {methods: ["DELETE"]}}]
  - when: [{key: "request.headers[x-block]", values: ["yes"]}]
)") +
            testing::authorization_policy(
                "allow-client", "secure", "ALLOW",
                R"(  - from: [{source: {principals: ["cluster.local/ns/default/sa/client"]}}]
)"),
        60);
  auto& backend = *servers_["secure-1"];
  auto stream = service_stream("secure");
  struct Case {
    std::string method, target;
    http::HeaderList headers;
    int status;
  };
  std::vector<Case> cases = {
      {"GET", "/public", {}, 200},
      {"GET", "/admin", {}, 403},
      {"GET", "/admin/users", {}, 403},
      {"GET", "/a/../admin", {}, 403},  // dot segments resolved first
      {"GET", "/public/./../admin", {}, 403},
      {"GET", "/%61dmin", {}, 403},        // unreserved escapes decoded
      {"GET", "/admin%2Fusers", {}, 200},  // BASE keeps %2F: not "/admin/*" (Istio default)
      {"GET", "//admin", {}, 200},         // BASE does not merge slashes (Istio default)
      {"DELETE", "/public", {}, 403},
      {"GET", "/public", {{"x-block", "yes"}}, 403},
      {"GET", "/public", {{"x-block", "no"}}, 200},
  };
  for (const auto& c : cases) {
    int before = backend.hits();
    auto r = run_one(stream, get(c.target, c.headers, c.method));
    EXPECT_EQ(r.status, c.status) << c.method << " " << c.target;
    if (c.status == 403) {
      EXPECT_EQ(r.body, "RBAC: access denied");
      EXPECT_EQ(backend.hits(), before) << c.target;
    }
  }
  // What the backend saw is the normalised path.
  bool saw_normalised = false;
  for (const auto& s : backend.seen()) saw_normalised |= s.target == "/admin%2Fusers";
  EXPECT_TRUE(saw_normalised);

  // Principals: another identity, and no identity at all, are not allowed.
  EXPECT_EQ(
      run_one(service_stream("secure", "cluster.local/ns/other/sa/evil"), get("/public")).status,
      403);
  EXPECT_EQ(run_one(service_stream("secure", std::nullopt), get("/public")).status, 403);

  auto text = metrics_text();
  EXPECT_GE(testing::metric_sum(
                text, "istio_requests_total",
                {"reporter=\"waypoint\"", "response_code=\"403\"", "response_flags=\"-\""}),
            8);
  // A refused request is reported against the service it addressed.
  EXPECT_EQ(
      testing::metric_sum(text, "istio_requests_total", {"response_code=\"403\""}),
      testing::metric_sum(
          text, "istio_requests_total",
          {"response_code=\"403\"", "destination_service=\"secure.default.svc.cluster.local\"",
           "destination_service_name=\"secure\"", "destination_service_namespace=\"default\""}));
  EXPECT_GE(testing::metric_sum(
                text, "istio_requests_total",
                {"response_code=\"200\"", "source_workload=\"client-deploy\"",
                 "destination_workload=\"secure-1-deploy\"",
                 "destination_service=\"secure.default.svc.cluster.local\"",
                 "destination_principal=\"spiffe://cluster.local/ns/default/sa/secure-1\"",
                 "source_principal=\"spiffe://cluster.local/ns/default/sa/client\""}),
            4);
  // The rest of Istio's standard labels, which Kiali's graph and Istio's dashboards query.
  EXPECT_GE(
      testing::metric_sum(
          text, "istio_requests_total",
          {"response_code=\"200\"", "source_canonical_service=\"client-app\"",
           "source_canonical_revision=\"v1\"", "source_app=\"client-app\"", "source_version=\"v1\"",
           "source_cluster=\"Kubernetes\"", "destination_canonical_service=\"secure\"",
           "destination_canonical_revision=\"v1\"", "destination_app=\"secure\"",
           "destination_version=\"v1\"", "destination_cluster=\"Kubernetes\"",
           "connection_security_policy=\"mutual_tls\""}),
      4);
  EXPECT_GE(testing::metric_sum(text, "istio_request_duration_milliseconds_count",
                                {"reporter=\"waypoint\""}),
            13);
  auto log = log_text();
  EXPECT_NE(log.find("component=access reporter=waypoint"), std::string::npos);
  EXPECT_NE(log.find("status=403 flags=-"), std::string::npos);
  EXPECT_NE(log.find("upstream=\"127.0.61.61:8080\""), std::string::npos);
}

TEST_F(WaypointPipelineTest, UpgradeHttp2AndTcpRelay) {
  start({{"echo-1", 71, "echo", "v1"}, {"grpc-1", 72, "grpc", "v1", true}}, "", 70);
  auto stream = service_stream("echo");

  // WebSocket: 101 from the backend, then bytes both ways through the HBONE stream.
  auto up = run_one(stream, get("/ws", {{"connection", "Upgrade"}, {"upgrade", "websocket"}}));
  ASSERT_EQ(up.status, 101);
  ASSERT_TRUE(up.upgraded);
  auto seen = servers_["echo-1"]->seen();
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen.back().headers["upgrade"], "websocket");
  {
    auto [mine, theirs] = socket_pair(io_, 75);
    std::string got;
    bool done = false;
    testing::run_coroutine(io_, [&]() {
      return exercise_relay(up.upgraded, mine, std::move(theirs), "hello ", "world", 11, got, done);
    });
    EXPECT_EQ(got, "hello world");
    EXPECT_TRUE(done);
  }

  // A stream bound to a workload (pod ip authority): forwarded to that pod and port, no routes.
  {
    auto st = store_.current();
    auto w = std::make_shared<StreamContext>(*stream);
    w->service = nullptr;
    w->destination_ip = asio::ip::make_address(endpoint_ip(71));
    w->workload = st->find_workload("", w->destination_ip);
    ASSERT_TRUE(w->workload);
    w->port = kAppPort;
    w->authority = fmt::format("{}:{}", endpoint_ip(71), kAppPort);
    int before = servers_["echo-1"]->hits();
    auto r = run_one(w, get("/pod"));
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(version_of(r), "v1");
    EXPECT_EQ(servers_["echo-1"]->hits(), before + 1);
    EXPECT_EQ(servers_["echo-1"]->seen().back().target, "/pod");
  }

  // HTTP/2 requests go out as HTTP/2 (one shared client per endpoint).
  auto grpc = service_stream("grpc");
  std::vector<Request> h2_requests;
  for (int i = 0; i < 3; ++i) {
    auto r = get(fmt::format("/h2/{}", i));
    r.version = HttpVersion::kHttp2;
    r.head.authority = "grpc:80";
    h2_requests.push_back(std::move(r));
  }
  auto h2_out = run(grpc, std::move(h2_requests));
  ASSERT_EQ(h2_out.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(h2_out[i].status, 200);
    EXPECT_EQ(h2_out[i].body, fmt::format("h2:/h2/{}", i));
    EXPECT_EQ(http::find_header(h2_out[i].headers, "x-seen-version").value_or(""), "2");
  }
  EXPECT_EQ(h2_servers_["grpc-1"]->hits(), 3);

  // Plain TCP through the waypoint: relayed as bytes, one L4 access line.
  {
    auto [mine, theirs] = socket_pair(io_, 76);
    std::string got;
    bool done = false;
    testing::run_coroutine(io_, [&]() {
      return exercise_tcp(*pipeline_, stream, mine, std::move(theirs),
                          "GET /tcp HTTP/1.1\r\nHost: echo\r\nConnection: close\r\n\r\n", got,
                          done);
    });
    EXPECT_EQ(got.rfind("HTTP/1.1 200", 0), 0u) << got;
    EXPECT_NE(got.find("x-version: v1"), std::string::npos);
    EXPECT_TRUE(done);
    EXPECT_EQ(servers_["echo-1"]->seen().back().target, "/tcp");
    EXPECT_NE(log_text().find("reporter=waypoint protocol=tcp"), std::string::npos);
  }
}

}  // namespace
}  // namespace zt::waypoint::proxy
