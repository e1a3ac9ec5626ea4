// serve_http1 on an HBONE stream (real TLS and HTTP/2 on loopback), where the downstream is
// watched while a request is handled: a client that ends its side or resets the stream has gone
// away, as Envoy takes an HTTP/1.1 client's FIN.
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "common/async/task_group.h"
#include "common/h2/connection.h"
#include "tests/support/coro.h"
#include "tests/support/hbone_server.h"
#include "tests/support/test_pki.h"
#include "waypoint/http1/http1.h"

namespace zt::waypoint::http1 {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// What the handler saw of one request.
struct Seen {
  std::string target;
  bool gone_at_start = false;
  bool cancelled = false;  // its wait ended early
  std::string flag;        // DownstreamGone's, when it returned
  int status = -1;
  Clock::duration waited{};
};

class Http1OverHbone : public ::testing::Test {
 protected:
  void SetUp() override {
    client_creds_ = pki_.credentials(pki_.id("default", "client"));
    server_.emplace(io_, tasks_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0),
                    pki_.credentials(pki_.id("default", "waypoint")),
                    [this](std::shared_ptr<h2::Stream> st, const std::string&) {
                      st->respond(200);
                      tasks_.spawn(session(std::move(st)), "session");
                    });
  }
  void TearDown() override {
    server_->close();
    for (auto& w : client_conns_) {
      if (auto c = w.lock()) c->close();
    }
    tasks_.cancel_all();
    zt::testing::run_coroutine(io_, [&]() -> awaitable<void> { co_await tasks_.wait_empty(5s); });
  }

  // The handler: "/hold" waits up to 10 s (its cancellation ends the wait) unless the downstream
  // is gone already, anything else is answered at once.
  awaitable<Response> handle(Request r) {
    if (r.head.target == "/upload") {
      // Reads the body to its end or its failure.
      upload_gone_ = r.gone;
      upload_streamed_ = r.source != nullptr;
      while (r.source) {
        auto piece = co_await r.source->next();
        if (!piece.error.empty()) upload_error_ = piece.error;
        if (piece.end || !piece.error.empty()) r.source.reset();
      }
      co_return local_response(200, "read");
    }
    if (r.head.target == "/stall") {
      // "first", then a body that never goes on.
      stall_gone_ = r.gone;
      Response res;
      res.status = 200;
      res.body = "first";
      res.source = std::make_shared<StallingBody>(this);
      co_return res;
    }
    Seen s;
    s.target = r.head.target;
    s.gone_at_start = r.gone && r.gone->happened();
    if (r.head.target == "/hold" && !s.gone_at_start) {
      asio::steady_timer t(co_await asio::this_coro::executor, 10s);
      ++waiting_;
      const auto start = Clock::now();
      auto [ec] = co_await t.async_wait(kTuple);
      s.cancelled = ec == asio::error::operation_aborted;
      s.waited = Clock::now() - start;
    }
    if (r.gone) {
      s.flag = r.gone->flag;
      s.status = r.gone->status;
    }
    seen_.push_back(s);
    co_return local_response(200, "ok");
  }

  // A response body whose next piece never comes (its wait ends only when cancelled).
  class StallingBody final : public BodySource {
   public:
    explicit StallingBody(Http1OverHbone* test) : test_(test) {}
    ~StallingBody() override { ++test_->stalls_dropped_; }
    awaitable<Piece> next() override {
      asio::steady_timer t(co_await asio::this_coro::executor, 10s);
      auto [ec] = co_await t.async_wait(kTuple);
      if (ec == asio::error::operation_aborted) ++test_->stalls_cancelled_;
      Piece p;
      p.error = "stalled";
      co_return p;
    }

   private:
    Http1OverHbone* test_;
  };

  awaitable<void> session(std::shared_ptr<h2::Stream> st) {
    Duplex downstream = Duplex::of(st);
    co_await serve_http1(downstream, "", limits_,
                         [this](Request r) { return handle(std::move(r)); });
    ++sessions_ended_;
    co_await downstream.shutdown_write();
  }

  // A CONNECT stream to the server on a new HBONE connection.
  awaitable<std::shared_ptr<h2::Stream>> open() {
    tcp::socket s(io_);
    auto [cec] = co_await s.async_connect(server_->endpoint(), kTuple);
    EXPECT_FALSE(cec) << cec.message();
    h2::TlsStream tls(std::move(s), *client_creds_->client_ctx);
    auto [hec] = co_await tls.async_handshake(asio::ssl::stream_base::client, kTuple);
    EXPECT_FALSE(hec) << hec.message();
    auto conn = h2::Connection::create(std::move(tls), h2::Role::kClient, h2::Settings{});
    EXPECT_TRUE(conn.has_value());
    if (!conn || hec) co_return nullptr;
    client_conns_.push_back(*conn);
    tasks_.spawn((*conn)->run(), "client");
    auto st = co_await (*conn)->open_connect("10.0.0.2:80", {});
    EXPECT_TRUE(st.has_value()) << (st ? "" : st.error().describe());
    co_return st ? *st : nullptr;
  }

  // Everything the stream brings until its end, at most 5 s.
  static awaitable<std::string> read_to_end(h2::Stream& st) {
    std::string got;
    char buf[4096];
    const auto deadline = Clock::now() + 5s;
    for (;;) {
      auto [ec, n] = co_await st.read_some_until(asio::buffer(buf), deadline);
      got.append(buf, n);
      if (ec) co_return got;
    }
  }

  // Waits (at most 5 s) until `done`.
  awaitable<void> until(std::function<bool()> done) {
    asio::steady_timer t(io_);
    for (int i = 0; i < 500 && !done(); ++i) {
      t.expires_after(10ms);
      co_await t.async_wait(kTuple);
    }
  }
  awaitable<void> until_seen(size_t n) {
    return until([this, n] { return seen_.size() >= n; });
  }

  static awaitable<void> send(h2::Stream& st, std::string_view bytes) {
    EXPECT_FALSE(co_await st.write_all(asio::buffer(bytes)));
  }

  // Sends a request for "/hold", runs `then` on the stream once the handler waits, and waits
  // for the handler to return; returns what it saw.
  Seen hold_then(std::function<awaitable<void>(h2::Stream&)> then) {
    zt::testing::run_coroutine(io_, [&]() -> awaitable<void> {
      auto st = co_await open();
      if (!st) co_return;
      co_await send(*st, "GET /hold HTTP/1.1\r\nHost: reviews\r\n\r\n");
      co_await until([this] { return waiting_ == 1; });
      co_await then(*st);
      co_await until_seen(1);
    });
    EXPECT_EQ(seen_.size(), 1u);
    if (seen_.size() != 1) return Seen{};
    EXPECT_FALSE(seen_[0].gone_at_start);
    EXPECT_TRUE(seen_[0].cancelled) << "the handler waited its whole 10 s";
    EXPECT_LT(seen_[0].waited, 3s);
    return seen_[0];
  }

  zt::testing::TestPki pki_;
  std::shared_ptr<identity::WorkloadCredentials> client_creds_;
  asio::io_context io_;
  async::TaskGroup tasks_{io_.get_executor()};
  std::optional<zt::testing::HboneTestServer> server_;
  std::vector<std::weak_ptr<h2::Connection>> client_conns_;
  std::vector<Seen> seen_;
  int waiting_ = 0;  // handlers that began their wait
  int sessions_ended_ = 0;
  Limits limits_;
  std::shared_ptr<DownstreamGone> upload_gone_;  // "/upload"'s
  bool upload_streamed_ = false;
  std::string upload_error_;
  std::shared_ptr<DownstreamGone> stall_gone_;  // "/stall"'s
  int stalls_cancelled_ = 0;                    // StallingBody waits cut short
  int stalls_dropped_ = 0;                      // StallingBody objects destroyed
};

constexpr std::string_view kFast = "GET /fast HTTP/1.1\r\nHost: reviews\r\n\r\n";

// The client ends its side while its request is handled: the handler is told (DC, no status)
// and cancelled at once, and nothing is answered.
TEST_F(Http1OverHbone, AClientThatEndsItsSideWhileItsRequestIsHandledHasGone) {
  const Seen seen = hold_then([](h2::Stream& st) -> awaitable<void> {
    co_await st.shutdown_write();
    EXPECT_EQ(co_await read_to_end(st), "") << "no answer for a client that has gone";
  });
  EXPECT_EQ(seen.flag, "DC");
  EXPECT_EQ(seen.status, 0);
  EXPECT_EQ(sessions_ended_, 1);
}

// A reset of the stream is the same.
TEST_F(Http1OverHbone, AClientThatResetsItsStreamWhileItsRequestIsHandledHasGone) {
  const Seen seen = hold_then([](h2::Stream& st) -> awaitable<void> {
    st.abort();
    co_return;
  });
  EXPECT_EQ(seen.flag, "DC");
}

// Requests answered before the client ends are untouched, a keep-alive connection carries
// several, and an end between requests closes the session quietly, calling no handler.
TEST_F(Http1OverHbone, AnsweredRequestsAreUntouchedAndAnEndBetweenRequestsIsQuiet) {
  zt::testing::run_coroutine(io_, [&]() -> awaitable<void> {
    auto st = co_await open();
    if (!st) co_return;
    for (int i = 0; i < 3; ++i) {
      co_await send(*st, kFast);
      co_await until_seen(static_cast<size_t>(i) + 1);
    }
    co_await st->shutdown_write();
    const std::string got = co_await read_to_end(*st);
    size_t answers = 0;
    for (size_t at = got.find("HTTP/1.1 200"); at != std::string::npos;
         at = got.find("HTTP/1.1 200", at + 1)) {
      ++answers;
    }
    EXPECT_EQ(answers, 3u) << got;
  });
  ASSERT_EQ(seen_.size(), 3u);
  for (const auto& s : seen_) {
    EXPECT_FALSE(s.gone_at_start);
    EXPECT_EQ(s.flag, "");
  }
  EXPECT_EQ(sessions_ended_, 1);
}

// A request that arrives with the client's end (a client that half-closes and then waits, which
// Envoy does not serve either) is not served once its handler waits: the end is seen before the
// handler starts or cancels it in its first wait.
TEST_F(Http1OverHbone, ARequestThatArrivesWithTheClientsEndIsNotServed) {
  zt::testing::run_coroutine(io_, [&]() -> awaitable<void> {
    auto st = co_await open();
    if (!st) co_return;
    co_await send(*st, "GET /hold HTTP/1.1\r\nHost: reviews\r\n\r\n");
    co_await st->shutdown_write();
    EXPECT_EQ(co_await read_to_end(*st), "");
    co_await until_seen(1);
  });
  ASSERT_EQ(seen_.size(), 1u);
  EXPECT_TRUE(seen_[0].gone_at_start || seen_[0].cancelled);
  EXPECT_LT(seen_[0].waited, 3s);
  EXPECT_EQ(seen_[0].flag, "DC");
}

// The caller's cancellation (a drain's deadline) still reaches a handler under the watch, and
// is not taken for the downstream going away.
TEST_F(Http1OverHbone, TheCallersCancellationReachesTheHandler) {
  const Seen seen = hold_then([this](h2::Stream&) -> awaitable<void> {
    tasks_.cancel_all(asio::cancellation_type::terminal);
    co_return;
  });
  EXPECT_EQ(seen.flag, "");
}

// A streamed answer whose body stalls holds its upstream only while the downstream is there:
// the client's end stops it (DC), and so does the stream idle timeout (SI); either way the
// body is dropped and the session ends.
TEST_F(Http1OverHbone, AStalledStreamedAnswerEndsWithTheClientOrTheStreamIdleTimeout) {
  for (const bool client_ends : {true, false}) {
    SCOPED_TRACE(client_ends ? "the client ends its side" : "the stream idle timeout");
    limits_.stream_idle_timeout = client_ends ? 10s : 300ms;
    stall_gone_.reset();
    stalls_cancelled_ = stalls_dropped_ = sessions_ended_ = 0;
    const auto start = Clock::now();
    zt::testing::run_coroutine(io_, [&]() -> awaitable<void> {
      auto st = co_await open();
      if (!st) co_return;
      co_await send(*st, "GET /stall HTTP/1.1\r\nHost: reviews\r\n\r\n");
      std::string got;
      char buf[4096];
      while (got.find("first") == std::string::npos) {
        auto [ec, n] = co_await st->read_some_until(asio::buffer(buf), Clock::now() + 5s);
        got.append(buf, n);
        if (ec) break;
      }
      EXPECT_NE(got.find("transfer-encoding: chunked"), std::string::npos) << got;
      EXPECT_NE(got.find("5\r\nfirst\r\n"), std::string::npos) << got;
      if (client_ends) co_await st->shutdown_write();
      got = co_await read_to_end(*st);
      EXPECT_EQ(got.find("0\r\n\r\n"), std::string::npos) << "the body must not look whole";
      co_await until([this] { return sessions_ended_ == 1; });
    });
    EXPECT_EQ(sessions_ended_, 1);
    EXPECT_LT(Clock::now() - start, 4s);
    EXPECT_EQ(stalls_cancelled_, 1) << "the body's pull was cut short";
    EXPECT_EQ(stalls_dropped_, 1);
    ASSERT_TRUE(stall_gone_);
    EXPECT_EQ(stall_gone_->flag, client_ends ? "DC" : "SI");
  }
}

// A client that ends its side inside a request body that streams to the handler (past
// stream_bodies_after) has gone away: the body fails, the handler is told (DC) and cancelled,
// and nothing is answered.
TEST_F(Http1OverHbone, AClientThatEndsInsideAStreamedRequestBodyHasGone) {
  limits_.stream_bodies_after = 1024;
  zt::testing::run_coroutine(io_, [&]() -> awaitable<void> {
    auto st = co_await open();
    if (!st) co_return;
    co_await send(*st, "POST /upload HTTP/1.1\r\nHost: reviews\r\nContent-Length: 100000\r\n\r\n" +
                           std::string(5000, 'u'));
    co_await until([this] { return upload_gone_ != nullptr; });
    co_await st->shutdown_write();
    EXPECT_EQ(co_await read_to_end(*st), "") << "no answer for a client that has gone";
    co_await until([this] { return sessions_ended_ == 1; });
  });
  EXPECT_EQ(sessions_ended_, 1);
  EXPECT_TRUE(upload_streamed_);
  EXPECT_NE(upload_error_.find("ended inside the request body"), std::string::npos)
      << upload_error_;
  ASSERT_TRUE(upload_gone_);
  EXPECT_EQ(upload_gone_->flag, "DC");
}

}  // namespace
}  // namespace zt::waypoint::http1
