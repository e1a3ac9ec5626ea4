// serve_http1()'s timeouts over real loopback TCP, with short limits (200 ms) so they are fast:
// a trickled head (slowloris) gets 408 and the connection closes; a stalled body gets 408; an
// idle keep-alive connection is closed; a response the peer does not read is cut; requests that
// progress are not affected.
#include "common/async/timeout.h"

#include <chrono>
#include <memory>
#include <string>

#include <gtest/gtest.h>

#include "tests/integration/waypoint_http1/test_util.h"
#include "tests/support/coro.h"
#include "waypoint/http1/http1.h"

namespace zt::waypoint::http1::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using zt::testing::run_coroutine;

awaitable<void> sleep_for(std::chrono::milliseconds d) {
  asio::steady_timer t(co_await asio::this_coro::executor, d);
  co_await t.async_wait(kTuple);
}

// Limits with every timeout off; each test turns on what it checks.
Limits no_timeouts() {
  Limits l;
  l.request_headers_timeout = 0ms;
  l.stream_idle_timeout = 0ms;
  l.idle_timeout = 0ms;
  return l;
}

struct Served {
  bool finished = false;
};

awaitable<void> serve_and_flag(Duplex d, Limits limits, RequestHandler handler,
                               std::shared_ptr<Served> served) {
  co_await serve_http1(std::move(d), "", limits, std::move(handler));
  served->finished = true;
}

// A fresh session on a loopback pair; returns the client end.
awaitable<tcp::socket> start(RequestHandler handler, Limits limits,
                             std::shared_ptr<Served> served) {
  auto pair = co_await socket_pair();
  auto ex = co_await asio::this_coro::executor;
  asio::co_spawn(ex,
                 serve_and_flag(Duplex::of_socket(std::move(pair.server)), limits,
                                std::move(handler), std::move(served)),
                 asio::detached);
  co_return std::move(pair.client);
}

// Reads until the server closes, at most `limit`; `closed` says whether it did.
awaitable<std::string> read_until_closed(tcp::socket& s, std::chrono::milliseconds limit,
                                         bool* closed) {
  std::string out;
  const auto deadline = Clock::now() + limit;
  *closed = false;
  for (;;) {
    const auto left = deadline - Clock::now();
    if (left <= Clock::duration::zero()) co_return out;
    char chunk[4096];
    auto r = co_await async::with_timeout(s.async_read_some(asio::buffer(chunk), kTuple), left);
    if (!r) co_return out;
    auto [ec, n] = *r;
    out.append(chunk, n);
    if (ec) {
      *closed = true;
      co_return out;
    }
  }
}

// Writes `bytes` one at a time every `gap` until done or the peer stops taking them.
awaitable<void> trickle(tcp::socket& s, std::string bytes, std::chrono::milliseconds gap,
                        std::shared_ptr<bool> stop) {
  for (char c : bytes) {
    if (*stop) co_return;
    auto [ec, n] = co_await asio::async_write(s, asio::buffer(&c, 1), kTuple);
    if (ec) co_return;
    co_await sleep_for(gap);
  }
}

awaitable<void> trickled_head_body() {
  Limits limits = no_timeouts();
  limits.request_headers_timeout = 200ms;
  limits.stream_idle_timeout = 5s;  // each byte is progress: only the head timeout can fire
  auto rec = std::make_shared<Recorder>();
  auto served = std::make_shared<Served>();
  auto client = co_await start(make_echo(rec), limits, served);
  auto stop = std::make_shared<bool>(false);
  const auto began = Clock::now();
  asio::co_spawn(
      co_await asio::this_coro::executor,
      trickle(client, "GET /slowloris HTTP/1.1\r\nHost: svc\r\nx-slow: " + std::string(200, 'a'),
              20ms, stop),
      asio::detached);
  bool closed = false;
  const std::string answer = co_await read_until_closed(client, 3s, &closed);
  const auto took = Clock::now() - began;
  *stop = true;
  EXPECT_TRUE(answer.starts_with("HTTP/1.1 408 ")) << answer;
  EXPECT_NE(lower(answer).find("connection: close"), std::string::npos) << answer;
  EXPECT_NE(answer.find("request_header_timeout"), std::string::npos) << answer;
  EXPECT_TRUE(closed) << "the connection stayed open after the 408";
  EXPECT_GE(took, 180ms);
  EXPECT_LT(took, 2s);
  EXPECT_EQ(rec->count(), 0u);
  client.close();
  for (int i = 0; i < 200 && !served->finished; ++i) co_await sleep_for(10ms);
  EXPECT_TRUE(served->finished);
}

TEST(Http1Timeouts, TrickledHeadGets408AndTheConnectionCloses) {
  asio::io_context io;
  run_coroutine(io, [] { return trickled_head_body(); });
}

awaitable<void> stalled_head_body() {
  Limits limits = no_timeouts();
  limits.stream_idle_timeout = 200ms;  // no head timeout: the stall itself is what fires
  auto rec = std::make_shared<Recorder>();
  auto served = std::make_shared<Served>();
  auto client = co_await start(make_echo(rec), limits, served);
  co_await write_str(client, "GET /x HTTP/1.1\r\nHost: sv");
  bool closed = false;
  const std::string answer = co_await read_until_closed(client, 3s, &closed);
  EXPECT_TRUE(answer.starts_with("HTTP/1.1 408 ")) << answer;
  EXPECT_NE(answer.find("stream_idle_timeout"), std::string::npos) << answer;
  EXPECT_TRUE(closed);
  EXPECT_EQ(rec->count(), 0u);
}

TEST(Http1Timeouts, StalledHeadGets408FromTheStreamIdleTimeout) {
  asio::io_context io;
  run_coroutine(io, [] { return stalled_head_body(); });
}

awaitable<void> stalled_body_body() {
  Limits limits = no_timeouts();
  limits.request_headers_timeout = 200ms;
  limits.stream_idle_timeout = 200ms;
  auto rec = std::make_shared<Recorder>();
  auto served = std::make_shared<Served>();
  auto client = co_await start(make_echo(rec), limits, served);
  const auto began = Clock::now();
  co_await write_str(client, "POST /upload HTTP/1.1\r\nHost: svc\r\nContent-Length: 10\r\n\r\nabc");
  bool closed = false;
  const std::string answer = co_await read_until_closed(client, 3s, &closed);
  const auto took = Clock::now() - began;
  EXPECT_TRUE(answer.starts_with("HTTP/1.1 408 ")) << answer;
  EXPECT_NE(answer.find("stream_idle_timeout"), std::string::npos) << answer;
  EXPECT_NE(lower(answer).find("connection: close"), std::string::npos) << answer;
  EXPECT_TRUE(closed);
  EXPECT_GE(took, 180ms);
  EXPECT_LT(took, 2s);
  EXPECT_EQ(rec->count(), 0u);
}

TEST(Http1Timeouts, StalledBodyGets408AndTheConnectionCloses) {
  asio::io_context io;
  run_coroutine(io, [] { return stalled_body_body(); });
}

awaitable<void> steady_body_body() {
  // The body takes ~1 s in all, longer than either timeout, but never stalls 300 ms.
  Limits limits = no_timeouts();
  limits.request_headers_timeout = 300ms;
  limits.stream_idle_timeout = 300ms;
  limits.idle_timeout = 300ms;
  auto rec = std::make_shared<Recorder>();
  auto served = std::make_shared<Served>();
  auto client = co_await start(make_echo(rec), limits, served);
  co_await write_str(client, "POST /steady HTTP/1.1\r\nHost: svc\r\nContent-Length: 10\r\n\r\n");
  for (int i = 0; i < 10; ++i) {
    co_await sleep_for(100ms);
    co_await write_str(client, std::string(1, static_cast<char>('0' + i)));
  }
  std::string buf;
  auto first = co_await read_message(client, buf);
  EXPECT_TRUE(first.complete);
  EXPECT_EQ(first.first_word_after_version(), "200");
  EXPECT_EQ(first.body, "POST /steady 10");
  // Keep-alive: a second request well within the idle timeout is served on the same connection.
  co_await sleep_for(100ms);
  co_await write_str(client, "GET /again HTTP/1.1\r\nHost: svc\r\n\r\n");
  auto second = co_await read_message(client, buf);
  EXPECT_EQ(second.body, "GET /again 0");
  EXPECT_FALSE(second.has("connection: close"));
  EXPECT_EQ(rec->count(), 2u);
  if (rec->count() == 2) {
    EXPECT_EQ(rec->at(0).body, "0123456789");
  }
}

TEST(Http1Timeouts, SlowButSteadyRequestsAreServed) {
  asio::io_context io;
  run_coroutine(io, [] { return steady_body_body(); });
}

awaitable<void> idle_keep_alive_body() {
  Limits limits = no_timeouts();
  limits.idle_timeout = 200ms;
  limits.request_headers_timeout = 10s;
  limits.stream_idle_timeout = 10s;
  auto rec = std::make_shared<Recorder>();
  auto served = std::make_shared<Served>();
  auto client = co_await start(make_echo(rec), limits, served);
  co_await write_str(client, "GET /one HTTP/1.1\r\nHost: svc\r\n\r\n");
  std::string buf;
  auto first = co_await read_message(client, buf);
  EXPECT_EQ(first.body, "GET /one 0");
  EXPECT_FALSE(first.has("connection: close"));
  const auto answered = Clock::now();
  // Nothing more is sent: the server closes without another byte.
  bool closed = false;
  const std::string rest = co_await read_until_closed(client, 3s, &closed);
  const auto took = Clock::now() - answered;
  EXPECT_TRUE(closed) << "the idle connection was not closed";
  EXPECT_EQ(buf + rest, "");
  EXPECT_GE(took, 150ms);
  EXPECT_LT(took, 2s);
  for (int i = 0; i < 200 && !served->finished; ++i) co_await sleep_for(10ms);
  EXPECT_TRUE(served->finished);

  // A connection that never sends a byte is closed the same way.
  auto served2 = std::make_shared<Served>();
  auto silent = co_await start(make_echo(rec), limits, served2);
  bool closed2 = false;
  const std::string nothing = co_await read_until_closed(silent, 3s, &closed2);
  EXPECT_TRUE(closed2);
  EXPECT_EQ(nothing, "");
  EXPECT_EQ(rec->count(), 1u);
}

TEST(Http1Timeouts, IdleKeepAliveConnectionIsClosed) {
  asio::io_context io;
  run_coroutine(io, [] { return idle_keep_alive_body(); });
}

awaitable<void> blank_lines_body() {
  // Blank lines between requests are not a request: they do not keep the connection.
  Limits limits = no_timeouts();
  limits.idle_timeout = 300ms;
  auto rec = std::make_shared<Recorder>();
  auto served = std::make_shared<Served>();
  auto client = co_await start(make_echo(rec), limits, served);
  const auto began = Clock::now();
  bool write_failed = false;
  for (int i = 0; i < 40 && !served->finished; ++i) {
    auto [ec, n] = co_await asio::async_write(client, asio::buffer("\r\n", 2), kTuple);
    if (ec) {
      write_failed = true;
      break;
    }
    co_await sleep_for(50ms);
  }
  const auto took = Clock::now() - began;
  EXPECT_TRUE(served->finished || write_failed) << "CRLF every 50 ms kept the connection";
  EXPECT_LT(took, 1500ms);
  EXPECT_EQ(rec->count(), 0u);
}

TEST(Http1Timeouts, BlankLinesDoNotResetTheIdleTimeout) {
  asio::io_context io;
  run_coroutine(io, [] { return blank_lines_body(); });
}

awaitable<Response> huge_response(Request) {
  Response r;
  r.status = 200;
  r.body = std::string(64 * 1024 * 1024, 'z');
  co_return r;
}

awaitable<void> unread_response_body() {
  Limits limits = no_timeouts();
  limits.stream_idle_timeout = 200ms;
  auto served = std::make_shared<Served>();
  auto client = co_await start(huge_response, limits, served);
  co_await write_str(client, "GET /huge HTTP/1.1\r\nHost: svc\r\n\r\n");
  // The client never reads: once the socket buffers are full, nothing moves for 200 ms.
  bool ended = false;
  // (Filling the loopback buffers takes a few seconds on a loaded machine.)
  for (int i = 0; i < 1500 && !ended; ++i) {
    co_await sleep_for(10ms);
    ended = served->finished;
  }
  EXPECT_TRUE(ended) << "a response nobody reads held the session";
}

TEST(Http1Timeouts, ResponseThePeerDoesNotReadIsCut) {
  asio::io_context io;
  run_coroutine(io, [] { return unread_response_body(); });
}

}  // namespace
}  // namespace zt::waypoint::http1::testing
