// Runs build/bin/loadgen against servers owned by the test (loopback, port 0) and checks its
// JSON report: request counts at a fixed rate, one connection per request in new-connection
// mode, coordinated omission (a stalled server shows in the latencies), TCP bulk bytes.
#include <sys/wait.h>

#include <array>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/async/asio.h"
#include "common/net/copy.h"
#include "tests/support/daemon.h"
#include "tests/support/servers.h"

#if ZT_LOADGEN_HTTP2
#include "waypoint/http2/http2.h"
#endif

namespace zt {
namespace {

namespace bhttp = boost::beast::http;
using namespace std::chrono_literals;

// HTTP/1.1 server on its own thread: answers 200 "ok" with keep-alive, counts accepted
// connections and requests; can stall one request (the `stall_at`-th) for `stall`.
class TestHttpServer {
 public:
  explicit TestHttpServer(uint64_t stall_at = 0, std::chrono::milliseconds stall = 0ms)
      : acceptor_(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)),
        stall_at_(stall_at),
        stall_(stall) {
    asio::co_spawn(io_, accept_loop(), asio::detached);
    thread_ = std::thread([this] { io_.run(); });
  }
  ~TestHttpServer() {
    io_.stop();
    thread_.join();
  }
  uint16_t port() const { return acceptor_.local_endpoint().port(); }
  uint64_t accepts() const { return accepts_; }
  uint64_t requests() const { return requests_; }

 private:
  awaitable<void> accept_loop() {
    for (;;) {
      auto [ec, s] = co_await acceptor_.async_accept(kTuple);
      if (ec) co_return;
      ++accepts_;
      asio::co_spawn(io_, serve(std::move(s)), asio::detached);
    }
  }
  awaitable<void> serve(tcp::socket s) {
    boost::beast::flat_buffer buf;
    asio::steady_timer timer(s.get_executor());
    for (;;) {
      bhttp::request<bhttp::string_body> req;
      auto [ec, n] = co_await bhttp::async_read(s, buf, req, kTuple);
      if (ec) co_return;
      const uint64_t nth = ++requests_;
      if (stall_at_ != 0 && nth == stall_at_) {
        timer.expires_after(stall_);
        co_await timer.async_wait(kTuple);
      }
      bhttp::response<bhttp::string_body> res(bhttp::status::ok, 11);
      res.body() = "ok";
      res.keep_alive(req.keep_alive());
      res.prepare_payload();
      auto [wec, wn] = co_await bhttp::async_write(s, res, kTuple);
      if (wec || !req.keep_alive()) co_return;
    }
  }

  asio::io_context io_;
  tcp::acceptor acceptor_;
  uint64_t stall_at_;
  std::chrono::milliseconds stall_;
  std::atomic<uint64_t> accepts_{0};
  std::atomic<uint64_t> requests_{0};
  std::thread thread_;
};

// Reads and drops everything; counts bytes.
class DiscardServer {
 public:
  DiscardServer() : acceptor_(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
    asio::co_spawn(io_, accept_loop(), asio::detached);
    thread_ = std::thread([this] { io_.run(); });
  }
  ~DiscardServer() {
    io_.stop();
    thread_.join();
  }
  uint16_t port() const { return acceptor_.local_endpoint().port(); }
  uint64_t bytes() const { return bytes_; }

 private:
  awaitable<void> accept_loop() {
    for (;;) {
      auto [ec, s] = co_await acceptor_.async_accept(kTuple);
      if (ec) co_return;
      asio::co_spawn(io_, serve(std::move(s)), asio::detached);
    }
  }
  awaitable<void> serve(tcp::socket s) {
    std::vector<char> buf(256 * 1024);
    for (;;) {
      auto [ec, n] = co_await s.async_read_some(asio::buffer(buf), kTuple);
      if (ec) co_return;
      bytes_ += n;
    }
  }
  asio::io_context io_;
  tcp::acceptor acceptor_;
  std::atomic<uint64_t> bytes_{0};
  std::thread thread_;
};

// A minimal SOCKS5 proxy (no auth, CONNECT to IPv4 only): counts CONNECTs, relays bytes.
class TestSocks5Proxy {
 public:
  TestSocks5Proxy() : acceptor_(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
    asio::co_spawn(io_, accept_loop(), asio::detached);
    thread_ = std::thread([this] { io_.run(); });
  }
  ~TestSocks5Proxy() {
    io_.stop();
    thread_.join();
  }
  uint16_t port() const { return acceptor_.local_endpoint().port(); }
  uint64_t connects() const { return connects_; }

 private:
  awaitable<void> accept_loop() {
    for (;;) {
      auto [ec, s] = co_await acceptor_.async_accept(kTuple);
      if (ec) co_return;
      asio::co_spawn(io_, serve(std::move(s)), asio::detached);
    }
  }
  awaitable<void> serve(tcp::socket s) {
    std::array<uint8_t, 10> b{};
    auto [e1, n1] = co_await asio::async_read(s, asio::buffer(b.data(), 3), kTuple);
    if (e1 || b[0] != 5) co_return;
    const uint8_t no_auth[2] = {5, 0};
    auto [e2, n2] = co_await asio::async_write(s, asio::buffer(no_auth), kTuple);
    auto [e3, n3] = co_await asio::async_read(s, asio::buffer(b.data(), 10), kTuple);
    if (e2 || e3 || b[1] != 1 || b[3] != 1) co_return;
    asio::ip::address_v4::bytes_type ip{b[4], b[5], b[6], b[7]};
    tcp::endpoint target(asio::ip::address_v4(ip), static_cast<uint16_t>(b[8] << 8 | b[9]));
    tcp::socket up(s.get_executor());
    auto [ce] = co_await up.async_connect(target, kTuple);
    uint8_t reply[10] = {5, static_cast<uint8_t>(ce ? 5 : 0), 0, 1, 0, 0, 0, 0, 0, 0};
    auto [e4, n4] = co_await asio::async_write(s, asio::buffer(reply), kTuple);
    if (ce || e4) co_return;
    ++connects_;
    net::TcpDuplex a(s), c(up);
    std::atomic<uint64_t> ab{0}, ba{0};
    co_await net::copy_bidirectional(a, c, ab, ba);
  }
  asio::io_context io_;
  tcp::acceptor acceptor_;
  std::atomic<uint64_t> connects_{0};
  std::thread thread_;
};

#if ZT_LOADGEN_HTTP2
std::atomic<uint64_t> g_h2_requests{0};

awaitable<waypoint::Response> h2_ok(waypoint::Request req) {
  ++g_h2_requests;
  waypoint::Response r;
  r.status = 200;
  r.body = "ok " + std::to_string(req.body.size());
  co_return r;
}

// h2c (prior knowledge) server from waypoint/http2; counts connections.
class TestHttp2Server {
 public:
  TestHttp2Server() : acceptor_(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
    asio::co_spawn(io_, accept_loop(), asio::detached);
    thread_ = std::thread([this] { io_.run(); });
  }
  ~TestHttp2Server() {
    io_.stop();
    thread_.join();
  }
  uint16_t port() const { return acceptor_.local_endpoint().port(); }
  uint64_t accepts() const { return accepts_; }

 private:
  awaitable<void> accept_loop() {
    for (;;) {
      auto [ec, s] = co_await acceptor_.async_accept(kTuple);
      if (ec) co_return;
      ++accepts_;
      asio::co_spawn(io_, serve(std::move(s)), asio::detached);
    }
  }
  awaitable<void> serve(tcp::socket s) {
    waypoint::Limits limits;
    co_await waypoint::http2::serve_http2(waypoint::Duplex::of_socket(std::move(s)), std::string(),
                                          limits, h2_ok);
  }
  asio::io_context io_;
  tcp::acceptor acceptor_;
  std::atomic<uint64_t> accepts_{0};
  std::thread thread_;
};
#endif

struct Run {
  int exit_code = -1;
  nlohmann::json report;
};

// Runs loadgen with `args`, the report going to a temporary file.
Run run_loadgen(const std::vector<std::string>& args) {
  static int counter = 0;
  const std::string json_path =
      (std::filesystem::temp_directory_path() /
       ("loadgen-test-" + std::to_string(getpid()) + "-" + std::to_string(++counter) + ".json"))
          .string();
  std::string cmd = testing::bin_path("loadgen");
  for (const auto& a : args) cmd += " '" + a + "'";
  cmd += " --json " + json_path;
  Run r;
  int status = std::system(cmd.c_str());
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::ifstream in(json_path);
  if (in) r.report = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  std::filesystem::remove(json_path);
  // Every request of the window is accounted for exactly once.
  if (r.report.is_object() && r.report.contains("requests")) {
    const auto& q = r.report["requests"];
    EXPECT_EQ(
        q["scheduled"].get<uint64_t>(),
        q["completed"].get<uint64_t>() + q["errors"].get<uint64_t>() + q["unsent"].get<uint64_t>())
        << q.dump();
  }
  return r;
}

std::string url(uint16_t port) { return "http://127.0.0.1:" + std::to_string(port) + "/"; }

TEST(Loadgen, OpenLoopAtFixedRate) {
  TestHttpServer server;
  auto r = run_loadgen({"--rate", "500", "--connections", "4", "--duration", "2s", "--warmup",
                        "500ms", "--body-size", "1024", url(server.port())});
  ASSERT_EQ(r.exit_code, 0);
  ASSERT_TRUE(r.report.is_object()) << "the JSON report does not parse";
  const auto& j = r.report;
  EXPECT_EQ(j["requests"]["scheduled"], 1000);
  const double completed = j["requests"]["completed"].get<double>();
  EXPECT_NEAR(completed, 1000, 100) << j.dump(2);
  EXPECT_EQ(j["status"]["200"].get<double>(), completed);
  EXPECT_EQ(j["status"].size(), 1u);
  EXPECT_EQ(j["errors"]["total"], 0);
  EXPECT_EQ(j["connections_opened"], 4);  // keep-alive
  EXPECT_EQ(j["config"]["method"], "POST");
  EXPECT_NEAR(j["achieved_rps"].get<double>(), 500, 50);
  EXPECT_GT(j["latency_us"]["p50"].get<double>(), 0);
  EXPECT_LE(j["latency_us"]["p50"].get<double>(), j["latency_us"]["p99"].get<double>());
  EXPECT_LE(j["latency_us"]["p99"].get<double>(), j["latency_us"]["max"].get<double>());
  EXPECT_FALSE(j["histogram"]["buckets"].empty());
  // The warm-up was sent but not counted: the server saw more than the report.
  EXPECT_GT(server.requests(), completed);
}

TEST(Loadgen, NewConnectionPerRequest) {
  TestHttpServer server;
  auto r = run_loadgen({"--rate", "200", "--connections", "2", "--duration", "1s", "--warmup", "0s",
                        "--mode", "new-connection", url(server.port())});
  ASSERT_EQ(r.exit_code, 0);
  ASSERT_TRUE(r.report.is_object());
  const auto completed = r.report["requests"]["completed"].get<uint64_t>();
  EXPECT_NEAR(static_cast<double>(completed), 200, 20);
  EXPECT_EQ(r.report["errors"]["total"], 0);
  // One TCP connection per request: the server accepted as many as it answered.
  EXPECT_EQ(server.accepts(), server.requests());
  EXPECT_EQ(r.report["connections_opened"].get<uint64_t>(), server.accepts());
  EXPECT_GE(server.accepts(), completed);
}

// Coordinated omission: one connection at 500 rps, the server stalls one request for 200 ms.
// The requests scheduled during the stall could not be sent until it ended; measured from
// their schedule they are late, so the maximum is at least the stall and many requests are
// slow (a closed-loop tool would report only one slow request).
TEST(Loadgen, StallShowsInLatencies) {
  TestHttpServer server(/*stall_at=*/400, 200ms);  // after the 250 warm-up requests
  auto r = run_loadgen({"--rate", "500", "--connections", "1", "--duration", "2s", "--warmup",
                        "500ms", url(server.port())});
  ASSERT_EQ(r.exit_code, 0);
  ASSERT_TRUE(r.report.is_object());
  const auto& j = r.report;
  EXPECT_GE(j["latency_us"]["max"].get<double>(), 200'000) << j["latency_us"].dump();
  // ~100 requests were due during the stall: p99 (the slowest 10) must show it too.
  EXPECT_GE(j["latency_us"]["p99"].get<double>(), 100'000) << j["latency_us"].dump();
  EXPECT_GE(j["late_send_us"]["max"].get<double>(), 150'000) << j["late_send_us"].dump();
  EXPECT_GE(j["late_send_us"]["over_1ms"].get<double>(), 50);
  EXPECT_NEAR(j["requests"]["completed"].get<double>(), 1000, 100);
}

TEST(Loadgen, ClosedLoop) {
  TestHttpServer server;
  auto r = run_loadgen(
      {"--connections", "2", "--duration", "1s", "--warmup", "200ms", url(server.port())});
  ASSERT_EQ(r.exit_code, 0);
  ASSERT_TRUE(r.report.is_object());
  EXPECT_GT(r.report["requests"]["completed"].get<double>(), 100);
  EXPECT_EQ(r.report["errors"]["total"], 0);
  EXPECT_FALSE(r.report.contains("late_send_us"));
}

TEST(Loadgen, ConnectErrorsAreCounted) {
  // A port nobody listens on: bind, take the port, close.
  uint16_t port;
  {
    asio::io_context io;
    tcp::acceptor a(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    port = a.local_endpoint().port();
  }
  auto r = run_loadgen({"--rate", "100", "--duration", "500ms", "--warmup", "0s", url(port)});
  ASSERT_EQ(r.exit_code, 0);
  ASSERT_TRUE(r.report.is_object());
  EXPECT_EQ(r.report["requests"]["completed"], 0);
  EXPECT_NEAR(r.report["errors"]["connect"].get<double>(), 50, 5);
}

// A server that reads and never answers: every request times out, and the run still ends.
TEST(Loadgen, TimeoutsAreCounted) {
  DiscardServer server;
  const auto start = std::chrono::steady_clock::now();
  auto r = run_loadgen({"--rate", "20", "--duration", "1s", "--warmup", "0s", "--timeout", "200ms",
                        url(server.port())});
  ASSERT_EQ(r.exit_code, 0);
  ASSERT_TRUE(r.report.is_object());
  EXPECT_EQ(r.report["requests"]["completed"], 0);
  // One connection, each request waits 200 ms: the schedule falls behind but all are tried
  // until the run gives up (duration + timeout); tried ones time out, the rest are unsent.
  EXPECT_GE(r.report["errors"]["timeout"].get<double>(), 4);
  EXPECT_EQ(r.report["errors"]["timeout"].get<uint64_t>() +
                r.report["requests"]["unsent"].get<uint64_t>(),
            20u)
      << r.report.dump(2);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
}

TEST(Loadgen, TcpBulkMovesBytes) {
  DiscardServer server;
  auto r = run_loadgen({"--tcp-bulk", "--connections", "2", "--duration", "1s", "--warmup", "200ms",
                        "127.0.0.1:" + std::to_string(server.port())});
  ASSERT_EQ(r.exit_code, 0);
  ASSERT_TRUE(r.report.is_object());
  const auto sent = r.report["tcp_bulk"]["bytes_sent"].get<uint64_t>();
  EXPECT_GT(sent, 10u * 1024 * 1024) << r.report.dump(2);
  EXPECT_GT(r.report["tcp_bulk"]["gbit_per_s_sent"].get<double>(), 0.08);
  EXPECT_EQ(r.report["tcp_bulk"]["bytes_received"], 0);
  // The server got everything counted (and the warm-up's bytes too).
  EXPECT_GE(server.bytes(), sent);
  EXPECT_EQ(r.report["errors"]["total"], 0);
}

TEST(Loadgen, TcpBulkBothDirectionsAgainstEcho) {
  auto echo = testing::EchoServer::start(tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  auto r = run_loadgen({"--tcp-bulk", "--direction", "both", "--chunk-size", "64k", "--duration",
                        "1s", "--warmup", "100ms",
                        "tcp://127.0.0.1:" + std::to_string(echo->endpoint().port())});
  ASSERT_EQ(r.exit_code, 0);
  ASSERT_TRUE(r.report.is_object());
  const auto& b = r.report["tcp_bulk"];
  EXPECT_GT(b["bytes_sent"].get<uint64_t>(), 1u << 20) << b.dump();
  EXPECT_GT(b["bytes_received"].get<uint64_t>(), 1u << 20) << b.dump();
  EXPECT_EQ(r.report["errors"]["total"], 0) << r.report["errors"].dump();
}

TEST(Loadgen, ThroughSocks5) {
  TestHttpServer server;
  TestSocks5Proxy proxy;
  auto r =
      run_loadgen({"--rate", "200", "--connections", "2", "--duration", "1s", "--warmup", "100ms",
                   "--socks5", "127.0.0.1:" + std::to_string(proxy.port()), url(server.port())});
  ASSERT_EQ(r.exit_code, 0);
  ASSERT_TRUE(r.report.is_object());
  EXPECT_NEAR(r.report["requests"]["completed"].get<double>(), 200, 20);
  EXPECT_EQ(r.report["errors"]["total"], 0) << r.report["errors"].dump();
  EXPECT_EQ(proxy.connects(), 2u);  // keep-alive: one tunnel per connection
  EXPECT_EQ(server.accepts(), 2u);
}

#if ZT_LOADGEN_HTTP2
TEST(Loadgen, Http2OpenLoop) {
  TestHttp2Server server;
  g_h2_requests = 0;
  auto r = run_loadgen({"--protocol", "http2", "--rate", "500", "--connections", "2", "--duration",
                        "2s", "--warmup", "200ms", "--body-size", "1024", url(server.port())});
  ASSERT_EQ(r.exit_code, 0);
  ASSERT_TRUE(r.report.is_object());
  const auto& j = r.report;
  EXPECT_EQ(j["config"]["protocol"], "http2");
  const double completed = j["requests"]["completed"].get<double>();
  EXPECT_NEAR(completed, 1000, 100);
  EXPECT_EQ(j["status"]["200"].get<double>(), completed);
  EXPECT_EQ(j["errors"]["total"], 0) << j["errors"].dump();
  EXPECT_EQ(server.accepts(), 2u);  // all requests multiplexed on 2 connections
  EXPECT_GE(g_h2_requests.load(), completed);
}

TEST(Loadgen, Http2TimeoutsEndTheRun) {
  DiscardServer server;  // takes the preface and never answers
  const auto start = std::chrono::steady_clock::now();
  auto r = run_loadgen({"--protocol", "http2", "--rate", "20", "--duration", "1s", "--warmup", "0s",
                        "--timeout", "200ms", url(server.port())});
  ASSERT_EQ(r.exit_code, 0);
  ASSERT_TRUE(r.report.is_object());
  EXPECT_EQ(r.report["requests"]["completed"], 0);
  EXPECT_GE(r.report["errors"]["total"].get<double>(), 10) << r.report["errors"].dump();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
}

TEST(Loadgen, Http2NewConnection) {
  TestHttp2Server server;
  g_h2_requests = 0;
  auto r = run_loadgen({"--protocol", "http2", "--mode", "new-connection", "--rate", "100",
                        "--duration", "1s", "--warmup", "0s", url(server.port())});
  ASSERT_EQ(r.exit_code, 0);
  ASSERT_TRUE(r.report.is_object());
  EXPECT_NEAR(r.report["requests"]["completed"].get<double>(), 100, 10);
  EXPECT_EQ(r.report["errors"]["total"], 0) << r.report["errors"].dump();
  EXPECT_EQ(server.accepts(), g_h2_requests.load());
}
#endif

TEST(Loadgen, BadFlagExitsWithUsageError) {
  auto r = run_loadgen({"--rate", "fast", "http://127.0.0.1:1/"});
  EXPECT_EQ(r.exit_code, 2);
}

}  // namespace
}  // namespace zt
