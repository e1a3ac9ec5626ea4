// HBONE keepalive (DESIGN §4: PING every ping_interval, give up after ping_timeout), with short
// settings (100 ms / 300 ms) over real TLS on loopback:
// - a client whose peer completed the TLS handshake but then only reads (no SETTINGS, no
//   SETTINGS ACK, no PING ACK) closes the connection once a PING has gone unanswered for
//   ping_timeout, and Connection::run() returns;
// - a client talking to a real HTTP/2 peer keeps the connection across many ping intervals
//   and can still open a CONNECT stream on it.
// Both watch the h2 log (trace level, in-process) to see PING ACKs and the ping timeout.
#include <atomic>
#include <functional>
#include <optional>

#include <gtest/gtest.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

#include "common/async/task_group.h"
#include "common/base/log.h"
#include "common/h2/connection.h"
#include "common/tls/context.h"
#include "tests/support/coro.h"
#include "tests/support/test_pki.h"

namespace zt::h2 {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

long long ms(Clock::duration d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

// Counts h2 log lines: PING ACKs the client received, and ping-timeout warnings. Lines come from
// the io_context's thread; `on_ack` runs there too.
class H2LogWatch : public spdlog::sinks::base_sink<std::mutex> {
 public:
  std::atomic<int> client_ping_acks{0};
  std::atomic<int> ping_timeouts{0};
  std::function<void()> on_ack;

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    std::string_view line(msg.payload.data(), msg.payload.size());
    // frame=6 is PING, flags=1 its ACK.
    if (line.find("component=h2 role=client frame=6 stream=0 flags=1") != std::string_view::npos) {
      ++client_ping_acks;
      if (on_ack) on_ack();
    }
    if (line.find("ping timeout") != std::string_view::npos) ++ping_timeouts;
  }
  void flush_() override {}
};

// Makes `sink` the process's logger at trace level for the life of this object.
class LogCapture {
 public:
  explicit LogCapture(std::shared_ptr<H2LogWatch> sink) : previous_(spdlog::default_logger()) {
    auto logger = std::make_shared<spdlog::logger>("h2-keepalive-test", std::move(sink));
    logger->set_level(spdlog::level::trace);
    spdlog::set_default_logger(std::move(logger));
  }
  ~LogCapture() { spdlog::set_default_logger(previous_); }
  LogCapture(const LogCapture&) = delete;
  LogCapture& operator=(const LogCapture&) = delete;

 private:
  std::shared_ptr<spdlog::logger> previous_;
};

Settings short_keepalive() {
  Settings s;
  s.ping_interval = 100ms;
  s.ping_timeout = 300ms;
  return s;
}

awaitable<Result<TlsStream>> tls_connect(tcp::endpoint to, asio::ssl::context& ctx) {
  tcp::socket s(co_await asio::this_coro::executor);
  auto [cec] = co_await s.async_connect(to, kTuple);
  if (cec) co_return fail(cec, "connect");
  s.set_option(tcp::no_delay(true));
  TlsStream tls(std::move(s), ctx);
  auto [hec] = co_await tls.async_handshake(asio::ssl::stream_base::client, kTuple);
  if (hec) co_return fail(hec, "client handshake");
  co_return std::move(tls);
}

// What the silent peer saw of the client.
struct SilentPeer {
  bool handshake_done = false;
  int pings = 0;  // PING frames without ACK
  std::optional<Clock::time_point> first_ping;
  std::optional<Clock::time_point> closed_at;  // the client's close_notify (or the socket closing)
  error_code close_error;
  // The TLS stream stays here, open, after the client gave up: the peer is hung, not gone.
  std::optional<TlsStream> held;
};

// Completes the TLS handshake, then reads the client's HTTP/2 frames and never writes a byte.
awaitable<void> silent_peer(tcp::acceptor& acceptor, asio::ssl::context& ctx, SilentPeer& peer) {
  auto [aec, s] = co_await acceptor.async_accept(kTuple);
  if (aec) {
    ADD_FAILURE() << "accept: " << aec.message();
    co_return;
  }
  TlsStream& tls = peer.held.emplace(std::move(s), ctx);
  auto [hec] = co_await tls.async_handshake(asio::ssl::stream_base::server, kTuple);
  if (hec) {
    ADD_FAILURE() << "server handshake: " << hec.message();
    co_return;
  }
  peer.handshake_done = true;
  constexpr std::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
  std::string in;
  size_t pos = 0;
  bool preface_seen = false;
  std::vector<char> buf(16 * 1024);
  for (;;) {
    auto [ec, n] = co_await tls.async_read_some(asio::buffer(buf), kTuple);
    in.append(buf.data(), n);
    if (!preface_seen && in.size() >= kPreface.size()) {
      EXPECT_EQ(std::string_view(in).substr(0, kPreface.size()), kPreface);
      preface_seen = true;
      pos = kPreface.size();
    }
    // HTTP/2 frame header: length(3) type(1) flags(1) stream(4).
    while (preface_seen && in.size() - pos >= 9) {
      auto byte = [&](size_t i) { return static_cast<uint8_t>(in[pos + i]); };
      size_t len = static_cast<size_t>(byte(0)) << 16 | byte(1) << 8 | byte(2);
      if (in.size() - pos < 9 + len) break;
      if (byte(3) == 6 && (byte(4) & 1) == 0) {
        ++peer.pings;
        if (!peer.first_ping) peer.first_ping = Clock::now();
      }
      pos += 9 + len;
    }
    if (ec) {
      peer.closed_at = Clock::now();
      peer.close_error = ec;
      co_return;
    }
  }
}

struct ClientOutcome {
  bool connected = false;
  Clock::time_point started;
  bool run_returned = false;
  Clock::duration run_took{};
  bool closed = false;
};

awaitable<void> client_until_closed(tcp::endpoint to, asio::ssl::context& ctx, ClientOutcome& out) {
  auto tls = co_await tls_connect(to, ctx);
  if (!tls) {
    ADD_FAILURE() << tls.error().describe();
    co_return;
  }
  auto conn = Connection::create(std::move(*tls), Role::kClient, short_keepalive());
  if (!conn) {
    ADD_FAILURE() << conn.error().describe();
    co_return;
  }
  out.connected = true;
  out.started = Clock::now();
  out.run_returned = co_await async::with_timeout((*conn)->run(), 10s);
  out.run_took = Clock::now() - out.started;
  out.closed = (*conn)->closed();
}

class H2Keepalive : public ::testing::Test {
 protected:
  void SetUp() override {
    server_creds_ = pki_.credentials(pki_.id("server-ns", "server"));
    client_creds_ = pki_.credentials(pki_.id("client-ns", "client"));
    acceptor_.open(tcp::v4());
    acceptor_.bind({asio::ip::address_v4::loopback(), 0});
    acceptor_.listen();
  }

  testing::TestPki pki_;
  std::shared_ptr<identity::WorkloadCredentials> server_creds_, client_creds_;
  std::shared_ptr<H2LogWatch> log_ = std::make_shared<H2LogWatch>();
  LogCapture capture_{log_};
  asio::io_context io_;
  tcp::acceptor acceptor_{io_};
};

TEST_F(H2Keepalive, ClientClosesAConnectionWhosePeerStopsAnsweringPingsAfterThePingTimeout) {
  SilentPeer peer;
  ClientOutcome client;
  testing::run_coroutine(io_, [&]() -> awaitable<void> {
    using namespace asio::experimental::awaitable_operators;
    co_await (silent_peer(acceptor_, *server_creds_->server_ctx, peer) &&
              client_until_closed(acceptor_.local_endpoint(), *client_creds_->client_ctx, client));
  });
  ASSERT_TRUE(peer.handshake_done);
  ASSERT_TRUE(client.connected);
  EXPECT_GE(peer.pings, 1) << "the client never sent a PING";
  EXPECT_EQ(log_->ping_timeouts.load(), 1) << "the connection did not end by ping timeout";

  // The client gave up on the peer ping_timeout after its first unanswered PING, well within a
  // second of starting, and closed the socket (no close_notify courtesy for a dead peer).
  ASSERT_TRUE(peer.closed_at.has_value());
  ASSERT_TRUE(peer.first_ping.has_value());
  EXPECT_GE(*peer.closed_at - *peer.first_ping, 250ms)
      << "closed " << ms(*peer.closed_at - *peer.first_ping)
      << "ms after the first PING, before the 300ms ping timeout";
  EXPECT_LE(*peer.closed_at - client.started, 1s) << "the client closed the connection only after "
                                                  << ms(*peer.closed_at - client.started) << "ms";
  EXPECT_TRUE(peer.close_error == asio::error::eof ||
              peer.close_error == asio::ssl::error::stream_truncated)
      << peer.close_error.message();

  // run() returned at the ping timeout, and the connection says it is closed.
  ASSERT_TRUE(client.run_returned) << "Connection::run() still running 10s after the start";
  EXPECT_TRUE(client.closed);
  EXPECT_LE(client.run_took, 1s) << "Connection::run() returned after " << ms(client.run_took)
                                 << "ms";
}

// A real HTTP/2 server: answers PINGs (nghttp2 does) and echoes CONNECT streams.
awaitable<void> echo_stream(std::shared_ptr<Stream> st) {
  st->respond(200);
  std::vector<uint8_t> buf(16 * 1024);
  for (;;) {
    auto [ec, n] = co_await st->read_some(asio::buffer(buf));
    if (n > 0 && co_await st->write_all(asio::buffer(buf.data(), n))) co_return;
    if (ec) break;
  }
  co_await st->shutdown_write();
}

awaitable<void> h2_echo_server(tcp::acceptor& acceptor, asio::ssl::context& ctx,
                               async::TaskGroup& tasks, std::shared_ptr<Connection>& out) {
  auto [aec, s] = co_await acceptor.async_accept(kTuple);
  if (aec) co_return;
  s.set_option(tcp::no_delay(true));
  TlsStream tls(std::move(s), ctx);
  auto [hec] = co_await tls.async_handshake(asio::ssl::stream_base::server, kTuple);
  if (hec) {
    ADD_FAILURE() << "server handshake: " << hec.message();
    co_return;
  }
  auto conn = Connection::create(
      std::move(tls), Role::kServer, short_keepalive(),
      [&tasks](std::shared_ptr<Stream> st) { tasks.spawn(echo_stream(std::move(st)), "echo"); });
  if (!conn) co_return;
  out = *conn;
  co_await out->run();
}

TEST_F(H2Keepalive, ConnectionToAnAnsweringPeerStaysOpenAcrossManyPingIntervals) {
  constexpr int kAcks = 8;  // 8 intervals of 100 ms: well past the 300 ms ping timeout
  async::TaskGroup tasks(io_.get_executor());
  async::Event acked(io_.get_executor());
  log_->on_ack = [this, &acked] { asio::post(io_, [&acked] { acked.notify(); }); };
  std::shared_ptr<Connection> server_conn, client_conn;
  Clock::duration open_for{};
  testing::run_coroutine(io_, [&]() -> awaitable<void> {
    tasks.spawn(h2_echo_server(acceptor_, *server_creds_->server_ctx, tasks, server_conn),
                "server");
    auto tls = co_await tls_connect(acceptor_.local_endpoint(), *client_creds_->client_ctx);
    if (!tls) {
      ADD_FAILURE() << tls.error().describe();
      co_return;
    }
    auto conn = Connection::create(std::move(*tls), Role::kClient, short_keepalive());
    if (!conn) {
      ADD_FAILURE() << conn.error().describe();
      co_return;
    }
    client_conn = *conn;
    auto started = Clock::now();
    tasks.spawn(client_conn->run(), "client");

    // Wait for the PING ACKs (each one arrives one interval after the previous).
    const auto deadline = started + 5s;
    while (log_->client_ping_acks < kAcks && !client_conn->closed() && Clock::now() < deadline) {
      co_await async::with_timeout(acked.wait(), deadline - Clock::now());
    }
    open_for = Clock::now() - started;
    EXPECT_GE(log_->client_ping_acks.load(), kAcks) << "PING ACKs seen in " << ms(open_for) << "ms";
    EXPECT_FALSE(client_conn->closed()) << "closed after " << ms(open_for) << "ms";
    EXPECT_EQ(log_->ping_timeouts.load(), 0);

    // Still usable: a CONNECT stream opens and echoes.
    auto st =
        co_await async::with_timeout(client_conn->open_connect("10.0.0.2:8080", Headers()), 5s);
    EXPECT_TRUE(st.has_value()) << "no answer to CONNECT in 5s";
    if (st && !*st) ADD_FAILURE() << (*st).error().describe();
    if (st && *st) {
      auto& stream = **st;
      const std::string hello = "still alive";
      EXPECT_FALSE(co_await stream->write_all(asio::buffer(hello)));
      std::string got(hello.size(), '\0');
      size_t have = 0;
      while (have < got.size()) {
        auto r = co_await async::with_timeout(
            stream->read_some(asio::buffer(got.data() + have, got.size() - have)), 5s);
        if (!r || std::get<0>(*r)) {
          ADD_FAILURE() << "echo read failed";
          break;
        }
        have += std::get<1>(*r);
      }
      EXPECT_EQ(got, hello);
    }
    client_conn->close();
    if (server_conn) server_conn->close();
    co_await tasks.wait_empty(5s);
  });
  EXPECT_GE(open_for, 700ms) << "ping ACKs came faster than the ping interval";
  tasks.cancel_all();
  io_.run_for(1s);
  log_->on_ack = nullptr;
}

}  // namespace
}  // namespace zt::h2
