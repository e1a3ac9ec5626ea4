// HBONE's HTTP/2 layer over real TLS on loopback: CONNECT streams, half-close, flow control
// with bulk data, the pool's stream limit, non-200 answers and GOAWAY drain.
#include <optional>

#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include "common/async/task_group.h"
#include "common/base/log.h"
#include "common/h2/connection.h"
#include "common/h2/pool.h"
#include "common/net/copy.h"
#include "common/tls/context.h"
#include "tests/support/coro.h"
#include "tests/support/hbone_server.h"
#include "tests/support/servers.h"
#include "tests/support/test_pki.h"

namespace zt::h2 {
namespace {

using namespace std::chrono_literals;

class H2Test : public ::testing::Test {
 public:
  void SetUp() override {
    if (std::getenv("ZT_TEST_TRACE") != nullptr) spdlog::set_level(spdlog::level::trace);
    client_creds_ = pki_.credentials(pki_.id("client-ns", "client"));
    server_.emplace(
        io_, tasks_, tcp::endpoint(asio::ip::address_v4::loopback(), 0),
        pki_.credentials(pki_.id("server-ns", "server")),
        [this](std::shared_ptr<Stream> st, const std::string&) {
          tasks_.spawn(echo(std::move(st)), "echo");
        },
        &settings_);
  }
  void TearDown() override {
    server_->close();
    tasks_.cancel_all();
    io_.run_for(2s);
  }

  // Server: answers `status_` and echoes the stream (read until EOF, then half-close).
  awaitable<void> echo(std::shared_ptr<Stream> st) {
    ++server_streams_;
    authorities_.push_back(st->authority());
    if (status_ != 200) {
      st->respond(status_);
      co_return;
    }
    st->respond(200);
    if (watch_) {  // reads nothing; records when the peer ends, and asks again once it has
      st->on_peer_end([this, id = st->id(), weak = std::weak_ptr<Stream>(st)] {
        peer_ends_.push_back(id);
        if (auto again = weak.lock()) again->on_peer_end([this, id] { late_ends_.push_back(id); });
      });
      co_await hold_.wait();
      co_return;
    }
    if (stall_) {  // takes nothing: the client's writes fill the window, then its send buffer
      co_await hold_.wait();
      co_return;
    }
    std::vector<uint8_t> buf(64 * 1024);
    for (;;) {
      auto [ec, n] = co_await st->read_some(asio::buffer(buf));
      if (n > 0 && co_await st->write_all(asio::buffer(buf.data(), n))) co_return;
      if (ec == asio::error::eof) break;
      if (ec) co_return;
    }
    co_await st->shutdown_write();
    // Hold the stream open until the client is done with it.
    co_await hold_.wait();
  }

  awaitable<Result<std::shared_ptr<Connection>>> dial(const PoolKey&) {
    tcp::socket s(io_);
    auto [cec] = co_await s.async_connect(server_->endpoint(), kTuple);
    if (cec) co_return fail(cec, "connect");
    s.set_option(tcp::no_delay(true));
    TlsStream tls(std::move(s), *client_creds_->client_ctx);
    auto [hec] = co_await tls.async_handshake(asio::ssl::stream_base::client, kTuple);
    if (hec) co_return fail(hec, "handshake");
    ++dials_;
    auto conn = Connection::create(std::move(tls), Role::kClient, settings_);
    if (conn) client_conns_.push_back(*conn);
    co_return conn;
  }

  // Runs `body` on a new CONNECT stream to the echo server, through a pool of `dial`ed
  // connections; releases the server side afterwards.
  template <class F>
  void with_stream(F body) {
    Pool pool(
        io_.get_executor(), 100, [this](const PoolKey& k) { return dial(k); }, tasks_);
    testing::run_coroutine(io_, [&]() -> awaitable<void> {
      auto st = co_await pool.connect(key_, "10.0.0.2:8080", Headers());
      EXPECT_TRUE(st.has_value()) << (st ? "" : st.error().describe());
      if (st) co_await body(**st);
      hold_.notify();
    });
  }

  testing::TestPki pki_;
  std::shared_ptr<identity::WorkloadCredentials> client_creds_;
  asio::io_context io_;
  async::TaskGroup tasks_{io_.get_executor()};
  Settings settings_;
  std::optional<testing::HboneTestServer> server_;
  int status_ = 200;
  bool stall_ = false;
  bool watch_ = false;
  std::vector<int32_t> peer_ends_, late_ends_;  // server stream ids, as on_peer_end fired
  int server_streams_ = 0;
  int dials_ = 0;
  std::vector<std::string> authorities_;
  std::vector<std::weak_ptr<Connection>> client_conns_;
  async::Event hold_{io_.get_executor()};
  PoolKey key_{"spiffe://cluster.local/ns/client-ns/sa/client", "x", "127.0.0.1:15008", ""};
};

// Sends `n` seeded bytes in 128 KiB writes; half-closes after them when `then_close`.
awaitable<void> send_seeded(Stream& st, uint64_t n, uint64_t seed, bool then_close) {
  testing::ByteStream bs(seed);
  std::vector<uint8_t> buf(128 * 1024);
  for (uint64_t left = n; left > 0;) {
    size_t k = std::min<uint64_t>(left, buf.size());
    bs.fill(buf.data(), k);
    if (co_await st.write_all(asio::buffer(buf.data(), k))) co_return;
    left -= k;
  }
  if (then_close) co_await st.shutdown_write();
}

// Sends `n` seeded bytes, half-closes, and reads the echo to EOF; returns the echo's digest.
awaitable<std::pair<std::string, uint64_t>> send_and_drain(Stream& st, uint64_t n, uint64_t seed) {
  using namespace asio::experimental::awaitable_operators;
  testing::Sha256 got;
  uint64_t received = 0;
  auto writer = [&]() -> awaitable<void> { co_await send_seeded(st, n, seed, true); };
  auto reader = [&]() -> awaitable<void> {
    std::vector<uint8_t> buf(64 * 1024);
    for (;;) {
      auto [ec, k] = co_await st.read_some(asio::buffer(buf));
      got.update(buf.data(), k);
      received += k;
      if (ec) co_return;
    }
  };
  co_await (writer() && reader());
  co_return std::pair{got.hex(), received};
}

TEST_F(H2Test, ConnectStreamEchoesBytesAndPassesHalfClose) {
  Pool pool(
      io_.get_executor(), 100, [this](const PoolKey& k) { return dial(k); }, tasks_);
  testing::run_coroutine(io_, [&]() -> awaitable<void> {
    Headers headers;
    headers.emplace_back("forwarded", "for=\"10.0.0.1:1\"");
    auto st = co_await pool.connect(key_, "10.0.0.2:8080", headers);
    EXPECT_TRUE(st.has_value()) << (st ? "" : st.error().describe());
    if (!st) co_return;
    auto got = co_await send_and_drain(**st, 1 << 20, 7);
    EXPECT_EQ(got.second, 1u << 20);
    EXPECT_EQ(got.first, testing::stream_digest(7, 1 << 20));
    EXPECT_EQ((*st)->status(), 200);
    hold_.notify();
  });
  ASSERT_EQ(authorities_.size(), 1u);
  EXPECT_EQ(authorities_[0], "10.0.0.2:8080");
}

TEST_F(H2Test, BulkTransferLargerThanEveryWindowIsByteExact) {
  // 64 MiB is 4x the connection window: it only completes if WINDOW_UPDATEs follow reads.
  Pool pool(
      io_.get_executor(), 100, [this](const PoolKey& k) { return dial(k); }, tasks_);
  testing::run_coroutine(io_, [&]() -> awaitable<void> {
    auto st = co_await pool.connect(key_, "10.0.0.2:8080", Headers());
    if (!st) {
      ADD_FAILURE() << st.error().describe();
      co_return;
    }
    auto got = co_await send_and_drain(**st, 64ull << 20, 11);
    EXPECT_EQ(got.second, 64ull << 20);
    EXPECT_EQ(got.first, testing::stream_digest(11, 64ull << 20));
    hold_.notify();
  });
}

TEST_F(H2Test, PoolOpensANewConnectionPastTheStreamLimit) {
  Pool pool(
      io_.get_executor(), 100, [this](const PoolKey& k) { return dial(k); }, tasks_);
  std::vector<std::shared_ptr<Stream>> streams;
  testing::run_coroutine(io_, [&]() -> awaitable<void> {
    // 250 streams open at once need three connections of at most 100 streams.
    auto ex = co_await asio::this_coro::executor;
    async::TaskGroup openers(ex);
    for (int i = 0; i < 250; ++i) {
      openers.spawn(
          [](Pool& p, PoolKey k, std::vector<std::shared_ptr<Stream>>& out) -> awaitable<void> {
            auto st = co_await p.connect(k, "10.0.0.2:8080", Headers());
            if (st) out.push_back(*st);
          }(pool, key_, streams),
          "open");
    }
    co_await openers.wait_empty(30s);
  });
  EXPECT_EQ(streams.size(), 250u);
  EXPECT_EQ(pool.connections_opened(), 3u);
  EXPECT_EQ(dials_, 3);
  streams.clear();
  hold_.notify();
}

TEST_F(H2Test, NonOkAnswerIsAnErrorNamingTheStatus) {
  status_ = 503;
  Pool pool(
      io_.get_executor(), 100, [this](const PoolKey& k) { return dial(k); }, tasks_);
  testing::run_coroutine(io_, [&]() -> awaitable<void> {
    auto st = co_await pool.connect(key_, "10.0.0.2:8080", Headers());
    EXPECT_FALSE(st.has_value());
    if (!st) {
      EXPECT_EQ(st.error().message, "http status: 503");
    }
  });
}

TEST_F(H2Test, GoawayLetsOpenStreamsFinishAndNewStreamsUseANewConnection) {
  Pool pool(
      io_.get_executor(), 100, [this](const PoolKey& k) { return dial(k); }, tasks_);
  testing::run_coroutine(io_, [&]() -> awaitable<void> {
    auto first = co_await pool.connect(key_, "10.0.0.2:8080", Headers());
    if (!first) {
      ADD_FAILURE() << first.error().describe();
      co_return;
    }
    for (auto& w : server_->connections()) {
      if (auto c = w.lock()) c->drain();
    }
    // The open stream still works end to end after the GOAWAY.
    auto got = co_await send_and_drain(**first, 256 * 1024, 3);
    EXPECT_EQ(got.first, testing::stream_digest(3, 256 * 1024));
    // A new stream goes over a new connection.
    auto second = co_await pool.connect(key_, "10.0.0.2:8080", Headers());
    EXPECT_TRUE(second.has_value());
    hold_.notify();
  });
  EXPECT_EQ(dials_, 2);
}

}  // namespace
}  // namespace zt::h2

namespace zt::h2 {
namespace {

TEST_F(H2Test, IdlePooledConnectionIsReleasedEvenThoughPingsAreAnswered) {
  // PINGs every 50 ms are answered; they must not count as use.
  settings_.ping_interval = std::chrono::milliseconds(50);
  settings_.idle_timeout = std::chrono::milliseconds(300);
  Pool pool(
      io_.get_executor(), 100, [this](const PoolKey& k) { return dial(k); }, tasks_);
  testing::run_coroutine(io_, [&]() -> awaitable<void> {
    {
      auto st = co_await pool.connect(key_, "10.0.0.2:8080", Headers());
      EXPECT_TRUE(st.has_value());
      if (st) (*st)->abort();
    }
    EXPECT_EQ(pool.connections_open(), 1u);
    // Released within a few ping intervals after the idle timeout.
    asio::steady_timer t(co_await asio::this_coro::executor);
    for (int i = 0; i < 40 && pool.connections_open() > 0; ++i) {
      t.expires_after(std::chrono::milliseconds(50));
      co_await t.async_wait(kTuple);
    }
    EXPECT_EQ(pool.connections_open(), 0u);
  });
}

// What a connection may keep allocated for its output between bursts: two buffers of at most
// 64 KiB (kOutKeepCapacity in connection.cc).
constexpr size_t kKeptOutput = 2 * 64 * 1024;

// Largest output buffer capacity of `conn` seen every millisecond until `done`.
awaitable<void> watch_output(std::weak_ptr<Connection> conn, const bool& done, size_t& peak) {
  asio::steady_timer t(co_await asio::this_coro::executor);
  while (!done) {
    if (auto c = conn.lock()) peak = std::max(peak, c->output_buffer_capacity());
    t.expires_after(std::chrono::milliseconds(1));
    co_await t.async_wait(kTuple);
  }
}

TEST_F(H2Test, OutputBuffersAreGivenBackWhenABulkStreamEnds) {
  using namespace asio::experimental::awaitable_operators;
  Pool pool(
      io_.get_executor(), 100, [this](const PoolKey& k) { return dial(k); }, tasks_);
  testing::run_coroutine(io_, [&]() -> awaitable<void> {
    // The pool keeps the connection open after its only stream ended (default keep-alive
    // interval: 10 s, so no tick releases anything during this test).
    auto bulk = co_await pool.connect(key_, "10.0.0.2:8080", Headers());
    if (!bulk || client_conns_.size() != 1 || server_->connections().size() != 1) {
      ADD_FAILURE() << "expected a stream over one connection";
      co_return;
    }
    bool done = false;
    size_t client_peak = 0, server_peak = 0;
    auto transfer = [&]() -> awaitable<void> {
      auto got = co_await send_and_drain(**bulk, 16 << 20, 5);
      EXPECT_EQ(got.first, testing::stream_digest(5, 16 << 20));
      done = true;
    };
    co_await (transfer() && watch_output(client_conns_[0], done, client_peak) &&
              watch_output(server_->connections()[0], done, server_peak));
    // Both sides queued more than they keep (else this test shows nothing)...
    EXPECT_GT(client_peak, kKeptOutput);
    EXPECT_GT(server_peak, kKeptOutput);
    // ...and hold no more than that once the stream has ended on both.
    auto client = client_conns_[0].lock();
    auto server = server_->connections()[0].lock();
    if (!client || !server) {
      ADD_FAILURE() << "a connection closed";
      co_return;
    }
    asio::steady_timer t(co_await asio::this_coro::executor);
    for (int i = 0; i < 100 && (client->output_buffer_capacity() > kKeptOutput ||
                                server->output_buffer_capacity() > kKeptOutput);
         ++i) {
      t.expires_after(std::chrono::milliseconds(20));
      co_await t.async_wait(kTuple);
    }
    EXPECT_FALSE(client->closed());
    EXPECT_EQ(client->active_streams(), 0u);
    EXPECT_LE(client->output_buffer_capacity(), kKeptOutput);
    EXPECT_LE(server->output_buffer_capacity(), kKeptOutput);
    hold_.notify();
  });
}

TEST_F(H2Test, OutputBuffersAreGivenBackOnceAStreamGoesQuiet) {
  // The stream stays open after its burst: the keep-alive tick releases the buffers once a
  // whole interval passed without a large write.
  using namespace asio::experimental::awaitable_operators;
  settings_.ping_interval = std::chrono::milliseconds(50);
  Pool pool(
      io_.get_executor(), 100, [this](const PoolKey& k) { return dial(k); }, tasks_);
  testing::run_coroutine(io_, [&]() -> awaitable<void> {
    auto st = co_await pool.connect(key_, "10.0.0.2:8080", Headers());
    if (!st || client_conns_.size() != 1) {
      ADD_FAILURE() << "no stream";
      co_return;
    }
    constexpr uint64_t kBytes = 8 << 20;
    bool done = false;
    size_t peak = 0;
    uint64_t echoed = 0;
    auto reader = [&]() -> awaitable<void> {
      std::vector<uint8_t> buf(64 * 1024);
      while (echoed < kBytes) {
        auto [ec, k] = co_await (*st)->read_some(asio::buffer(buf));
        echoed += k;
        if (ec) break;
      }
      done = true;
    };
    co_await (send_seeded(**st, kBytes, 9, false) && reader() &&
              watch_output(client_conns_[0], done, peak));
    EXPECT_EQ(echoed, kBytes);
    EXPECT_GT(peak, kKeptOutput);
    auto conn = client_conns_[0].lock();
    if (!conn) {
      ADD_FAILURE() << "the connection closed";
      co_return;
    }
    asio::steady_timer t(co_await asio::this_coro::executor);
    for (int i = 0; i < 100 && conn->output_buffer_capacity() > kKeptOutput; ++i) {
      t.expires_after(std::chrono::milliseconds(20));
      co_await t.async_wait(kTuple);
    }
    EXPECT_LE(conn->output_buffer_capacity(), kKeptOutput);
    EXPECT_EQ(conn->active_streams(), 1u);
    // The stream still carries data afterwards.
    const char ping[] = "after";
    EXPECT_FALSE(co_await (*st)->write_all(asio::buffer(ping, 5)));
    char back[5] = {};
    size_t got = 0;
    while (got < 5) {
      auto [ec, k] = co_await (*st)->read_some(asio::buffer(back + got, 5 - got));
      got += k;
      if (ec) break;
    }
    EXPECT_EQ(std::string(back, got), "after");
    hold_.notify();
  });
}

TEST_F(H2Test, ACancelledDialDoesNotBlockLaterConnectsToTheSameDestination) {
  async::Event never(io_.get_executor());
  int calls = 0;
  Pool pool(
      io_.get_executor(), 100,
      [&](const PoolKey& k) -> awaitable<Result<std::shared_ptr<Connection>>> {
        return [](H2Test* self, int& calls, async::Event& never,
                  PoolKey k) -> awaitable<Result<std::shared_ptr<Connection>>> {
          if (++calls == 1) {
            co_await never.wait();  // a dial that hangs until cancelled
            co_return fail("first dial cancelled");
          }
          co_return co_await self->dial(k);
        }(this, calls, never, k);
      },
      tasks_);
  testing::run_coroutine(io_, [&]() -> awaitable<void> {
    auto first = co_await async::with_timeout(pool.connect(key_, "10.0.0.2:8080", Headers()),
                                              std::chrono::milliseconds(100));
    EXPECT_FALSE(first.has_value()) << "the hanging dial should have timed out";
    auto second = co_await async::with_timeout(pool.connect(key_, "10.0.0.2:8080", Headers()),
                                               std::chrono::seconds(5));
    EXPECT_TRUE(second.has_value() && second->has_value()) << "later connect blocked";
    hold_.notify();
  });
  EXPECT_EQ(calls, 2);
}

// A read with a deadline gives up with timed_out when the peer sends nothing, on the stream's
// own timer; the stream stays usable: bytes sent afterwards are read, with or without a deadline.
TEST_F(H2Test, ReadWithADeadlineTimesOutAndTheStreamStaysUsable) {
  with_stream([](Stream& st) -> awaitable<void> {
    char buf[16];
    const auto start = std::chrono::steady_clock::now();
    auto [ec, n] = co_await st.read_some_until(asio::buffer(buf), start + 100ms);
    EXPECT_EQ(ec, asio::error::timed_out);
    EXPECT_EQ(n, 0u);
    EXPECT_GE(std::chrono::steady_clock::now() - start, 100ms);

    // The stream's timer still holds that passed deadline: a read without one must wait for
    // the echo all the same, not end at once.
    EXPECT_FALSE(co_await st.write_all(asio::buffer(std::string_view("ping"))));
    auto [ec2, n2] = co_await st.read_some(asio::buffer(buf));
    EXPECT_FALSE(ec2) << ec2.message();
    EXPECT_EQ(std::string(buf, n2), "ping");

    EXPECT_FALSE(co_await st.write_all(asio::buffer(std::string_view("pong"))));
    auto [ec3, n3] =
        co_await st.read_some_until(asio::buffer(buf), std::chrono::steady_clock::now() + 5s);
    EXPECT_FALSE(ec3) << ec3.message();
    EXPECT_EQ(std::string(buf, n3), "pong");
  });
}

// A write with a deadline gives up with timed_out once the peer takes nothing: the stream window
// and then the stream's send buffer are full.
TEST_F(H2Test, WriteWithADeadlineTimesOutWhenThePeerTakesNothing) {
  stall_ = true;
  with_stream([this](Stream& st) -> awaitable<void> {
    std::vector<uint8_t> chunk(128 * 1024, 'x');
    const uint64_t bound = uint64_t{settings_.stream_window} + 4 * Stream::kMaxStreamSendBuffer;
    uint64_t written = 0;
    error_code ec;
    while (written <= bound) {
      ec = co_await st.write_all_until(asio::buffer(chunk),
                                       std::chrono::steady_clock::now() + 200ms);
      if (ec) break;
      written += chunk.size();
    }
    EXPECT_EQ(ec, asio::error::timed_out) << ec.message() << " after " << written << " bytes";
    EXPECT_GE(written, uint64_t{Stream::kMaxStreamSendBuffer});
  });
}

// A server stream tells its owner when nothing more can come from the peer, with no read
// pending: at the peer's END_STREAM, at its RST_STREAM and when the connection goes; once each,
// and at once for a callback set after that end. Data alone does not.
TEST_F(H2Test, OnPeerEndFiresWithoutAReadWhenThePeerEndsResetsOrGoes) {
  watch_ = true;
  auto settle = [this](size_t ends) -> awaitable<void> {
    asio::steady_timer t(io_);
    for (int i = 0; i < 300 && (peer_ends_.size() < ends || late_ends_.size() < ends); ++i) {
      t.expires_after(10ms);
      co_await t.async_wait(kTuple);
    }
    t.expires_after(100ms);  // nothing more comes
    co_await t.async_wait(kTuple);
  };
  with_stream([&](Stream& st) -> awaitable<void> {
    EXPECT_FALSE(co_await st.write_all(asio::buffer(std::string_view("bytes nobody reads"))));
    co_await settle(0);
    EXPECT_TRUE(peer_ends_.empty());
    co_await st.shutdown_write();
    co_await settle(1);
    EXPECT_EQ(peer_ends_.size(), 1u);
    EXPECT_EQ(late_ends_.size(), 1u);
  });
  with_stream([&](Stream& st) -> awaitable<void> {
    st.abort();  // RST_STREAM(CANCEL)
    co_await settle(2);
    EXPECT_EQ(peer_ends_.size(), 2u);
    EXPECT_EQ(late_ends_.size(), 2u);
  });
  with_stream([&](Stream&) -> awaitable<void> {
    for (auto& w : client_conns_) {
      if (auto c = w.lock()) c->close();
    }
    co_await settle(3);
    EXPECT_EQ(peer_ends_.size(), 3u);
    EXPECT_EQ(late_ends_.size(), 3u);
  });
  EXPECT_EQ(server_streams_, 3);
}

}  // namespace
}  // namespace zt::h2
