// serve_http2()'s timeouts and per-connection body budget over real loopback TCP, with short
// limits (200 ms) so they are fast. Raw clients write exact frames (a header block that never
// ends, a body that stops, a window that stays shut) and decode the answers with nghttp2's HPACK
// inflater; Http2Client drives the budget and the idle timeout.
#include <array>
#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nghttp2/nghttp2.h>

#include "common/async/asio.h"
#include "common/async/timeout.h"
#include "tests/support/coro.h"
#include "waypoint/http2/http2.h"

namespace zt::waypoint::http2 {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

awaitable<void> sleep_for(std::chrono::milliseconds d) {
  asio::steady_timer t(co_await asio::this_coro::executor, d);
  co_await t.async_wait(kTuple);
}

Limits no_timeouts() {
  Limits l;
  l.request_headers_timeout = 0ms;
  l.stream_idle_timeout = 0ms;
  l.idle_timeout = 0ms;
  return l;
}

struct Calls {
  std::atomic<int> started{0};
  std::atomic<int> finished{0};
};

// 200 with the body size in a header; "/hold" keeps the request (and its body) for 600 ms,
// "/linger" for 2 s, even if it is cancelled meanwhile.
awaitable<Response> holding_handler(std::shared_ptr<Calls> calls, Request req) {
  ++calls->started;
  if (req.head.target.starts_with("/hold")) co_await sleep_for(600ms);
  if (req.head.target.starts_with("/linger")) {
    co_await asio::this_coro::reset_cancellation_state(asio::disable_cancellation());
    co_await sleep_for(2000ms);
  }
  Response r;
  r.status = 200;
  r.headers.push_back({"x-body-bytes", std::to_string(req.body.size())});
  r.body = "ok";
  ++calls->finished;
  co_return r;
}

RequestHandler holding(std::shared_ptr<Calls> calls) {
  return [calls](Request r) { return holding_handler(calls, std::move(r)); };
}

// A large answer, for a peer whose window stays shut.
awaitable<Response> large_handler(Request) {
  Response r;
  r.status = 200;
  r.body = std::string(256 * 1024, 'q');
  co_return r;
}

awaitable<void> accept_loop(tcp::acceptor& acc, Limits limits, RequestHandler handler) {
  for (;;) {
    auto [ec, socket] = co_await acc.async_accept(kTuple);
    if (ec) co_return;
    asio::co_spawn(acc.get_executor(),
                   serve_http2(Duplex::of_socket(std::move(socket)), {}, limits, handler),
                   asio::detached);
  }
}

Request make_request(std::string method, std::string target, std::string body = {}) {
  Request r;
  r.version = HttpVersion::kHttp2;
  r.head.method = std::move(method);
  r.head.target = std::move(target);
  r.head.authority = "limits.test";
  r.head.scheme = "http";
  r.body = std::move(body);
  return r;
}

// --- raw frames ------------------------------------------------------------------------------

constexpr uint8_t kData = 0x0, kHeaders = 0x1, kRstStream = 0x3, kSettings = 0x4, kGoaway = 0x7,
                  kContinuation = 0x9;
constexpr uint8_t kEndStream = 0x1, kEndHeaders = 0x4;

std::string frame(uint8_t type, uint8_t flags, uint32_t stream, std::string_view payload) {
  std::string f;
  const size_t n = payload.size();
  f.push_back(static_cast<char>((n >> 16) & 0xff));
  f.push_back(static_cast<char>((n >> 8) & 0xff));
  f.push_back(static_cast<char>(n & 0xff));
  f.push_back(static_cast<char>(type));
  f.push_back(static_cast<char>(flags));
  f.push_back(static_cast<char>((stream >> 24) & 0x7f));
  f.push_back(static_cast<char>((stream >> 16) & 0xff));
  f.push_back(static_cast<char>((stream >> 8) & 0xff));
  f.push_back(static_cast<char>(stream & 0xff));
  f.append(payload);
  return f;
}

// An HPACK literal field without indexing, new name (RFC 7541 §6.2.2); short strings only.
std::string literal(std::string_view name, std::string_view value) {
  std::string out;
  out.push_back('\x00');
  out.push_back(static_cast<char>(name.size()));
  out.append(name);
  out.push_back(static_cast<char>(value.size()));
  out.append(value);
  return out;
}

// :method GET / POST, :scheme http, :path `path`, :authority a.
std::string request_block(bool post, std::string_view path) {
  std::string b;
  b.push_back(post ? '\x83' : '\x82');  // static :method
  b.push_back('\x86');                  // static :scheme http
  b.push_back('\x04');                  // :path, literal without indexing, indexed name 4
  b.push_back(static_cast<char>(path.size()));
  b.append(path);
  b.push_back('\x01');  // :authority, literal without indexing, indexed name 1
  b.push_back('\x01');
  b.push_back('a');
  return b;
}

std::string preface_and_settings(std::string settings_payload = {}) {
  return std::string(kClientPreface) + frame(kSettings, 0, 0, settings_payload);
}

struct Frame {
  uint8_t type = 0;
  uint8_t flags = 0;
  uint32_t stream = 0;
  std::string payload;
};

// A raw HTTP/2 client connection: writes bytes, reads frames, decodes :status.
class RawPeer {
 public:
  RawPeer() { nghttp2_hd_inflate_new(&inflater_); }
  ~RawPeer() { nghttp2_hd_inflate_del(inflater_); }
  RawPeer(const RawPeer&) = delete;
  RawPeer& operator=(const RawPeer&) = delete;

  std::optional<tcp::socket> socket;
  bool closed = false;  // the server closed the connection

  awaitable<void> connect(uint16_t port) {
    socket.emplace(co_await asio::this_coro::executor);
    auto [ec] = co_await socket->async_connect(
        tcp::endpoint(asio::ip::make_address("127.0.0.1"), port), kTuple);
    EXPECT_FALSE(ec) << ec.message();
  }

  awaitable<bool> send(std::string bytes) {
    auto [ec, n] = co_await asio::async_write(*socket, asio::buffer(bytes), kTuple);
    co_return !ec;
  }

  // Reads frames until `done` says so (true), the server closes or `limit` passes (false).
  awaitable<bool> read_until(std::function<bool(const Frame&)> done,
                             std::chrono::milliseconds limit) {
    const auto deadline = Clock::now() + limit;
    for (;;) {
      while (buffer_.size() >= 9) {
        const size_t n = (static_cast<uint8_t>(buffer_[0]) << 16) |
                         (static_cast<uint8_t>(buffer_[1]) << 8) | static_cast<uint8_t>(buffer_[2]);
        if (buffer_.size() < 9 + n) break;
        Frame f;
        f.type = static_cast<uint8_t>(buffer_[3]);
        f.flags = static_cast<uint8_t>(buffer_[4]);
        f.stream = ((static_cast<uint8_t>(buffer_[5]) & 0x7fu) << 24) |
                   (static_cast<uint8_t>(buffer_[6]) << 16) |
                   (static_cast<uint8_t>(buffer_[7]) << 8) | static_cast<uint8_t>(buffer_[8]);
        f.payload = buffer_.substr(9, n);
        buffer_.erase(0, 9 + n);
        if (f.type == kHeaders) statuses[f.stream] = decode_status(f.payload);
        frames.push_back(f);
        if (done(f)) co_return true;
      }
      const auto left = deadline - Clock::now();
      if (left <= Clock::duration::zero() || closed) co_return false;
      std::array<char, 16384> chunk{};
      auto r =
          co_await async::with_timeout(socket->async_read_some(asio::buffer(chunk), kTuple), left);
      if (!r) co_return false;
      auto [ec, n] = *r;
      buffer_.append(chunk.data(), n);
      if (ec) closed = true;
    }
  }

  // Reads until the server closes (true) or `limit` passes.
  awaitable<bool> read_until_closed(std::chrono::milliseconds limit) {
    co_await read_until([](const Frame&) { return false; }, limit);
    co_return closed;
  }

  bool saw(uint8_t type, uint32_t stream) const {
    for (const auto& f : frames) {
      if (f.type == type && f.stream == stream) return true;
    }
    return false;
  }
  // The error code of the RST_STREAM on `stream`, -1 without one.
  int64_t rst_code(uint32_t stream) const {
    for (const auto& f : frames) {
      if (f.type == kRstStream && f.stream == stream && f.payload.size() == 4) {
        return (static_cast<uint8_t>(f.payload[0]) << 24) |
               (static_cast<uint8_t>(f.payload[1]) << 16) |
               (static_cast<uint8_t>(f.payload[2]) << 8) | static_cast<uint8_t>(f.payload[3]);
      }
    }
    return -1;
  }

  std::vector<Frame> frames;
  std::map<uint32_t, std::string> statuses;  // :status of the HEADERS on each stream

 private:
  std::string decode_status(const std::string& block) {
    std::string status;
    auto* in = reinterpret_cast<const uint8_t*>(block.data());
    size_t left = block.size();
    for (;;) {
      nghttp2_nv nv;
      int flags = 0;
      const ssize_t rv = nghttp2_hd_inflate_hd2(inflater_, &nv, &flags, in, left, 1);
      if (rv < 0) return "<hpack error>";
      in += rv;
      left -= static_cast<size_t>(rv);
      if ((flags & NGHTTP2_HD_INFLATE_EMIT) != 0) {
        const std::string_view name(reinterpret_cast<const char*>(nv.name), nv.namelen);
        if (name == ":status") status.assign(reinterpret_cast<const char*>(nv.value), nv.valuelen);
      }
      if ((flags & NGHTTP2_HD_INFLATE_FINAL) != 0) {
        nghttp2_hd_inflate_end_headers(inflater_);
        return status;
      }
      if (rv == 0 && left == 0) return status;
    }
  }

  nghttp2_hd_inflater* inflater_ = nullptr;
  std::string buffer_;
};

class Http2Limits : public ::testing::Test {
 protected:
  void serve(RequestHandler handler, Limits limits) {
    acceptor_ =
        std::make_unique<tcp::acceptor>(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    port_ = acceptor_->local_endpoint().port();
    asio::co_spawn(io_, accept_loop(*acceptor_, limits, std::move(handler)), asio::detached);
  }
  template <class F>
  void run(F&& f) {
    zt::testing::run_coroutine(io_, std::forward<F>(f), std::chrono::seconds(30));
  }

  asio::io_context io_;
  std::unique_ptr<tcp::acceptor> acceptor_;
  uint16_t port_ = 0;
};

// ---------------------------------------------------------------------------------------------

TEST_F(Http2Limits, HeaderBlockThatNeverEndsGets408) {
  Limits limits = no_timeouts();
  limits.request_headers_timeout = 200ms;
  auto calls = std::make_shared<Calls>();
  serve(holding(calls), limits);
  run([&]() -> awaitable<void> {
    RawPeer peer;
    co_await peer.connect(port_);
    // HEADERS without END_HEADERS, then one CONTINUATION field every 30 ms (slowloris).
    const auto began = Clock::now();
    EXPECT_TRUE(co_await peer.send(preface_and_settings() +
                                   frame(kHeaders, kEndStream, 1, request_block(false, "/x"))));
    bool answered = false;
    for (int i = 0; i < 60 && !answered; ++i) {
      const std::string field = literal("x-slow", std::to_string(i));
      if (!co_await peer.send(frame(kContinuation, 0, 1, field))) break;
      answered = co_await peer.read_until(
          [](const Frame& f) {
            return f.stream == 1 && (f.type == kHeaders || f.type == kRstStream);
          },
          30ms);
    }
    const auto took = Clock::now() - began;
    EXPECT_TRUE(answered) << "no answer to a header block that never ends";
    EXPECT_EQ(peer.statuses[1], "408");
    EXPECT_GE(took, 180ms);
    EXPECT_LT(took, 1500ms);
    // The block may still end late (its HPACK state counts); then the connection serves on.
    EXPECT_TRUE(co_await peer.send(
        frame(kContinuation, kEndHeaders, 1, literal("x-end", "1")) +
        frame(kHeaders, kEndHeaders | kEndStream, 3, request_block(false, "/after"))));
    const bool next = co_await peer.read_until(
        [](const Frame& f) { return f.stream == 3 && f.type == kHeaders; }, 3000ms);
    EXPECT_TRUE(next);
    EXPECT_EQ(peer.statuses[3], "200");
    EXPECT_FALSE(peer.closed);
    EXPECT_EQ(calls->started.load(), 1);  // only the second request reached the handler
  });
}

TEST_F(Http2Limits, StalledBodyGets408AndOtherStreamsGoOn) {
  Limits limits = no_timeouts();
  limits.stream_idle_timeout = 200ms;
  limits.request_headers_timeout = 200ms;
  auto calls = std::make_shared<Calls>();
  serve(holding(calls), limits);
  run([&]() -> awaitable<void> {
    RawPeer peer;
    co_await peer.connect(port_);
    const auto began = Clock::now();
    // POST on stream 1: the head, 3 bytes of body, then nothing.
    EXPECT_TRUE(co_await peer.send(preface_and_settings() +
                                   frame(kHeaders, kEndHeaders, 1, request_block(true, "/up")) +
                                   frame(kData, 0, 1, "abc")));
    const bool got = co_await peer.read_until(
        [](const Frame& f) { return f.stream == 1 && f.type == kHeaders; }, 3000ms);
    const auto took = Clock::now() - began;
    EXPECT_TRUE(got);
    EXPECT_EQ(peer.statuses[1], "408");
    EXPECT_GE(took, 180ms);
    EXPECT_LT(took, 1500ms);
    // The stream's request side is reset after the answer; the connection stays usable.
    co_await peer.read_until([](const Frame& f) { return f.stream == 1 && f.type == kRstStream; },
                             1000ms);
    EXPECT_TRUE(peer.saw(kRstStream, 1));
    EXPECT_TRUE(co_await peer.send(
        frame(kHeaders, kEndHeaders | kEndStream, 3, request_block(false, "/next"))));
    const bool next = co_await peer.read_until(
        [](const Frame& f) { return f.stream == 3 && f.type == kHeaders; }, 3000ms);
    EXPECT_TRUE(next);
    EXPECT_EQ(peer.statuses[3], "200");
    EXPECT_FALSE(peer.closed);
    EXPECT_EQ(calls->started.load(), 1);
  });
}

TEST_F(Http2Limits, ResponseTheWindowNeverAdmitsIsReset) {
  Limits limits = no_timeouts();
  limits.stream_idle_timeout = 200ms;
  serve(large_handler, limits);
  run([&]() -> awaitable<void> {
    RawPeer peer;
    co_await peer.connect(port_);
    // SETTINGS_INITIAL_WINDOW_SIZE = 0: not one DATA byte may come.
    const std::string zero_window("\x00\x04\x00\x00\x00\x00", 6);
    EXPECT_TRUE(co_await peer.send(
        preface_and_settings(zero_window) +
        frame(kHeaders, kEndHeaders | kEndStream, 1, request_block(false, "/large"))));
    const bool reset = co_await peer.read_until(
        [](const Frame& f) { return f.stream == 1 && f.type == kRstStream; }, 3000ms);
    EXPECT_TRUE(reset) << "a response stuck behind a shut window held the stream";
    EXPECT_EQ(peer.statuses[1], "200");
    EXPECT_EQ(peer.rst_code(1), NGHTTP2_CANCEL);
    EXPECT_FALSE(peer.saw(kData, 1));
  });
}

TEST_F(Http2Limits, IdleConnectionGetsGoawayAndIsClosed) {
  Limits limits = no_timeouts();
  limits.idle_timeout = 200ms;
  auto calls = std::make_shared<Calls>();
  serve(holding(calls), limits);
  run([&]() -> awaitable<void> {
    // A client that finishes its request and then sends nothing.
    auto ex = co_await asio::this_coro::executor;
    tcp::socket socket(ex);
    auto [ec] = co_await socket.async_connect(
        tcp::endpoint(asio::ip::make_address("127.0.0.1"), port_), kTuple);
    EXPECT_FALSE(ec);
    auto client = Http2Client::start(ex, Duplex::of_socket(std::move(socket)));
    auto res = co_await client->send(make_request("GET", "/x"));
    EXPECT_TRUE(res && res->status == 200);
    const auto answered = Clock::now();
    EXPECT_TRUE(client->usable());
    for (int i = 0; i < 300 && client->usable(); ++i) co_await sleep_for(10ms);
    const auto took = Clock::now() - answered;
    EXPECT_FALSE(client->usable()) << "the idle connection was not closed";
    EXPECT_GE(took, 150ms);
    EXPECT_LT(took, 2500ms);

    // A connection that says only the preface and SETTINGS: GOAWAY, then closed.
    RawPeer peer;
    co_await peer.connect(port_);
    EXPECT_TRUE(co_await peer.send(preface_and_settings()));
    EXPECT_TRUE(co_await peer.read_until_closed(3000ms));
    EXPECT_TRUE(peer.saw(kGoaway, 0));
    EXPECT_EQ(calls->started.load(), 1);
  });
}

TEST_F(Http2Limits, BusyConnectionIsNotIdle) {
  // A request that takes longer than the idle timeout keeps the connection.
  Limits limits = no_timeouts();
  limits.idle_timeout = 200ms;
  limits.stream_idle_timeout = 200ms;  // the handler's time is not a stalled stream
  auto calls = std::make_shared<Calls>();
  serve(holding(calls), limits);
  run([&]() -> awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    tcp::socket socket(ex);
    auto [ec] = co_await socket.async_connect(
        tcp::endpoint(asio::ip::make_address("127.0.0.1"), port_), kTuple);
    EXPECT_FALSE(ec);
    auto client = Http2Client::start(ex, Duplex::of_socket(std::move(socket)));
    auto res = co_await client->send(make_request("POST", "/hold", "body"));
    EXPECT_TRUE(res && res->status == 200);
    EXPECT_TRUE(client->usable());
    auto again = co_await client->send(make_request("GET", "/quick"));
    EXPECT_TRUE(again && again->status == 200);
  });
}

awaitable<void> send_into(std::shared_ptr<Http2Client> client, Request req,
                          std::shared_ptr<std::optional<Result<Response>>> out) {
  auto r = co_await client->send(std::move(req));
  *out = std::move(r);
}

TEST_F(Http2Limits, StreamsPastTheConnectionBodyBudgetAreRefused) {
  Limits limits = no_timeouts();
  limits.max_connection_body_bytes = 1024 * 1024;
  auto calls = std::make_shared<Calls>();
  serve(holding(calls), limits);
  run([&]() -> awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    tcp::socket socket(ex);
    auto [ec] = co_await socket.async_connect(
        tcp::endpoint(asio::ip::make_address("127.0.0.1"), port_), kTuple);
    EXPECT_FALSE(ec);
    auto client = Http2Client::start(ex, Duplex::of_socket(std::move(socket)));
    // 700 KiB held by a handler for 2 s...
    auto held = std::make_shared<std::optional<Result<Response>>>();
    Request first = make_request("POST", "/linger", std::string(700 * 1024, 'a'));
    asio::co_spawn(ex, send_into(client, std::move(first), held), asio::detached);
    for (int i = 0; i < 300 && calls->started.load() == 0; ++i) co_await sleep_for(5ms);
    EXPECT_EQ(calls->started.load(), 1);
    // ...so another 700 KiB on the same connection would pass the 1 MiB budget: refused.
    auto refused =
        co_await client->send(make_request("POST", "/more", std::string(700 * 1024, 'b')));
    EXPECT_FALSE(refused);
    if (!refused) {
      EXPECT_EQ(refused.error().message, "stream reset: REFUSED_STREAM");
    }
    // A request within the budget on the same connection goes on meanwhile.
    auto small =
        co_await client->send(make_request("POST", "/small", std::string(100 * 1024, 'c')));
    EXPECT_TRUE(small && small->status == 200);
    EXPECT_TRUE(client->usable());
    // The held request completes; its bytes return to the budget.
    for (int i = 0; i < 1000 && !held->has_value(); ++i) co_await sleep_for(5ms);
    EXPECT_TRUE(held->has_value() && **held && (**held)->status == 200);
    if (held->has_value() && **held) {
      EXPECT_EQ(http::find_header((**held)->headers, "x-body-bytes"), std::to_string(700 * 1024));
    }
    auto retried =
        co_await client->send(make_request("POST", "/more", std::string(700 * 1024, 'b')));
    EXPECT_TRUE(retried && retried->status == 200);
    EXPECT_EQ(calls->started.load(), 3);  // the refused stream never reached the handler
  });
}

TEST_F(Http2Limits, ABodyStaysCountedWhileItsHandlerRunsAfterAReset) {
  // Resetting a stream does not free what its handler still holds (no budget laundering by
  // RST_STREAM), even when the handler goes on after it is cancelled.
  Limits limits = no_timeouts();
  limits.max_connection_body_bytes = 1024 * 1024;
  auto calls = std::make_shared<Calls>();
  serve(holding(calls), limits);
  run([&]() -> awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    tcp::socket socket(ex);
    auto [ec] = co_await socket.async_connect(
        tcp::endpoint(asio::ip::make_address("127.0.0.1"), port_), kTuple);
    EXPECT_FALSE(ec);
    auto client = Http2Client::start(ex, Duplex::of_socket(std::move(socket)));
    // Once the handler has the body, the client gives up: it resets the stream.
    auto held = std::make_shared<std::optional<Result<Response>>>();
    auto gave_up = std::make_shared<bool>(false);
    asio::cancellation_signal cancel;
    Request first = make_request("POST", "/linger", std::string(700 * 1024, 'a'));
    asio::co_spawn(ex, send_into(client, std::move(first), held),
                   asio::bind_cancellation_slot(
                       cancel.slot(), [gave_up](std::exception_ptr) { *gave_up = true; }));
    for (int i = 0; i < 600 && calls->started.load() == 0; ++i) co_await sleep_for(5ms);
    EXPECT_EQ(calls->started.load(), 1);
    cancel.emit(asio::cancellation_type::terminal);
    for (int i = 0; i < 600 && !*gave_up; ++i) co_await sleep_for(5ms);
    EXPECT_TRUE(*gave_up);
    EXPECT_FALSE(held->has_value() && **held) << "the cancelled request got an answer";
    EXPECT_EQ(calls->finished.load(), 0);
    auto refused =
        co_await client->send(make_request("POST", "/more", std::string(700 * 1024, 'b')));
    EXPECT_FALSE(refused);
    if (!refused) {
      EXPECT_EQ(refused.error().message, "stream reset: REFUSED_STREAM");
    }
    // Once the handler is done the bytes are back.
    for (int i = 0; i < 1000 && calls->finished.load() == 0; ++i) co_await sleep_for(5ms);
    co_await sleep_for(20ms);
    auto later = co_await client->send(make_request("POST", "/more", std::string(700 * 1024, 'b')));
    EXPECT_TRUE(later && later->status == 200);
  });
}

// What handlers of the gone-test saw when they ended.
struct Ends {
  int started = 0;
  std::vector<std::string> seen;  // per handler that ended: "<target> <flag> <status> <why>"
  std::shared_ptr<DownstreamGone> quick_gone;  // "/quick"'s, which answered at once
};

// "/quick": answered at once. Anything else waits up to 10 s, then records how (and whether)
// its downstream went away, and whether it was cancelled.
RequestHandler recording_ends(std::shared_ptr<Ends> ends) {
  return [ends](Request req) -> awaitable<Response> {
    ++ends->started;
    if (req.head.target == "/quick") {
      ends->quick_gone = req.gone;
      co_return local_response(200, "quick");
    }
    asio::steady_timer wait(co_await asio::this_coro::executor, 10s);
    co_await wait.async_wait(kTuple);
    auto state = co_await asio::this_coro::cancellation_state;
    const bool cancelled = state.cancelled() != asio::cancellation_type::none;
    const DownstreamGone none;
    const DownstreamGone& g = req.gone ? *req.gone : none;
    ends->seen.push_back(fmt::format("{} {} {} {}{}", req.head.target, g.flag, g.status, g.why,
                                     cancelled ? "" : " (not cancelled)"));
    co_return local_response(200, "late");
  };
}

TEST_F(Http2Limits, ADownstreamThatGoesAwayCancelsItsHandlerAndSaysHow) {
  // Envoy's flags: the stream reset (DR), the stream idle timeout (SI, with the 408 the server
  // sent), the connection gone (DC). Each handler is cancelled at once, not left to run its
  // 10 s; one whose answer went out is told nothing.
  Limits limits = no_timeouts();
  limits.stream_idle_timeout = 300ms;
  limits.stream_grpc_requests = true;
  auto ends = std::make_shared<Ends>();
  serve(recording_ends(ends), limits);
  run([&]() -> awaitable<void> {
    const auto began = Clock::now();
    auto ended = [&](size_t n) -> awaitable<bool> {
      for (int i = 0; i < 400 && ends->seen.size() < n; ++i) co_await sleep_for(5ms);
      co_return ends->seen.size() >= n;
    };
    RawPeer peer;
    co_await peer.connect(port_);
    EXPECT_TRUE(co_await peer.send(
        preface_and_settings() +
        frame(kHeaders, kEndStream | kEndHeaders, 1, request_block(false, "/quick")) +
        frame(kHeaders, kEndStream | kEndHeaders, 3, request_block(false, "/reset"))));
    EXPECT_TRUE(co_await peer.read_until(
        [](const Frame& f) { return f.stream == 1 && (f.flags & kEndStream) != 0; }, 2000ms));
    for (int i = 0; i < 200 && ends->started < 2; ++i) co_await sleep_for(5ms);
    // RST_STREAM(CANCEL) on stream 3.
    EXPECT_TRUE(co_await peer.send(frame(kRstStream, 0, 3, std::string("\0\0\0\x08", 4))));
    EXPECT_TRUE(co_await ended(1));
    if (!ends->seen.empty()) {
      EXPECT_EQ(ends->seen[0], "/reset DR 0 the downstream reset the stream");
    }

    // A gRPC request whose body never comes: 408 after 300 ms (sent as a gRPC status: 200 with
    // grpc-status UNKNOWN), and its handler is cancelled.
    const std::string grpc_head =
        request_block(true, "/idle") + literal("content-type", "application/grpc");
    EXPECT_TRUE(co_await peer.send(frame(kHeaders, kEndHeaders, 5, grpc_head)));
    EXPECT_TRUE(co_await peer.read_until([](const Frame& f) { return f.stream == 5; }, 2000ms));
    EXPECT_EQ(peer.statuses[5], "200");
    EXPECT_TRUE(co_await ended(2));
    if (ends->seen.size() >= 2) {
      EXPECT_EQ(ends->seen[1], "/idle SI 200 request refused: http2.stream_idle_timeout");
    }

    // The connection torn down (RST) under a waiting handler.
    EXPECT_TRUE(co_await peer.send(
        frame(kHeaders, kEndStream | kEndHeaders, 7, request_block(false, "/dropped"))));
    for (int i = 0; i < 200 && ends->started < 4; ++i) co_await sleep_for(5ms);
    peer.socket->set_option(asio::socket_base::linger(true, 0));
    peer.socket->close();
    EXPECT_TRUE(co_await ended(3));
    if (ends->seen.size() >= 3) {
      EXPECT_EQ(ends->seen[2], "/dropped DC 0 the downstream connection ended");
    }
    EXPECT_LT(Clock::now() - began, 5s) << "a handler ran on after its downstream went away";
    EXPECT_TRUE(ends->quick_gone && !ends->quick_gone->happened())
        << "an answered request was told its peer left";
  });
}

TEST_F(Http2Limits, NormalRequestsWithShortTimeoutsAreUnaffected) {
  Limits limits;
  limits.request_headers_timeout = 200ms;
  limits.stream_idle_timeout = 200ms;
  limits.idle_timeout = 200ms;
  limits.max_connection_body_bytes = 4 * 1024 * 1024;
  auto calls = std::make_shared<Calls>();
  serve(holding(calls), limits);
  run([&]() -> awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    tcp::socket socket(ex);
    auto [ec] = co_await socket.async_connect(
        tcp::endpoint(asio::ip::make_address("127.0.0.1"), port_), kTuple);
    EXPECT_FALSE(ec);
    auto client = Http2Client::start(ex, Duplex::of_socket(std::move(socket)));
    for (int i = 0; i < 20; ++i) {
      auto res = co_await client->send(
          make_request("POST", "/n" + std::to_string(i), std::string(64 * 1024, 'x')));
      EXPECT_TRUE(res && res->status == 200) << i;
      co_await sleep_for(20ms);
    }
    EXPECT_TRUE(client->usable());
    EXPECT_EQ(calls->started.load(), 20);
  });
}

}  // namespace
}  // namespace zt::waypoint::http2
