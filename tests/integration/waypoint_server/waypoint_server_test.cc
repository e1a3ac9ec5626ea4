// bin/waypoint end to end on loopback (127.0.63.0/24 only): the HBONE listener's mTLS and
// CONNECT binding, HTTP/1.1 through the pipeline to a backend behind a real ztunnel, the admin /
// metrics / readiness endpoints, --config reloads and the SIGTERM drain. Each test uses its own
// block of addresses (127.0.63.<10k+1..>) so ctest may run them in parallel.
#include <csignal>
#include <functional>
#include <regex>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <signal.h>

#include "common/async/task_group.h"
#include "common/async/timeout.h"
#include "common/h2/connection.h"
#include "common/net/address.h"
#include "tests/support/coro.h"
#include "tests/support/daemon.h"
#include "tests/support/hbone_client.h"
#include "tests/support/mesh.h"
#include "tests/support/servers.h"
#include "tests/support/test_pki.h"

namespace zt::testing {
namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;

constexpr const char* kRouteV1 = R"(httpRoutes:
- metadata: {name: echo, namespace: default}
  spec:
    parentRefs: [{group: "", kind: Service, name: echo, port: 80}]
    rules:
    - backendRefs: [{name: echo, port: 80}]
)";

constexpr const char* kRouteV2 = R"(httpRoutes:
- metadata: {name: echo, namespace: default}
  spec:
    parentRefs: [{group: "", kind: Service, name: echo, port: 80}]
    rules:
    - matches: [{path: {type: PathPrefix, value: /v2}}]
      backendRefs: [{name: echo, port: 80}]
    - backendRefs: [{name: echo, port: 80}]
- metadata: {name: echo-extra, namespace: default}
  spec:
    parentRefs: [{group: "", kind: Service, name: echo, port: 80}]
    rules:
    - matches: [{path: {type: Exact, value: /extra}}]
      backendRefs: [{name: echo, port: 80}]
)";

constexpr const char* kRouteBroken = R"(httpRoutes:
- metadata: {name: echo, namespace: default}
  spec:
    parentRefs: [{group: "", kind: Service, name: echo, port: 80}]
    rules:
    - matches: [{path: {type: Glob, value: /x}}]
      backendRefs: [{name: echo, port: 80}]
)";

// The answer to one CONNECT, and what came back on the tunnel when it was accepted.
struct Exchange {
  int status = 0;
  std::string received;
};

// Opens an HBONE connection to `to`, sends CONNECT `authority`, and when it is accepted writes
// `payload` and reads until the waypoint closes the stream (or `read_for` passes).
// `before_write` runs once the stream is open, before the payload is written.
awaitable<Result<Exchange>> hbone_exchange(tcp::endpoint to, asio::ssl::context* ctx,
                                           std::string authority, std::string payload,
                                           std::function<void()>* before_write, size_t want = 0) {
  auto ex = co_await asio::this_coro::executor;
  tcp::socket s(ex);
  auto [cec] = co_await s.async_connect(to, kTuple);
  if (cec) co_return fail(cec, "connect");
  h2::TlsStream tls(std::move(s), *ctx);
  auto [hec] = co_await tls.async_handshake(asio::ssl::stream_base::client, kTuple);
  if (hec) co_return fail(hec, "handshake");
  auto conn = h2::Connection::create(std::move(tls), h2::Role::kClient, h2::Settings{});
  if (!conn) co_return tl::unexpected(conn.error());
  auto c = *conn;
  async::TaskGroup tasks(ex);
  tasks.spawn(c->run(), "test-hbone-client");
  auto opened = co_await c->open_connect(authority, {});
  Exchange out;
  if (!opened) {
    co_await close_and_join(*c, tasks);
    const auto& m = opened.error().message;
    if (m.rfind("http status: ", 0) == 0) {
      out.status = std::stoi(m.substr(13));
      co_return out;
    }
    co_return tl::unexpected(opened.error());
  }
  out.status = 200;
  auto stream = *opened;
  if (before_write && *before_write) (*before_write)();
  if (auto ec = co_await stream->write_all(asio::buffer(payload))) {
    co_await close_and_join(*c, tasks);
    co_return fail(ec, "write on the tunnel");
  }
  std::array<char, 4096> buf{};
  auto deadline = std::chrono::steady_clock::now() + 15s;
  for (;;) {
    auto left = deadline - std::chrono::steady_clock::now();
    if (left <= std::chrono::steady_clock::duration::zero()) break;
    auto r = co_await async::with_timeout(stream->read_some(asio::buffer(buf)), left);
    if (!r) break;
    auto [ec, n] = *r;
    out.received.append(buf.data(), n);
    if (ec) break;
    if (want > 0) {
      if (out.received.size() >= want) break;
      continue;
    }
    // One complete HTTP/1.1 response with a Content-Length is enough.
    auto head_end = out.received.find("\r\n\r\n");
    if (head_end != std::string::npos) {
      std::smatch m;
      std::string head = out.received.substr(0, head_end);
      if (std::regex_search(head, m, std::regex("[Cc]ontent-[Ll]ength: *([0-9]+)")) &&
          out.received.size() >= head_end + 4 + std::stoul(m[1].str())) {
        break;
      }
    }
  }
  co_await close_and_join(*c, tasks);
  co_return out;
}

class WaypointServer : public ::testing::Test {
 protected:
  std::string ip(int k) const { return fmt::format("127.0.63.{}", base_ + k); }

  // The mesh: the waypoint at .1, a client workload at .2, the server workload at .3 (behind
  // its own ztunnel), service "echo" (VIP .4, port 80 -> 8080) bound to the waypoint, service
  // "plain" (VIP .5) bound to none, and workload "direct" at .6 bound to the waypoint.
  std::string mesh_yaml() const {
    return fmt::format(R"(workloads:
- uid: cluster1//v1/Pod/default/client
  name: client
  namespace: default
  serviceAccount: client
  workloadIps: ["{0}"]
  protocol: HBONE
- uid: cluster1//v1/Pod/default/server
  name: server
  namespace: default
  serviceAccount: server
  workloadIps: ["{1}"]
  protocol: HBONE
  services:
    "default/echo.default.svc.cluster.local": {{"80": 8080}}
    "default/plain.default.svc.cluster.local": {{"80": 8080}}
- uid: cluster1//v1/Pod/default/direct
  name: direct
  namespace: default
  serviceAccount: direct
  workloadIps: ["{4}"]
  protocol: HBONE
  waypoint: {{destination: "/{5}"}}
services:
- name: echo
  namespace: default
  hostname: echo.default.svc.cluster.local
  vips: ["/{2}"]
  ports: {{"80": 8080}}
  waypoint: {{destination: "/{5}"}}
- name: plain
  namespace: default
  hostname: plain.default.svc.cluster.local
  vips: ["/{3}"]
  ports: {{"80": 8080}}
)",
                       ip(2), ip(3), ip(4), ip(5), ip(6), ip(1));
  }

  void start(int block, std::vector<std::string> extra = {}) {
    base_ = block * 10;
    ca_ = pki_.write_ca_files(dir_.path());
    write_file(dir_.path() / "mesh.yaml", mesh_yaml());
    write_file(dir_.path() / "waypoint.yaml", kRouteV1);
    std::vector<std::string> args = {
        "--name",
        "wp",
        "--namespace",
        "default",
        "--hbone-address",
        ip(1) + ":0",
        "--admin-address",
        "127.0.0.1:0",
        "--metrics-address",
        "127.0.0.1:0",
        "--readiness-address",
        "127.0.0.1:0",
        "--ca-cert",
        ca_.cert_path.string(),
        "--ca-key",
        ca_.key_path.string(),
        "--config",
        (dir_.path() / "waypoint.yaml").string(),
        "--worker-threads",
        "2",
        "--connection-termination-deadline",
        "2s",
    };
    args.insert(args.end(), extra.begin(), extra.end());
    auto d = Daemon::start(bin_path("waypoint"), args,
                           {"LOCAL_XDS_PATH=" + (dir_.path() / "mesh.yaml").string()});
    ASSERT_TRUE(d) << d.error().describe();
    wp_ = std::move(*d);
    ASSERT_TRUE(wp_->wait_for(std::regex("waypoint ready"), 20s)) << wp_->output();
    for (auto [name, ep] : {std::pair<const char*, tcp::endpoint*>{"hbone", &hbone_},
                            {"admin", &admin_},
                            {"metrics", &metrics_},
                            {"readiness", &readiness_}}) {
      auto at = wp_->listening(name, 2s);
      ASSERT_TRUE(at) << "no listening line for " << name << "\n" << wp_->output();
      *ep = *at;
    }
    client_ = pki_.credentials(pki_.id("default", "client"));
  }

  void start_backend(bool echo = false) {
    ZtunnelOptions o;
    o.name = "server";
    o.config = dir_.path() / "mesh.yaml";
    o.ca_cert = ca_.cert_path;
    o.ca_key = ca_.key_path;
    o.socks5 = false;
    o.workers = 1;
    auto z = ZtunnelProcess::start(o);
    ASSERT_TRUE(z) << z.error().describe();
    ztunnel_ = std::move(*z);
    auto at = net::parse_endpoint(ip(3) + ":8080");
    if (echo) {
      echo_ = EchoServer::start(*at);
    } else {
      backend_ = HttpHelloServer::start(*at, "server");
    }
  }

  Result<Exchange> exchange(const std::string& authority, const std::string& payload,
                            asio::ssl::context* ctx = nullptr,
                            std::function<void()> before_write = {}, size_t want = 0) {
    asio::io_context io;
    Result<Exchange> out = fail("not run");
    auto* use = ctx ? ctx : client_->client_ctx.get();
    run_coroutine(io, [&]() -> awaitable<void> {
      out = co_await hbone_exchange(hbone_, use, authority, payload, &before_write, want);
    });
    return out;
  }

  json config_dump() {
    auto r = http_request(admin_, "GET", "/config_dump");
    if (!r || r->status != 200) return json();
    return json::parse(r->body, nullptr, false);
  }

  std::string metrics_text() {
    auto r = http_request(metrics_, "GET", "/metrics");
    return r ? r->body : std::string();
  }

  TestPki pki_;
  TempDir dir_;
  TestPki::CaFiles ca_;
  int base_ = 0;
  std::unique_ptr<Daemon> wp_;
  tcp::endpoint hbone_, admin_, metrics_, readiness_;
  std::shared_ptr<identity::WorkloadCredentials> client_;
  std::unique_ptr<ZtunnelProcess> ztunnel_;
  std::unique_ptr<HttpHelloServer> backend_;
  std::unique_ptr<EchoServer> echo_;
};

const std::string kGet =
    "GET /hello HTTP/1.1\r\nHost: echo.default.svc.cluster.local\r\nConnection: close\r\n\r\n";

TEST_F(WaypointServer, RefusesUnboundAndUnknownTargetsBeforeAnyByte) {
  ASSERT_NO_FATAL_FAILURE(start(1));
  auto plain = exchange(ip(5) + ":80", kGet);
  ASSERT_TRUE(plain) << plain.error().describe();
  EXPECT_EQ(plain->status, 401);
  EXPECT_TRUE(plain->received.empty());
  auto unknown = exchange("127.0.63.250:80", kGet);
  ASSERT_TRUE(unknown) << unknown.error().describe();
  EXPECT_EQ(unknown->status, 503);
  // A workload without a waypoint is refused as well; a hostname authority is malformed here.
  auto pod = exchange(ip(3) + ":8080", kGet);
  ASSERT_TRUE(pod);
  EXPECT_EQ(pod->status, 401);
  auto host = exchange("echo.default.svc.cluster.local:80", kGet);
  ASSERT_TRUE(host);
  EXPECT_EQ(host->status, 400);

  auto line = wp_->wait_for(std::regex("access connection refused.*" + ip(5) + ":80.*"), 5s);
  ASSERT_TRUE(line) << wp_->output();
  EXPECT_NE(line->find("component=access"), std::string::npos) << *line;
  EXPECT_NE(line->find("reporter=waypoint"), std::string::npos) << *line;
  EXPECT_NE(line->find("src.identity=\"spiffe://cluster.local/ns/default/sa/client\""),
            std::string::npos)
      << *line;
  EXPECT_NE(line->find("status=401"), std::string::npos) << *line;
  EXPECT_NE(line->find("not waypoint default/wp"), std::string::npos) << *line;
  EXPECT_GE(metric_sum(metrics_text(), "waypoint_hbone_streams_total",
                       {"direction=\"inbound\"", "result=\"refused\""}) +
                metric_sum(metrics_text(), "waypoint_hbone_streams",
                           {"direction=\"inbound\"", "result=\"refused\""}),
            4.0)
      << metrics_text();
}

TEST_F(WaypointServer, BoundServiceHttp1ReachesTheBackendThroughZtunnel) {
  ASSERT_NO_FATAL_FAILURE(start(2));
  ASSERT_NO_FATAL_FAILURE(start_backend());
  auto r = exchange(ip(4) + ":80", kGet);
  ASSERT_TRUE(r) << r.error().describe() << "\n" << wp_->output();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->received.rfind("HTTP/1.1 200", 0), 0u) << r->received << "\n" << wp_->output();
  EXPECT_NE(r->received.find("hello from server"), std::string::npos) << r->received;

  auto line = wp_->wait_for(std::regex(".*component=access reporter=waypoint.*"), 5s);
  ASSERT_TRUE(line) << wp_->output();
  auto text = metrics_text();
  EXPECT_GE(
      metric_sum(text, "istio_requests_total", {"reporter=\"waypoint\"", "response_code=\"200\""}),
      1.0)
      << text;
}

// The HTTP/1.1 timeouts on the production path (an HBONE stream, whose reads wait for their
// deadline on the stream's own timer): a head that stalls gets 408 after the stream idle
// timeout, and the stream ends.
TEST_F(WaypointServer, StalledHeadOnAnHboneStreamGets408FromTheStreamIdleTimeout) {
  ASSERT_NO_FATAL_FAILURE(
      start(9, {"--stream-idle-timeout", "300ms", "--request-headers-timeout", "0s"}));
  const auto begin = std::chrono::steady_clock::now();
  auto r = exchange(ip(4) + ":80",
                    "GET /hello HTTP/1.1\r\nHost: echo.default.svc.cluster.local\r\nX-A: 1");
  const auto took = std::chrono::steady_clock::now() - begin;
  ASSERT_TRUE(r) << r.error().describe() << "\n" << wp_->output();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->received.rfind("HTTP/1.1 408 ", 0), 0u) << r->received << "\n" << wp_->output();
  EXPECT_NE(r->received.find("stream_idle_timeout"), std::string::npos) << r->received;
  EXPECT_GE(took, 300ms);
  EXPECT_LT(took, 10s) << "the 408 came from the exchange's own limit, not the waypoint";
}

TEST_F(WaypointServer, NonHttpBytesAreRelayedAsTcp) {
  ASSERT_NO_FATAL_FAILURE(start(8));
  ASSERT_NO_FATAL_FAILURE(start_backend(true));
  std::string payload("\x01\x02\x03 not http \xff\r\n", 17);
  auto r = exchange(ip(4) + ":80", payload, nullptr, {}, payload.size());
  ASSERT_TRUE(r) << r.error().describe() << "\n" << wp_->output();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->received, payload) << wp_->output();
}

TEST_F(WaypointServer, ClientWithoutCertificateIsRefusedAtTheHandshake) {
  ASSERT_NO_FATAL_FAILURE(start(3));
  asio::ssl::context bare(asio::ssl::context::tls_client);
  bare.set_verify_mode(asio::ssl::verify_none);
  const unsigned char alpn[] = {2, 'h', '2'};
  SSL_CTX_set_alpn_protos(bare.native_handle(), alpn, sizeof(alpn));
  auto r = exchange(ip(4) + ":80", kGet, &bare);
  // TLS 1.3: the client may finish its side before the server's alert arrives; either way no
  // CONNECT is ever answered.
  EXPECT_FALSE(r && r->status != 0) << "answered " << (r ? r->status : 0);
  EXPECT_TRUE(wp_->wait_for(std::regex("TLS handshake failed"), 5s)) << wp_->output();
}

TEST_F(WaypointServer, AdminMetricsAndReadinessAnswer) {
  ASSERT_NO_FATAL_FAILURE(start(4));
  auto ready = http_request(readiness_, "GET", "/healthz/ready");
  ASSERT_TRUE(ready) << ready.error().describe();
  EXPECT_EQ(ready->status, 200) << ready->body;

  auto dump = config_dump();
  ASSERT_TRUE(dump.is_object()) << "bad /config_dump";
  EXPECT_EQ(dump["self"]["name"], "wp");
  EXPECT_EQ(dump["self"]["namespace"], "default");
  EXPECT_EQ(dump["self"]["identity"], "spiffe://cluster.local/ns/default/sa/wp");
  EXPECT_EQ(dump["self"]["hostname"], "wp.default.svc.cluster.local");
  EXPECT_EQ(dump["self"]["ips"], json::array({ip(1)}));
  EXPECT_EQ(dump["config"]["generation"], 1);
  EXPECT_EQ(dump["config"]["routes"], 1);
  EXPECT_NE(dump["config"]["origin"].get<std::string>().find("waypoint.yaml"), std::string::npos);
  EXPECT_EQ(dump["state"]["boundServices"],
            json::array({"default/echo.default.svc.cluster.local"}));
  EXPECT_EQ(dump["state"]["boundWorkloads"], json::array({"cluster1//v1/Pod/default/direct"}));
  ASSERT_EQ(dump["certificates"].size(), 1u) << dump.dump(2);
  EXPECT_EQ(dump["certificates"][0]["state"], "Available");

  auto text = metrics_text();
  EXPECT_NE(text.find("istio_build{"), std::string::npos) << text;
  EXPECT_NE(text.find("component=\"waypoint\""), std::string::npos);
  EXPECT_NE(text.find("process_"), std::string::npos);
  auto prom = http_request(metrics_, "GET", "/stats/prometheus");
  ASSERT_TRUE(prom);
  EXPECT_EQ(prom->status, 200);
}

TEST_F(WaypointServer, ConfigEditsArePublishedAndABrokenEditKeepsTheLastGood) {
  ASSERT_NO_FATAL_FAILURE(start(5));
  ASSERT_EQ(config_dump()["config"]["generation"], 1);
  write_file(dir_.path() / "waypoint.yaml", kRouteV2);
  json dump;
  for (int i = 0; i < 100; ++i) {
    dump = config_dump();
    if (dump["config"]["generation"] == 2) break;
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_EQ(dump["config"]["generation"], 2) << wp_->output();
  EXPECT_EQ(dump["config"]["routes"], 2);

  write_file(dir_.path() / "waypoint.yaml", kRouteBroken);
  auto err = wp_->wait_for(std::regex(".*keeping the last good configuration.*"), 5s);
  ASSERT_TRUE(err) << wp_->output();
  EXPECT_NE(err->find("path.type"), std::string::npos) << *err;  // names the field
  dump = config_dump();
  EXPECT_EQ(dump["config"]["generation"], 2);
  EXPECT_EQ(dump["config"]["routes"], 2);
}

TEST_F(WaypointServer, SigtermDrainsAndExitsZero) {
  ASSERT_NO_FATAL_FAILURE(start(6));
  auto began = std::chrono::steady_clock::now();
  auto code = wp_->stop(SIGTERM, 10s);
  ASSERT_TRUE(code) << wp_->output();
  EXPECT_EQ(*code, 0) << wp_->output();
  EXPECT_LT(std::chrono::steady_clock::now() - began, 5s);
  EXPECT_TRUE(wp_->saw(std::regex("draining \\(SIGTERM\\)"))) << wp_->output();
}

TEST_F(WaypointServer, SigtermLetsAnOpenStreamFinish) {
  ASSERT_NO_FATAL_FAILURE(start(7));
  ASSERT_NO_FATAL_FAILURE(start_backend());
  // The stream is open when the drain begins: GOAWAY stops new streams, this one is served.
  auto r = exchange(ip(4) + ":80", kGet, nullptr, [&] {
    ::kill(wp_->pid(), SIGTERM);
    EXPECT_TRUE(wp_->wait_for(std::regex("draining \\(SIGTERM\\)"), 5s)) << wp_->output();
  });
  ASSERT_TRUE(r) << r.error().describe() << "\n" << wp_->output();
  EXPECT_EQ(r->status, 200);
  EXPECT_NE(r->received.find("hello from server"), std::string::npos) << r->received << "\n"
                                                                      << wp_->output();
  auto code = wp_->stop(0, 10s);
  ASSERT_TRUE(code) << wp_->output();
  EXPECT_EQ(*code, 0) << wp_->output();
  // Nothing was left to cut at the deadline: the stream ended, then the idle upstream went.
  EXPECT_FALSE(wp_->saw(std::regex("deadline passed"))) << wp_->output();
  // A new connection is not accepted any more.
  auto after = exchange(ip(4) + ":80", kGet);
  EXPECT_FALSE(after && after->status == 200);
}

TEST(WaypointServerXds, NotReadyUntilTheControlPlaneAnswers) {
  // Nothing listens at the xDS address: the listeners run, readiness names what is missing.
  TestPki pki;
  TempDir dir;
  auto ca = pki.write_ca_files(dir.path());
  auto d = Daemon::start(
      bin_path("waypoint"),
      {"--name", "wp", "--namespace", "default", "--hbone-address", "127.0.63.81:0",
       "--admin-address", "127.0.0.1:0", "--metrics-address", "127.0.0.1:0", "--readiness-address",
       "127.0.0.1:0", "--ca-cert", ca.cert_path.string(), "--ca-key", ca.key_path.string()},
      {"XDS_ADDRESS=http://127.0.63.82:1"});
  ASSERT_TRUE(d) << d.error().describe();
  auto readiness = (*d)->listening("readiness", 10s);
  ASSERT_TRUE(readiness) << (*d)->output();
  auto admin = (*d)->listening("admin", 2s);
  ASSERT_TRUE(admin) << (*d)->output();
  auto r = http_request(*readiness, "GET", "/healthz/ready");
  ASSERT_TRUE(r) << r.error().describe();
  EXPECT_EQ(r->status, 500);
  EXPECT_NE(r->body.find("xds"), std::string::npos) << r->body;
  auto dump = http_request(*admin, "GET", "/config_dump");
  ASSERT_TRUE(dump);
  auto j = json::parse(dump->body, nullptr, false);
  EXPECT_EQ(j["config"]["generation"], 0) << dump->body;
  EXPECT_NE(j["state"]["origin"].get<std::string>().find("xds"), std::string::npos);
  EXPECT_FALSE((*d)->saw(std::regex("waypoint ready")));
  auto code = (*d)->stop(SIGTERM, 10s);
  ASSERT_TRUE(code);
  EXPECT_EQ(*code, 0) << (*d)->output();
}

TEST_F(WaypointServer, BadCommandLineExitsTwoNamingTheFlag) {
  auto d = Daemon::start(bin_path("waypoint"), {"--name", "wp", "--worker-threads", "lots"});
  ASSERT_TRUE(d) << d.error().describe();
  auto code = (*d)->stop(0, 10s);
  ASSERT_TRUE(code);
  EXPECT_EQ(*code, 2);
  EXPECT_TRUE((*d)->saw(std::regex("--worker-threads"))) << (*d)->output();
}

}  // namespace
}  // namespace zt::testing
