// Graceful drain, as Istio's ztunnel does it. A client keeps one connection open through
// ztunnel A (SOCKS5) and ztunnel B to an echo server behind B; then B is told to stop (SIGTERM
// or POST /quitquitquit):
// - the open connection keeps working until the client closes it;
// - B's HBONE port refuses new connections at once (a new connection through A fails);
// - B exits 0 as soon as the open connection is closed, long before its termination deadline;
// - a connection the client never closes is closed at --connection-termination-deadline, and B
//   exits then;
// - an HBONE connection still in its TLS handshake when the drain starts is drained too.
// Each test uses its own 127.0.<n>.x addresses so tests can run in parallel.
#include <array>
#include <functional>
#include <optional>
#include <regex>

#include <gtest/gtest.h>
#include <signal.h>

#include "common/async/task_group.h"
#include "common/async/timeout.h"
#include "common/h2/connection.h"
#include "common/tls/context.h"
#include "tests/support/coro.h"
#include "tests/support/mesh.h"
#include "tests/support/servers.h"
#include "tests/support/test_pki.h"

namespace zt::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr uint16_t kEchoPort = 7000;

// Writes `payload` and reads the same bytes back; failures are reported here.
awaitable<bool> echo_round_trip(tcp::socket& s, std::string payload) {
  auto [wec, wn] = co_await asio::async_write(s, asio::buffer(payload), kTuple);
  if (wec) {
    ADD_FAILURE() << "write on the open connection: " << wec.message();
    co_return false;
  }
  std::string got(payload.size(), '\0');
  auto r = co_await async::with_timeout(asio::async_read(s, asio::buffer(got), kTuple), 10s);
  if (!r) {
    ADD_FAILURE() << "no echo within 10s";
    co_return false;
  }
  if (auto [rec, rn] = *r; rec) {
    ADD_FAILURE() << "read on the open connection: " << rec.message();
    co_return false;
  }
  EXPECT_EQ(got, payload);
  co_return got == payload;
}

// Connects to `to` until the connection is refused. B logs that the drain started and then
// closes the listeners on its worker threads, so the first attempts may still get in (a few
// milliseconds' worth on a loaded machine); each attempt waits on its own connect.
awaitable<void> connect_until_refused(tcp::endpoint to, int& attempts, bool& refused) {
  auto ex = co_await asio::this_coro::executor;
  const auto deadline = Clock::now() + 5s;
  while (Clock::now() < deadline) {
    ++attempts;
    tcp::socket s(ex);
    auto r = co_await async::with_timeout(s.async_connect(to, kTuple), 2s);
    if (r && std::get<0>(*r) == asio::error::connection_refused) {
      refused = true;
      co_return;
    }
  }
}

// A TCP relay in front of B's HBONE port that holds the client's bytes after its first TLS
// record (the ClientHello) until release(): B has accepted the connection and answered the
// ClientHello, but cannot finish its side of the TLS handshake until the gate opens.
struct HandshakeGate {
  explicit HandshakeGate(asio::any_io_executor ex)
      : acceptor(ex), answered_event(ex), open_event(ex) {}
  void release() {
    open = true;
    open_event.notify();
  }
  tcp::acceptor acceptor;
  bool answered = false;  // B sent its first bytes (ServerHello...)
  async::Event answered_event;
  bool open = false;
  async::Event open_event;
};

awaitable<void> relay_up(tcp::socket& from, tcp::socket& to, HandshakeGate& gate) {
  std::vector<char> buf(16 * 1024);
  std::string held;
  // The first record goes through as soon as it is complete.
  size_t first_record = 0;
  while (first_record == 0 || held.size() < first_record) {
    auto [ec, n] = co_await from.async_read_some(asio::buffer(buf), kTuple);
    if (ec) co_return;
    held.append(buf.data(), n);
    if (first_record == 0 && held.size() >= 5) {
      first_record = 5 + (static_cast<uint8_t>(held[3]) << 8 | static_cast<uint8_t>(held[4]));
    }
  }
  auto [wec, wn] = co_await asio::async_write(to, asio::buffer(held.data(), first_record), kTuple);
  if (wec) co_return;
  held.erase(0, first_record);
  while (!gate.open) {
    if (!co_await gate.open_event.wait()) co_return;
  }
  for (;;) {
    if (!held.empty()) {
      auto [ec2, n2] = co_await asio::async_write(to, asio::buffer(held), kTuple);
      if (ec2) co_return;
      held.clear();
    }
    auto [ec, n] = co_await from.async_read_some(asio::buffer(buf), kTuple);
    held.append(buf.data(), n);
    if (ec) break;
  }
  error_code sec;
  to.shutdown(tcp::socket::shutdown_send, sec);
}

awaitable<void> relay_down(tcp::socket& from, tcp::socket& to, HandshakeGate& gate) {
  std::vector<char> buf(16 * 1024);
  for (;;) {
    auto [ec, n] = co_await from.async_read_some(asio::buffer(buf), kTuple);
    if (n > 0) {
      if (!gate.answered) {
        gate.answered = true;
        gate.answered_event.notify();
      }
      auto [wec, wn] = co_await asio::async_write(to, asio::buffer(buf.data(), n), kTuple);
      if (wec) break;
    }
    if (ec) break;
  }
  error_code sec;
  to.shutdown(tcp::socket::shutdown_send, sec);
}

awaitable<void> gated_relay(HandshakeGate& gate, tcp::endpoint upstream) {
  using namespace asio::experimental::awaitable_operators;
  auto [aec, client] = co_await gate.acceptor.async_accept(kTuple);
  if (aec) co_return;
  tcp::socket server(co_await asio::this_coro::executor);
  auto [cec] = co_await server.async_connect(upstream, kTuple);
  if (cec) {
    ADD_FAILURE() << "relay: connect to B: " << cec.message();
    co_return;
  }
  co_await (relay_up(client, server, gate) && relay_down(server, client, gate));
}

// The test's HBONE client: TCP and TLS through the relay. On the client side a TLS 1.3 handshake
// is complete once the client has sent its Finished, which the relay then holds.
struct EarlyClient {
  explicit EarlyClient(asio::any_io_executor ex) : finished_event(ex) {}
  std::optional<h2::TlsStream> tls;
  bool finished = false;
  error_code error;
  async::Event finished_event;
};

awaitable<void> early_client_handshake(tcp::endpoint relay, asio::ssl::context& ctx,
                                       EarlyClient& out) {
  tcp::socket s(co_await asio::this_coro::executor);
  auto [cec] = co_await s.async_connect(relay, kTuple);
  if (!cec) {
    out.tls.emplace(std::move(s), ctx);
    auto [hec] = co_await out.tls->async_handshake(asio::ssl::stream_base::client, kTuple);
    out.error = hec;
  } else {
    out.error = cec;
  }
  out.finished = true;
  out.finished_event.notify();
}

// Waits for `flag` (set together with `event.notify()`) for at most `d`.
awaitable<bool> wait_flag(const bool& flag, async::Event& event, std::chrono::seconds d) {
  const auto deadline = Clock::now() + d;
  while (!flag && Clock::now() < deadline) {
    co_await async::with_timeout(event.wait(), deadline - Clock::now());
  }
  co_return flag;
}

class Drain : public ::testing::Test {
 protected:
  // ztunnel A (client, SOCKS5) on `client_ip` and B (server) on `server_ip`, B with `deadline`
  // as its --connection-termination-deadline; an echo server behind B.
  void start(const std::string& client_ip, const std::string& server_ip,
             const std::string& deadline) {
    client_ip_ = client_ip;
    server_ip_ = server_ip;
    auto ca = pki_.write_ca_files(dir_.path());
    auto config = dir_.path() / "mesh.yaml";
    write_file(config, two_workload_mesh_yaml(client_ip_, server_ip_));
    auto a = ZtunnelProcess::start(
        {.name = "client", .config = config, .ca_cert = ca.cert_path, .ca_key = ca.key_path});
    ASSERT_TRUE(a) << a.error().describe();
    a_ = std::move(*a);
    auto b = ZtunnelProcess::start({.name = "server",
                                    .config = config,
                                    .ca_cert = ca.cert_path,
                                    .ca_key = ca.key_path,
                                    .socks5 = false,
                                    .extra_args = {"--connection-termination-deadline", deadline}});
    ASSERT_TRUE(b) << b.error().describe();
    b_ = std::move(*b);
    echo_ = EchoServer::start(server(kEchoPort));
  }

  void TearDown() override {
    // A connection left open would hold a draining B until its deadline.
    if (conn_) {
      error_code ec;
      conn_->close(ec);
    }
  }

  tcp::endpoint server(uint16_t port) const {
    return tcp::endpoint(asio::ip::make_address(server_ip_), port);
  }

  // Opens the long-lived connection through A and B and checks it echoes.
  void open_long_lived_connection() {
    run_coroutine(io_, [&]() -> awaitable<void> {
      auto s = co_await socks5_connect(a_->socks5, server(kEchoPort));
      if (!s) {
        ADD_FAILURE() << "SOCKS5 through A: " << s.error().describe();
        co_return;
      }
      conn_.emplace(std::move(*s));
      co_await echo_round_trip(*conn_, "before the drain");
    });
    ASSERT_TRUE(conn_.has_value());
  }

  // After B logged "draining (<why>)": the open connection still works, new ones are refused,
  // and B exits 0 soon after the client closes its connection.
  void expect_graceful_drain(const std::string& why) {
    ASSERT_TRUE(b_->daemon().wait_for(std::regex("draining \\(" + why + "\\)"), 10s))
        << b_->daemon().output();

    // (b) B's HBONE port no longer accepts...
    int attempts = 0;
    bool refused = false;
    run_coroutine(io_, [&]() -> awaitable<void> {
      co_await connect_until_refused(server(15008), attempts, refused);
    });
    EXPECT_TRUE(refused) << "B's " << server_ip_ << ":15008 still accepts connections after "
                         << attempts << " attempts while draining";
    // ... so a new connection through A does not get through.
    run_coroutine(io_, [&]() -> awaitable<void> {
      auto r = co_await async::with_timeout(socks5_connect(a_->socks5, server(kEchoPort)), 20s);
      EXPECT_TRUE(r.has_value()) << "SOCKS5 CONNECT through A hung while B drains";
      if (r) {
        EXPECT_FALSE(r->has_value()) << "a new connection reached B while it drains";
      }
    });

    // (a) The open connection keeps working, and B waits for it.
    run_coroutine(io_, [&]() -> awaitable<void> {
      for (int i = 0; i < 3; ++i) {
        if (!co_await echo_round_trip(*conn_, fmt::format("during the drain #{}", i))) break;
      }
    });
    EXPECT_TRUE(b_->daemon().running()) << "B exited with a connection still open";

    // (c) Once the client closes it, B exits 0, far ahead of its 60s deadline.
    error_code ec;
    conn_->shutdown(tcp::socket::shutdown_both, ec);
    conn_->close(ec);
    conn_.reset();
    auto closed_at = Clock::now();
    auto code = b_->daemon().stop(0, 30s);  // signal 0: only wait for the exit
    auto took = Clock::now() - closed_at;
    ASSERT_TRUE(code.has_value()) << "B did not exit within 30s of the last connection closing\n"
                                  << b_->daemon().output();
    EXPECT_EQ(*code, 0) << b_->daemon().output();
    EXPECT_LT(took, 10s) << "B took "
                         << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
                         << "ms to exit after the last connection closed";
    EXPECT_FALSE(b_->daemon().saw(std::regex("deadline passed"))) << b_->daemon().output();
    EXPECT_TRUE(b_->daemon().saw(std::regex("ztunnel stopped"))) << b_->daemon().output();
  }

  TempDir dir_;
  TestPki pki_;
  std::string client_ip_, server_ip_;
  std::unique_ptr<ZtunnelProcess> a_, b_;
  std::unique_ptr<EchoServer> echo_;
  asio::io_context io_;
  std::optional<tcp::socket> conn_;  // after io_: destroyed first
};

TEST_F(Drain, SigtermKeepsOpenConnectionsWorkingRefusesNewOnesAndExitsZeroWhenTheyClose) {
  ASSERT_NO_FATAL_FAILURE(start("127.0.32.2", "127.0.32.3", "60s"));
  ASSERT_NO_FATAL_FAILURE(open_long_lived_connection());
  ASSERT_EQ(::kill(b_->daemon().pid(), SIGTERM), 0);
  expect_graceful_drain("SIGTERM");
}

TEST_F(Drain, QuitQuitQuitKeepsOpenConnectionsWorkingRefusesNewOnesAndExitsZeroWhenTheyClose) {
  ASSERT_NO_FATAL_FAILURE(start("127.0.33.2", "127.0.33.3", "60s"));
  ASSERT_NO_FATAL_FAILURE(open_long_lived_connection());
  auto reply = http_request(b_->admin, "POST", "/quitquitquit");
  ASSERT_TRUE(reply) << reply.error().describe();
  EXPECT_EQ(reply->status, 200) << reply->body;
  expect_graceful_drain("/quitquitquit");
}

TEST_F(Drain, ConnectionStillOpenAtTheTerminationDeadlineIsClosedAndZtunnelExits) {
  ASSERT_NO_FATAL_FAILURE(start("127.0.34.2", "127.0.34.3", "1s"));
  ASSERT_NO_FATAL_FAILURE(open_long_lived_connection());

  auto signalled_at = Clock::now();
  auto code = b_->daemon().stop(SIGTERM, 20s);
  auto took = Clock::now() - signalled_at;
  ASSERT_TRUE(code.has_value()) << "B did not exit within 20s of SIGTERM with a 1s deadline\n"
                                << b_->daemon().output();
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(took).count();
  EXPECT_GE(took, 1s) << "B exited after " << ms << "ms, before its 1s deadline";
  EXPECT_LE(took, 10s) << "B exited only after " << ms << "ms with a 1s deadline";
  EXPECT_EQ(*code, 0) << b_->daemon().output();
  EXPECT_TRUE(b_->daemon().saw(std::regex("deadline passed"))) << b_->daemon().output();

  // The client's connection was closed under it (EOF or reset), not left hanging.
  run_coroutine(io_, [&]() -> awaitable<void> {
    std::array<char, 256> buf{};
    auto r = co_await async::with_timeout(conn_->async_read_some(asio::buffer(buf), kTuple), 10s);
    EXPECT_TRUE(r.has_value()) << "the client's connection is still open 10s after B exited";
    if (r) {
      auto [ec, n] = *r;
      EXPECT_TRUE(ec == asio::error::eof || ec == asio::error::connection_reset)
          << "read " << n << " bytes, error: " << ec.message();
    }
  });
}

// A connection accepted just before the drain, still in its TLS handshake when B sent GOAWAY on
// its HBONE connections, must not become a way in: B must refuse new streams on it too.
//
// Before e8f3ddf this failed (B answered 200): Inbound::drain_all() sent GOAWAY only on the
// connections already in Inbound::connections_, and serve_connection() added one there after its
// TLS handshake without checking whether the drain had started.
TEST_F(Drain, HboneConnectionStillInItsTlsHandshakeWhenTheDrainStartsGetsNoNewStreams) {
  ASSERT_NO_FATAL_FAILURE(start("127.0.32.12", "127.0.32.13", "60s"));
  auto ctx = tls::make_hbone_client_context(pki_.issue(pki_.id("default", "client")));
  ASSERT_TRUE(ctx) << ctx.error().describe();
  async::TaskGroup tasks(io_.get_executor());
  HandshakeGate gate(io_.get_executor());
  gate.acceptor.open(tcp::v4());
  gate.acceptor.bind({asio::ip::make_address_v4("127.0.0.1"), 0});
  gate.acceptor.listen();
  EarlyClient early(io_.get_executor());
  // However the test ends, the relay and the client stop before what they refer to goes away.
  struct Cleanup {
    std::function<void()> f;
    ~Cleanup() { f(); }
  } cleanup{[&] {
    run_coroutine(io_, [&]() -> awaitable<void> {
      tasks.cancel_all();
      co_await tasks.wait_empty(5s);
    });
  }};

  // B accepts the connection and answers the ClientHello; the client's Finished is held.
  run_coroutine(io_, [&]() -> awaitable<void> {
    tasks.spawn(gated_relay(gate, server(15008)), "relay");
    tasks.spawn(early_client_handshake(gate.acceptor.local_endpoint(), **ctx, early), "client");
    EXPECT_TRUE(co_await wait_flag(gate.answered, gate.answered_event, 10s))
        << "B did not answer the ClientHello";
    EXPECT_TRUE(co_await wait_flag(early.finished, early.finished_event, 10s));
  });
  ASSERT_TRUE(gate.answered);
  ASSERT_TRUE(early.finished);
  ASSERT_FALSE(early.error) << "client handshake: " << early.error.message();

  // B drains: listeners closed, GOAWAY sent on the HBONE connections it has.
  ASSERT_EQ(::kill(b_->daemon().pid(), SIGTERM), 0);
  ASSERT_TRUE(b_->daemon().wait_for(std::regex("draining \\(SIGTERM\\)"), 10s));
  int attempts = 0;
  bool refused = false;
  run_coroutine(io_, [&]() -> awaitable<void> {
    co_await connect_until_refused(server(15008), attempts, refused);
  });
  ASSERT_TRUE(refused) << "B's listeners stayed open";

  // Now B completes the handshake of the connection it accepted before; a CONNECT on it must
  // not be served.
  std::shared_ptr<h2::Connection> conn;
  run_coroutine(io_,
      [&]() -> awaitable<void> {
        gate.release();
        auto c = h2::Connection::create(std::move(*early.tls), h2::Role::kClient, h2::Settings{});
        if (!c) {
          ADD_FAILURE() << c.error().describe();
          co_return;
        }
        conn = *c;
        tasks.spawn(conn->run(), "hbone-client");
        auto st = co_await async::with_timeout(
            conn->open_connect(fmt::format("{}:{}", server_ip_, kEchoPort), h2::Headers()), 10s);
        if (!st) co_return;  // no answer at all: not served either
        EXPECT_FALSE(st->has_value())
            << "B answered 200 to a CONNECT during its drain, on an HBONE connection that was in "
               "its TLS handshake when the drain sent GOAWAY (it got no GOAWAY: draining="
            << conn->draining() << ")";
      });
  // Close the connection and the relay; B then has nothing left and exits.
  if (conn) conn->close();
  cleanup.f();
  auto code = b_->daemon().stop(0, 30s);
  EXPECT_TRUE(code.has_value() && *code == 0) << b_->daemon().output();
}

}  // namespace
}  // namespace zt::testing
