// The waypoint's HTTP/2 codec over real loopback TCP: Http2Client against serve_http2, raw
// misbehaving peers, and real-world peers (nghttp, h2load, grpc++ client and server).
#include "waypoint/http2/http2.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <deque>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "common/async/asio.h"
#include "common/async/timeout.h"
#include "tests/support/coro.h"

namespace zt::waypoint::http2 {
namespace {

using namespace std::chrono_literals;
using http::find_header;

// ---------------------------------------------------------------------------------------------
// Helpers

tcp::acceptor listen_loopback(asio::io_context& io) {
  tcp::acceptor acc(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  return acc;
}

// Serves every connection accepted on `acc` with serve_http2 (limits live in this frame).
awaitable<void> accept_loop(tcp::acceptor& acc, Limits limits, RequestHandler handler) {
  for (;;) {
    auto [ec, socket] = co_await acc.async_accept(kTuple);
    if (ec) co_return;
    asio::co_spawn(acc.get_executor(),
                   serve_http2(Duplex::of_socket(std::move(socket)), {}, limits, handler),
                   asio::detached);
  }
}

awaitable<std::shared_ptr<Http2Client>> connect_client(uint16_t port, Limits limits = {}) {
  auto ex = co_await asio::this_coro::executor;
  tcp::socket socket(ex);
  auto [ec] = co_await socket.async_connect(
      tcp::endpoint(asio::ip::make_address("127.0.0.1"), port), kTuple);
  EXPECT_FALSE(ec) << ec.message();
  co_return Http2Client::start(ex, Duplex::of_socket(std::move(socket)), limits);
}

awaitable<void> sleep_for(std::chrono::milliseconds d) {
  asio::steady_timer t(co_await asio::this_coro::executor, d);
  co_await t.async_wait(kTuple);
}

// Polls `done` every 5 ms for at most `limit`; returns its last value.
awaitable<bool> wait_until(std::function<bool()> done, std::chrono::milliseconds limit = 5000ms) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) co_return false;
    co_await sleep_for(5ms);
  }
  co_return true;
}

Request make_request(std::string method, std::string target, std::string body = {}) {
  Request r;
  r.version = HttpVersion::kHttp2;
  r.head.method = std::move(method);
  r.head.target = std::move(target);
  r.head.authority = "echo.test:80";
  r.head.scheme = "http";
  r.body = std::move(body);
  return r;
}

std::string pattern(size_t n, unsigned seed) {
  std::string s(n, '\0');
  uint32_t x = seed * 2654435761u + 1;
  for (auto& c : s) {
    x = x * 1664525u + 1013904223u;
    c = static_cast<char>(x >> 24);
  }
  return s;
}

// Echoes what it saw: the request line in headers, the body, the trailers, and gRPC-style
// trailers of its own. Also sends headers a codec must clean (hop-by-hop, upper case).
awaitable<Response> echo_handler(Request req) {
  Response r;
  r.status = 200;
  r.headers.push_back({"X-Method", req.head.method});
  r.headers.push_back({"x-path", req.head.target});
  r.headers.push_back({"x-authority", req.head.authority});
  r.headers.push_back({"x-scheme", req.head.scheme});
  r.headers.push_back({"x-version", req.version == HttpVersion::kHttp2 ? "2" : "1"});
  r.headers.push_back({"x-header-count", std::to_string(req.head.headers.size())});
  if (auto v = find_header(req.head.headers, "x-in"))
    r.headers.push_back({"x-in", std::string(*v)});
  if (auto v = find_header(req.trailers, "x-trailer")) {
    r.headers.push_back({"x-got-trailer", std::string(*v)});
  }
  r.headers.push_back({"connection", "close"});
  r.headers.push_back({"keep-alive", "timeout=5"});
  r.headers.push_back({"transfer-encoding", "chunked"});
  r.body = std::move(req.body);
  if (req.head.target.rfind("/trailers", 0) == 0) {
    r.trailers.push_back({"grpc-status", "0"});
    r.trailers.push_back({"grpc-message", "all good"});
  }
  co_return r;
}

struct Counters {
  std::atomic<int> calls{0};
  std::atomic<int> active{0};
  std::atomic<int> peak{0};
};

awaitable<Response> counting_handler(std::shared_ptr<Counters> c, Request req) {
  ++c->calls;
  int now = ++c->active;
  int peak = c->peak.load();
  while (now > peak && !c->peak.compare_exchange_weak(peak, now)) {
  }
  if (req.head.target.rfind("/slow", 0) == 0) co_await sleep_for(1500ms);
  if (req.head.target.rfind("/pause", 0) == 0) co_await sleep_for(50ms);
  --c->active;
  if (req.head.target.rfind("/big", 0) == 0) {
    Response r;
    r.status = 200;
    r.headers.push_back({"x-request-bytes", std::to_string(req.body.size())});
    r.headers.push_back({"x-request-ok", req.body == pattern(req.body.size(), 7) ? "yes" : "no"});
    r.body = pattern(4 * 1024 * 1024, 11);
    co_return r;
  }
  co_return co_await echo_handler(std::move(req));
}

RequestHandler counting(std::shared_ptr<Counters> c) {
  return [c](Request r) { return counting_handler(c, std::move(r)); };
}

// One serve_http2 listener on its own io_context thread (for external clients).
class ServerThread {
 public:
  explicit ServerThread(RequestHandler handler, Limits limits = {})
      : acceptor_(listen_loopback(io_)) {
    port_ = acceptor_.local_endpoint().port();
    asio::co_spawn(io_, accept_loop(acceptor_, limits, std::move(handler)), asio::detached);
    thread_ = std::thread([this] {
      auto guard = asio::make_work_guard(io_);
      io_.run();
    });
  }
  ~ServerThread() {
    io_.stop();
    thread_.join();
  }
  uint16_t port() const { return port_; }

 private:
  asio::io_context io_;
  tcp::acceptor acceptor_;
  uint16_t port_ = 0;
  std::thread thread_;
};

// Runs a shell command and returns its exit status and combined output.
std::pair<int, std::string> run_command(const std::string& cmd) {
  std::string out;
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (p == nullptr) return {-1, "popen failed"};
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int rc = pclose(p);
  return {WIFEXITED(rc) ? WEXITSTATUS(rc) : -1, out};
}

bool contains(const std::string& s, std::string_view part) {
  return s.find(part) != std::string::npos;
}

class Http2Test : public ::testing::Test {
 protected:
  void serve(RequestHandler handler, Limits limits = {}) {
    acceptor_ = std::make_unique<tcp::acceptor>(listen_loopback(io_));
    port_ = acceptor_->local_endpoint().port();
    asio::co_spawn(io_, accept_loop(*acceptor_, limits, std::move(handler)), asio::detached);
  }
  template <class F>
  void run(F&& f) {
    zt::testing::run_coroutine(io_, std::forward<F>(f), std::chrono::seconds(60));
  }

  asio::io_context io_;
  std::unique_ptr<tcp::acceptor> acceptor_;
  uint16_t port_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Http2Client <-> serve_http2

TEST_F(Http2Test, RoundTripWithHeadersBodyAndTrailers) {
  serve(echo_handler);
  run([&]() -> awaitable<void> {
    auto client = co_await connect_client(port_);
    Request req = make_request("POST", "/trailers/x?q=1", "hello body");
    req.head.headers.push_back({"X-In", "value-1"});
    req.head.headers.push_back({"content-type", "text/plain"});
    req.trailers.push_back({"x-trailer", "tv"});
    auto res = co_await client->send(std::move(req));
    EXPECT_TRUE(res) << res.error().message;
    if (!res) co_return;
    EXPECT_EQ(res->status, 200);
    EXPECT_EQ(find_header(res->headers, "x-method"), "POST");
    EXPECT_EQ(find_header(res->headers, "x-path"), "/trailers/x?q=1");
    EXPECT_EQ(find_header(res->headers, "x-authority"), "echo.test:80");
    EXPECT_EQ(find_header(res->headers, "x-scheme"), "http");
    EXPECT_EQ(find_header(res->headers, "x-version"), "2");
    EXPECT_EQ(find_header(res->headers, "x-in"), "value-1");
    EXPECT_EQ(find_header(res->headers, "x-header-count"), "2");
    EXPECT_EQ(find_header(res->headers, "x-got-trailer"), "tv");
    // Names lower-cased on the wire, hop-by-hop fields gone.
    bool any_upper = false;
    for (const auto& h : res->headers) {
      for (char c : h.name) any_upper |= (c >= 'A' && c <= 'Z');
    }
    EXPECT_FALSE(any_upper);
    EXPECT_FALSE(find_header(res->headers, "connection"));
    EXPECT_FALSE(find_header(res->headers, "keep-alive"));
    EXPECT_FALSE(find_header(res->headers, "transfer-encoding"));
    EXPECT_EQ(res->body, "hello body");
    EXPECT_EQ(find_header(res->trailers, "grpc-status"), "0");
    EXPECT_EQ(find_header(res->trailers, "grpc-message"), "all good");

    // A GET without body and without trailers.
    auto get = co_await client->send(make_request("GET", "/plain"));
    EXPECT_TRUE(get) << get.error().message;
    if (get) {
      EXPECT_EQ(get->status, 200);
      EXPECT_TRUE(get->body.empty());
      EXPECT_TRUE(get->trailers.empty());
    }
    EXPECT_TRUE(client->usable());
    EXPECT_EQ(client->active_streams(), 0u);
    client->close();
    EXPECT_FALSE(client->usable());
  });
}

awaitable<void> send_numbered(std::shared_ptr<Http2Client> client, int i, std::vector<int>* ok,
                              int* finished) {
  auto body = "request-" + std::to_string(i);
  auto res = co_await client->send(make_request("POST", "/pause/" + std::to_string(i), body));
  if (res && res->status == 200 && res->body == body &&
      find_header(res->headers, "x-path") == "/pause/" + std::to_string(i)) {
    (*ok)[static_cast<size_t>(i)] = 1;
  }
  ++*finished;
}

TEST_F(Http2Test, FiftyConcurrentRequestsOnOneConnection) {
  auto counters = std::make_shared<Counters>();
  serve(counting(counters));
  run([&]() -> awaitable<void> {
    auto client = co_await connect_client(port_);
    std::vector<int> ok(50, 0);
    int finished = 0;
    for (int i = 0; i < 50; ++i) {
      asio::co_spawn(io_, send_numbered(client, i, &ok, &finished), asio::detached);
    }
    co_await wait_until([&] { return client->active_streams() > 1; }, 2000ms);
    EXPECT_TRUE(co_await wait_until([&] { return finished == 50; }, 20000ms));
    for (int i = 0; i < 50; ++i) EXPECT_EQ(ok[static_cast<size_t>(i)], 1) << "request " << i;
    EXPECT_EQ(counters->calls.load(), 50);
    EXPECT_GT(counters->peak.load(), 10) << "handlers did not run concurrently";
    EXPECT_EQ(client->active_streams(), 0u);
  });
}

TEST_F(Http2Test, FourMebibyteBodiesBothWays) {
  auto counters = std::make_shared<Counters>();
  serve(counting(counters));
  run([&]() -> awaitable<void> {
    auto client = co_await connect_client(port_);
    const std::string body = pattern(4 * 1024 * 1024, 7);
    auto res = co_await client->send(make_request("PUT", "/big", body));
    EXPECT_TRUE(res) << res.error().message;
    if (!res) co_return;
    EXPECT_EQ(res->status, 200);
    EXPECT_EQ(find_header(res->headers, "x-request-bytes"), std::to_string(body.size()));
    EXPECT_EQ(find_header(res->headers, "x-request-ok"), "yes");
    EXPECT_EQ(res->body.size(), 4u * 1024 * 1024);
    EXPECT_TRUE(res->body == pattern(4 * 1024 * 1024, 11));
  });
}

awaitable<void> send_and_flag(std::shared_ptr<Http2Client> client, std::string target, bool* done,
                              int* status) {
  auto res = co_await client->send(make_request("GET", std::move(target)));
  *status = res ? res->status : -1;
  *done = true;
}

TEST_F(Http2Test, SlowStreamDoesNotBlockOthers) {
  auto counters = std::make_shared<Counters>();
  serve(counting(counters));
  run([&]() -> awaitable<void> {
    auto client = co_await connect_client(port_);
    bool slow_done = false, fast_done = false;
    int slow_status = 0, fast_status = 0;
    asio::co_spawn(io_, send_and_flag(client, "/slow", &slow_done, &slow_status), asio::detached);
    co_await sleep_for(50ms);
    auto started = std::chrono::steady_clock::now();
    asio::co_spawn(io_, send_and_flag(client, "/fast", &fast_done, &fast_status), asio::detached);
    EXPECT_TRUE(co_await wait_until([&] { return fast_done; }, 5000ms));
    EXPECT_LT(std::chrono::steady_clock::now() - started, 1000ms);
    EXPECT_FALSE(slow_done) << "the fast answer waited for the slow one";
    EXPECT_EQ(fast_status, 200);
    EXPECT_TRUE(co_await wait_until([&] { return slow_done; }, 5000ms));
    EXPECT_EQ(slow_status, 200);
  });
}

TEST_F(Http2Test, BadHeadersAreAnsweredWithTheCheckStatus) {
  auto counters = std::make_shared<Counters>();
  serve(counting(counters));
  run([&]() -> awaitable<void> {
    auto client = co_await connect_client(port_);
    struct Case {
      http::Header header;
      int status;
    };
    const std::vector<Case> cases = {
        {{"connection", "keep-alive"}, 400},
        {{"keep-alive", "timeout=5"}, 400},
        {{"te", "gzip"}, 400},
        {{"transfer-encoding", "chunked"}, 400},
        {{"upgrade", "websocket"}, 400},
        {{"bad name", "x"}, 400},
        {{"x-ctl", std::string("a\x01z")}, 400},
        {{"content-length", "abc"}, 400},
    };
    for (const auto& c : cases) {
      Request req = make_request("GET", "/x");
      req.head.headers.push_back(c.header);
      auto res = co_await client->send(std::move(req));
      EXPECT_TRUE(res) << c.header.name << ": " << res.error().message;
      if (res) {
        EXPECT_EQ(res->status, c.status) << c.header.name;
      }
    }
    // A lower-case method and a bad target are refused by the same checks.
    auto bad_method = co_await client->send(make_request("get", "/x"));
    EXPECT_TRUE(bad_method && bad_method->status == 400);
    auto bad_target = co_await client->send(make_request("GET", "no-slash"));
    EXPECT_TRUE(bad_target && bad_target->status == 400);
    // Content-Length that disagrees with the DATA sent.
    Request mismatch = make_request("POST", "/x", "12345");
    mismatch.head.headers.push_back({"content-length", "3"});
    auto mm = co_await client->send(std::move(mismatch));
    EXPECT_TRUE(mm && mm->status == 400);
    // te: trailers is what gRPC sends: accepted.
    Request grpc_like = make_request("POST", "/x", "b");
    grpc_like.head.headers.push_back({"te", "trailers"});
    auto ok = co_await client->send(std::move(grpc_like));
    EXPECT_TRUE(ok && ok->status == 200);
    EXPECT_EQ(counters->calls.load(), 1) << "a refused request reached the handler";
    EXPECT_TRUE(client->usable()) << "a refused request must not end the connection";
  });
}

TEST_F(Http2Test, OversizedHeaderListIs431) {
  Limits limits;
  limits.max_header_bytes = 8 * 1024;
  limits.max_headers = 20;
  auto counters = std::make_shared<Counters>();
  serve(counting(counters), limits);
  run([&]() -> awaitable<void> {
    auto client = co_await connect_client(port_);
    Request big = make_request("GET", "/x");
    big.head.headers.push_back({"x-big", std::string(10 * 1024, 'a')});
    auto res = co_await client->send(std::move(big));
    EXPECT_TRUE(res) << res.error().message;
    if (res) {
      EXPECT_EQ(res->status, 431);
    }

    Request many = make_request("GET", "/x");
    for (int i = 0; i < 30; ++i) many.head.headers.push_back({"x-h" + std::to_string(i), "v"});
    auto res2 = co_await client->send(std::move(many));
    EXPECT_TRUE(res2) << res2.error().message;
    if (res2) {
      EXPECT_EQ(res2->status, 431);
    }

    Request fine = make_request("GET", "/x");
    for (int i = 0; i < 10; ++i) fine.head.headers.push_back({"x-h" + std::to_string(i), "v"});
    auto res3 = co_await client->send(std::move(fine));
    EXPECT_TRUE(res3 && res3->status == 200);
    EXPECT_EQ(counters->calls.load(), 1);
    EXPECT_TRUE(client->usable());
  });
}

TEST_F(Http2Test, BodyOverLimitIs413) {
  Limits limits;
  limits.max_body_bytes = 256 * 1024;
  auto counters = std::make_shared<Counters>();
  serve(counting(counters), limits);
  run([&]() -> awaitable<void> {
    auto client = co_await connect_client(port_);
    // Streamed past the limit (no content-length).
    auto res = co_await client->send(make_request("POST", "/x", pattern(2 * 1024 * 1024, 1)));
    EXPECT_TRUE(res) << res.error().message;
    if (res) {
      EXPECT_EQ(res->status, 413);
    }
    // Announced past the limit: refused at the head.
    Request announced = make_request("POST", "/x", pattern(300 * 1024, 2));
    announced.head.headers.push_back({"content-length", std::to_string(300 * 1024)});
    auto res2 = co_await client->send(std::move(announced));
    EXPECT_TRUE(res2) << res2.error().message;
    if (res2) {
      EXPECT_EQ(res2->status, 413);
    }
    // At the limit: served.
    auto res3 = co_await client->send(make_request("POST", "/x", pattern(256 * 1024, 3)));
    EXPECT_TRUE(res3 && res3->status == 200 && res3->body.size() == 256 * 1024);
    EXPECT_EQ(counters->calls.load(), 1);
    EXPECT_TRUE(client->usable());
  });
}

TEST_F(Http2Test, ResponseOverClientLimitIsAnError) {
  auto counters = std::make_shared<Counters>();
  serve(counting(counters));
  run([&]() -> awaitable<void> {
    Limits small;
    small.max_body_bytes = 1024 * 1024;
    auto client = co_await connect_client(port_, small);
    auto res = co_await client->send(make_request("GET", "/big"));
    EXPECT_FALSE(res);
    if (!res) {
      EXPECT_TRUE(contains(res.error().message, "too large")) << res.error().message;
    }
    auto again = co_await client->send(make_request("GET", "/x"));
    EXPECT_TRUE(again && again->status == 200) << "one oversized stream ended the connection";
  });
}

// A peer that reads the request and then closes the TCP connection.
awaitable<void> close_after_first_bytes(tcp::acceptor& acc) {
  auto [ec, socket] = co_await acc.async_accept(kTuple);
  if (ec) co_return;
  std::array<char, 4096> buf{};
  size_t total = 0;
  while (total < 60) {  // preface (24) + SETTINGS + HEADERS
    auto [rec, n] = co_await socket.async_read_some(asio::buffer(buf), kTuple);
    if (rec) co_return;
    total += n;
  }
  co_await sleep_for(50ms);
  socket.close();
}

TEST_F(Http2Test, PeerClosingMidStreamIsAClientError) {
  auto acc = listen_loopback(io_);
  const uint16_t port = acc.local_endpoint().port();
  asio::co_spawn(io_, close_after_first_bytes(acc), asio::detached);
  run([&]() -> awaitable<void> {
    auto client = co_await connect_client(port);
    auto res = co_await client->send(make_request("POST", "/x", "abc"));
    EXPECT_FALSE(res);
    if (!res) {
      EXPECT_TRUE(contains(res.error().message, "connection")) << res.error().message;
    }
    EXPECT_FALSE(client->usable());
    auto after = co_await client->send(make_request("GET", "/x"));
    EXPECT_FALSE(after);
  });
}

// A server that waits for the client's first request (preface, SETTINGS, HEADERS), then
// answers with `frames` and keeps reading until the client goes away or `stop`.
awaitable<void> scripted_server(tcp::acceptor& acc, std::string frames, bool* stop) {
  auto [ec, socket] = co_await acc.async_accept(kTuple);
  if (ec) co_return;
  std::array<char, 4096> buf{};
  size_t total = 0;
  while (total < 60) {
    auto [rec, n] = co_await socket.async_read_some(asio::buffer(buf), kTuple);
    if (rec) co_return;
    total += n;
  }
  co_await asio::async_write(socket, asio::buffer(frames), kTuple);
  while (!*stop) {
    auto r = co_await async::with_timeout(socket.async_read_some(asio::buffer(buf), kTuple), 100ms);
    if (r && std::get<0>(*r)) co_return;
  }
}

const std::string kEmptySettings("\x00\x00\x00\x04\x00\x00\x00\x00\x00", 9);

TEST_F(Http2Test, GoawayMakesTheClientUnusable) {
  auto acc = listen_loopback(io_);
  const uint16_t port = acc.local_endpoint().port();
  bool stop = false;
  // GOAWAY, last stream 0, NO_ERROR: stream 1 was not processed.
  const std::string goaway(
      "\x00\x00\x08\x07\x00\x00\x00\x00\x00"
      "\x00\x00\x00\x00\x00\x00\x00\x00",
      17);
  asio::co_spawn(io_, scripted_server(acc, kEmptySettings + goaway, &stop), asio::detached);
  run([&]() -> awaitable<void> {
    auto client = co_await connect_client(port);
    EXPECT_TRUE(client->usable());
    auto res = co_await client->send(make_request("GET", "/x"));
    EXPECT_FALSE(res);
    if (!res) {
      EXPECT_TRUE(contains(res.error().message, "REFUSED_STREAM")) << res.error().message;
    }
    EXPECT_FALSE(client->usable());
    auto after = co_await client->send(make_request("GET", "/x"));
    EXPECT_FALSE(after);
    stop = true;
    client->close();
  });
}

TEST_F(Http2Test, StreamResetNamesTheErrorCode) {
  auto acc = listen_loopback(io_);
  const uint16_t port = acc.local_endpoint().port();
  bool stop = false;
  // RST_STREAM on stream 1 with ENHANCE_YOUR_CALM (0xb).
  const std::string rst(
      "\x00\x00\x04\x03\x00\x00\x00\x00\x01"
      "\x00\x00\x00\x0b",
      13);
  asio::co_spawn(io_, scripted_server(acc, kEmptySettings + rst, &stop), asio::detached);
  run([&]() -> awaitable<void> {
    auto client = co_await connect_client(port);
    auto res = co_await client->send(make_request("GET", "/x"));
    EXPECT_FALSE(res);
    if (!res) {
      EXPECT_EQ(res.error().message, "stream reset: ENHANCE_YOUR_CALM");
    }
    EXPECT_TRUE(client->usable()) << "a stream reset must not end the connection";
    EXPECT_EQ(client->active_streams(), 0u);
    stop = true;
    client->close();
  });
}

TEST_F(Http2Test, CancelledSessionSendsGoaway) {
  auto acc = listen_loopback(io_);
  const uint16_t port = acc.local_endpoint().port();
  asio::cancellation_signal drain;
  bool served = false;
  run([&]() -> awaitable<void> {
    auto accepting = acc.async_accept(kTuple);
    auto client = co_await connect_client(port);
    auto [ec, socket] = co_await std::move(accepting);
    EXPECT_FALSE(ec);
    Limits limits;
    asio::co_spawn(
        io_, serve_http2(Duplex::of_socket(std::move(socket)), {}, limits, echo_handler),
        asio::bind_cancellation_slot(drain.slot(), [&](std::exception_ptr e) { served = !e; }));
    auto res = co_await client->send(make_request("GET", "/x"));
    EXPECT_TRUE(res && res->status == 200);
    drain.emit(asio::cancellation_type::terminal);
    EXPECT_TRUE(co_await wait_until([&] { return !client->usable(); }));
    EXPECT_TRUE(co_await wait_until([&] { return served; }));
  });
}

awaitable<void> send_expect_error(std::shared_ptr<Http2Client> client, bool* failed) {
  auto res = co_await client->send(make_request("GET", "/slow"));
  *failed = !res;
}

TEST_F(Http2Test, CloseEndsStreamsInFlight) {
  auto counters = std::make_shared<Counters>();
  serve(counting(counters));
  run([&]() -> awaitable<void> {
    auto client = co_await connect_client(port_);
    bool failed = false;
    asio::co_spawn(io_, send_expect_error(client, &failed), asio::detached);
    EXPECT_TRUE(co_await wait_until([&] { return counters->calls.load() == 1; }));
    EXPECT_EQ(client->active_streams(), 1u);
    client->close();
    EXPECT_FALSE(client->usable());
    EXPECT_TRUE(co_await wait_until([&] { return failed; }));
    co_await sleep_for(1600ms);  // let the handler finish against a closed connection
  });
}

awaitable<Response> throwing_handler(Request req) {
  if (req.head.target == "/throw") throw std::runtime_error("handler bug");
  co_return co_await echo_handler(std::move(req));
}

TEST_F(Http2Test, HandlerExceptionIs500) {
  serve(throwing_handler);
  run([&]() -> awaitable<void> {
    auto client = co_await connect_client(port_);
    auto res = co_await client->send(make_request("GET", "/throw"));
    EXPECT_TRUE(res && res->status == 500);
    auto ok = co_await client->send(make_request("GET", "/fine"));
    EXPECT_TRUE(ok && ok->status == 200);
  });
}

TEST_F(Http2Test, CancelledSendResetsOnlyItsStream) {
  auto counters = std::make_shared<Counters>();
  serve(counting(counters));
  run([&]() -> awaitable<void> {
    auto client = co_await connect_client(port_);
    auto timed = co_await async::with_timeout(client->send(make_request("GET", "/slow")), 100ms);
    EXPECT_FALSE(timed.has_value()) << "the slow request answered within 100 ms";
    EXPECT_TRUE(co_await wait_until([&] { return client->active_streams() == 0; }));
    EXPECT_TRUE(client->usable());
    auto res = co_await client->send(make_request("GET", "/after"));
    EXPECT_TRUE(res && res->status == 200);
    co_await sleep_for(1600ms);  // the slow handler ends; its answer has no stream left
    auto again = co_await client->send(make_request("GET", "/again"));
    EXPECT_TRUE(again && again->status == 200);
  });
}

// A client that sends a complete request and then closes its sending side still gets the
// answer; one that closes mid-request does not keep the session alive.
awaitable<void> raw_exchange(uint16_t port, std::string bytes, std::string* reply) {
  tcp::socket socket(co_await asio::this_coro::executor);
  auto [ec] = co_await socket.async_connect(
      tcp::endpoint(asio::ip::make_address("127.0.0.1"), port), kTuple);
  if (ec) co_return;
  co_await asio::async_write(socket, asio::buffer(bytes), kTuple);
  error_code sec;
  socket.shutdown(tcp::socket::shutdown_send, sec);  // and then EOF
  std::array<char, 4096> buf{};
  for (;;) {
    auto r = co_await async::with_timeout(socket.async_read_some(asio::buffer(buf), kTuple), 3s);
    if (!r) co_return;  // the server did not close: the caller sees no EOF
    auto [rec, n] = *r;
    if (rec) {
      reply->append("<closed>");
      co_return;
    }
    reply->append(buf.data(), n);
  }
}

TEST_F(Http2Test, BadInputEndsTheSessionWithoutCrashing) {
  auto counters = std::make_shared<Counters>();
  serve(counting(counters));
  run([&]() -> awaitable<void> {
    std::string preface(kClientPreface);
    const std::vector<std::string> inputs = {
        "GET / HTTP/1.1\r\nHost: x\r\n\r\n",  // not HTTP/2 at all
        preface + std::string(64, '\xff'),    // garbage frames
        preface + std::string("\x00\x00\x04\x01\x05\x00\x00\x00\x01"
                              "abcd",
                              13),  // HEADERS
                                    // before SETTINGS, bad HPACK
        preface + std::string("\x00\x00\x00\x04\x00\x00\x00\x00\x00", 9) +
            std::string("\x00\x00\x05\x00\x01\x00\x00\x00\x03hello", 14),  // DATA on idle stream
        preface.substr(0, 10),  // truncated preface, then EOF
    };
    for (const auto& in : inputs) {
      std::string reply;
      co_await raw_exchange(port_, in, &reply);
      EXPECT_TRUE(contains(reply, "<closed>"))
          << "session did not end for input of " << in.size() << " bytes";
    }
    EXPECT_EQ(counters->calls.load(), 0);
    // Still serving.
    auto client = co_await connect_client(port_);
    auto res = co_await client->send(make_request("GET", "/x"));
    EXPECT_TRUE(res && res->status == 200);
  });
}

TEST_F(Http2Test, AnswersAfterThePeerHalfCloses) {
  auto counters = std::make_shared<Counters>();
  serve(counting(counters));
  run([&]() -> awaitable<void> {
    // GET http://a/pause (HPACK: static :method GET, :scheme http; literal :path, :authority).
    const std::string block(
        "\x82\x86\x44\x06/pause\x41\x01"
        "a",
        13);
    std::string bytes(kClientPreface);
    bytes += std::string("\x00\x00\x00\x04\x00\x00\x00\x00\x00", 9);  // SETTINGS
    bytes += std::string("\x00\x00\x0d\x01\x05\x00\x00\x00\x01", 9) + block;
    std::string reply;
    co_await raw_exchange(port_, bytes, &reply);
    EXPECT_EQ(counters->calls.load(), 1);
    EXPECT_TRUE(contains(reply, "<closed>"));
    // The answer (HEADERS with END_STREAM on stream 1, :status 200 = static index 8) came first.
    EXPECT_TRUE(contains(reply, std::string("\x01\x05\x00\x00\x00\x01\x88", 7)))
        << "no response HEADERS in " << reply.size() << " bytes";
  });
}

// ---------------------------------------------------------------------------------------------
// Streamed responses (Response::source, Request::stream_response): serve_http2 sends a body as
// its source yields it; Http2Client answers at the head and yields the body as it arrives.

// A response body the test hands out piece by piece; `pulled` counts what the server took.
class ScriptedBody final : public BodySource {
 public:
  explicit ScriptedBody(asio::any_io_executor ex) : changed_(std::move(ex)) {}
  ~ScriptedBody() override { *dropped = true; }
  awaitable<Piece> next() override {
    if (throw_next) throw std::runtime_error("source bug");
    while (pieces_.empty() && !endless) {
      if (!co_await changed_.wait()) {
        Piece p;
        p.error = "cancelled";
        co_return p;
      }
    }
    Piece p;
    if (pieces_.empty()) {
      p.data = pattern(64 * 1024, static_cast<unsigned>(pulled));
    } else {
      p = std::move(pieces_.front());
      pieces_.pop_front();
    }
    pulled += p.data.size();
    co_return p;
  }
  // Returns once a last piece (an end or a failure) waits.
  awaitable<void> until_done() override {
    while (std::none_of(pieces_.begin(), pieces_.end(),
                        [](const Piece& p) { return p.end || !p.error.empty(); })) {
      if (!co_await changed_.wait()) co_return;
    }
  }
  void push(std::string data) {
    Piece p;
    p.data = std::move(data);
    push(std::move(p));
  }
  void push(Piece p) {
    pieces_.push_back(std::move(p));
    changed_.notify();
  }
  void end(http::HeaderList trailers) {
    Piece p;
    p.end = true;
    p.trailers = std::move(trailers);
    push(std::move(p));
  }

  bool endless = false;     // 64 KiB pieces for ever
  bool throw_next = false;  // next() throws (a broken source)
  size_t pulled = 0;
  std::shared_ptr<bool> dropped = std::make_shared<bool>(false);

 private:
  std::deque<Piece> pieces_;
  async::Event changed_;
};

// Answers every request with a streamed body the test drives (the last one in `bodies`, which
// does not keep it: the server's pump does); "/ready" bodies come with their pieces and end
// already there, "/endless" never ends.
using Bodies = std::vector<std::weak_ptr<ScriptedBody>>;
RequestHandler streaming_handler(Bodies* bodies) {
  return [bodies](Request req) -> awaitable<Response> {
    auto body = std::make_shared<ScriptedBody>(co_await asio::this_coro::executor);
    if (req.head.target == "/ready") {
      body->push("a");
      body->push("b");
      body->end({{"grpc-status", "0"}});
    }
    body->endless = req.head.target == "/endless";
    body->throw_next = req.head.target == "/throws";
    bodies->push_back(body);
    Response r;
    r.status = 200;
    r.headers.push_back({"content-type", "application/grpc"});
    r.source = body;
    co_return r;
  };
}

// The whole body of a response, streamed or not; its trailers land in `r.trailers`.
awaitable<std::string> read_all(Response& r) {
  std::string all = r.body;
  while (r.source) {
    auto piece = co_await r.source->next();
    all += piece.data;
    if (!piece.error.empty()) co_return "error: " + piece.error;
    if (piece.end) {
      r.trailers = std::move(piece.trailers);
      r.source.reset();
    }
  }
  co_return all;
}

Request streamed(std::string target) {
  Request r = make_request("POST", std::move(target), "req");
  r.head.headers.push_back({"content-type", "application/grpc"});
  r.stream_response = true;
  return r;
}

// A streamed request's response; nullopt (and a test failure) when it did not come streamed.
awaitable<std::optional<Response>> open_stream(Http2Client& client, std::string target) {
  auto res = co_await client.send(streamed(std::move(target)));
  EXPECT_TRUE(res && res->source) << (res ? std::string("not streamed") : res.error().message);
  if (!res || !res->source) co_return std::nullopt;
  co_return std::move(*res);
}

// Serves streaming_handler; `bodies` are the bodies it made.
class Http2StreamTest : public Http2Test {
 protected:
  void SetUp() override { serve(streaming_handler(&bodies)); }
  Bodies bodies;
};

TEST_F(Http2StreamTest, StreamedResponseArrivesPieceByPieceWithItsTrailers) {
  run([&]() -> awaitable<void> {
    auto client = co_await connect_client(port_);
    auto res = co_await client->send(streamed("/watch"));
    EXPECT_TRUE(res) << res.error().message;
    if (!res) co_return;
    // The head is here while the server has not produced a byte of the body.
    EXPECT_EQ(res->status, 200);
    EXPECT_EQ(find_header(res->headers, "content-type"), "application/grpc");
    EXPECT_TRUE(res->body.empty());
    EXPECT_TRUE(res->source);
    EXPECT_EQ(bodies.size(), 1u);
    auto server = bodies.empty() ? nullptr : bodies.front().lock();
    if (!res->source || !server) co_return;
    for (std::string piece : {"first", "second"}) {
      server->push(piece);
      auto got = co_await res->source->next();
      EXPECT_EQ(got.data, piece);
      EXPECT_FALSE(got.end);
      EXPECT_TRUE(got.error.empty()) << got.error;
    }
    server->end({{"grpc-status", "0"}, {"grpc-message", "done"}});
    auto last = co_await res->source->next();
    while (!last.end && last.error.empty() && last.data.empty()) {
      last = co_await res->source->next();
    }
    EXPECT_TRUE(last.end);
    EXPECT_EQ(find_header(last.trailers, "grpc-status"), "0");
    EXPECT_EQ(find_header(last.trailers, "grpc-message"), "done");
    EXPECT_EQ((co_await res->source->next()).error, "body already ended");
    EXPECT_TRUE(co_await wait_until([&] { return client->active_streams() == 0; }));

    // A body complete when its head is read comes whole or streamed (as the bytes arrived), or
    // buffered when no stream was asked for.
    auto whole = co_await client->send(streamed("/ready"));
    EXPECT_TRUE(whole);
    if (whole) {
      EXPECT_EQ(co_await read_all(*whole), "ab");
      EXPECT_EQ(find_header(whole->trailers, "grpc-status"), "0");
    }
    Request buffered = streamed("/ready");
    buffered.stream_response = false;
    auto plain = co_await client->send(std::move(buffered));
    EXPECT_TRUE(plain && plain->body == "ab" && !plain->source &&
                find_header(plain->trailers, "grpc-status") == "0");
    EXPECT_TRUE(client->usable());
  });
}

TEST_F(Http2StreamTest, AStreamedBodyGivenUpOrFailedResetsItsStreamOnly) {
  run([&]() -> awaitable<void> {
    auto client = co_await connect_client(port_);
    // The client drops the body: its stream is reset, and the server's pump drops its source.
    auto res = co_await open_stream(*client, "/a");
    if (!res) co_return;
    std::shared_ptr<bool> dropped;
    if (auto server = bodies.back().lock()) {  // not kept: only the server's pump holds it
      server->push("one");
      dropped = server->dropped;
    }
    if (!dropped) co_return;
    EXPECT_EQ((co_await res->source->next()).data, "one");
    res->source.reset();
    EXPECT_TRUE(co_await wait_until([&] { return *dropped; }))
        << "the server still holds the body of a stream its client reset";
    EXPECT_TRUE(co_await wait_until([&] { return client->active_streams() == 0; }));

    // The server's source fails: the client's body ends with the reset.
    auto failing = co_await open_stream(*client, "/b");
    if (!failing) co_return;
    BodySource::Piece broken;
    broken.error = "upstream reset";
    auto failing_server = bodies.back().lock();
    if (!failing_server) co_return;
    failing_server->push(std::move(broken));
    auto got = co_await failing->source->next();
    EXPECT_TRUE(contains(got.error, "stream reset: INTERNAL_ERROR")) << got.error;

    // A source that throws has failed the same way, rather than leaving the stream waiting.
    auto thrown = co_await open_stream(*client, "/throws");
    if (!thrown) co_return;
    auto broken_piece = co_await async::with_timeout(thrown->source->next(), 5s);
    EXPECT_TRUE(broken_piece && contains(broken_piece->error, "stream reset: INTERNAL_ERROR"));

    // The connection carries on.
    EXPECT_TRUE(client->usable());
    auto after = co_await client->send(streamed("/ready"));
    EXPECT_TRUE(after && co_await read_all(*after) == "ab");
  });
}

TEST_F(Http2StreamTest, AStreamedBodyNobodyReadsIsPulledOnlyAsFarAsTheWindowsAllow) {
  run([&]() -> awaitable<void> {
    auto client = co_await connect_client(port_);
    auto res = co_await open_stream(*client, "/endless");
    if (!res) co_return;
    auto held = bodies.back().lock();
    if (!held) co_return;
    auto& server = *held;
    // The client's 1 MiB stream window fills, then the pulling stops: our 64 KiB pump lead and
    // one piece in hand are all that is added (unbounded without flow control: hundreds of MiB
    // over loopback in the 200 ms waited here).
    EXPECT_TRUE(co_await wait_until([&] { return server.pulled >= 1024 * 1024; }));
    co_await sleep_for(200ms);
    EXPECT_LT(server.pulled, 2u * 1024 * 1024) << "pulled while nobody read";
    // Reading lets it flow again.
    size_t read = 0;
    while (read < 8 * 1024 * 1024) {
      auto got = co_await res->source->next();
      EXPECT_TRUE(got.error.empty()) << got.error;
      if (!got.error.empty()) co_return;
      read += got.data.size();
    }
    EXPECT_GE(server.pulled, read);
    held.reset();
    res->source.reset();
    EXPECT_TRUE(co_await wait_until([&] { return client->active_streams() == 0; }));
    auto after = co_await client->send(streamed("/ready"));
    EXPECT_TRUE(after && co_await read_all(*after) == "ab");
  });
}

TEST_F(Http2StreamTest, StreamsNobodyReadsDoNotHoldUpTheOthersOnTheirConnection) {
  run([&]() -> awaitable<void> {
    auto client = co_await connect_client(port_);
    // Six unread streams fill their 1 MiB windows: more than the 4 MiB connection window, which
    // they must not keep for themselves.
    std::vector<Response> unread;
    for (int i = 0; i < 6; ++i) {
      auto res = co_await open_stream(*client, "/endless");
      if (!res) co_return;
      unread.push_back(std::move(*res));
    }
    EXPECT_TRUE(co_await wait_until([&] {
      return std::all_of(bodies.begin(), bodies.end(), [](const auto& weak) {
        auto body = weak.lock();
        return body && body->pulled >= 1024 * 1024;
      });
    })) << "a stream could not fill its window: the connection window is held by unread streams";
    auto other = co_await async::with_timeout(client->send(streamed("/ready")), 5s);
    EXPECT_TRUE(other && *other) << "a request behind the unread streams did not get through";
    if (other && *other) {
      auto body = co_await async::with_timeout(read_all(**other), 5s);
      EXPECT_TRUE(body && *body == "ab") << "a body behind the unread streams did not get through";
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Streamed requests: with Limits::stream_grpc_requests, serve_http2 hands a gRPC request to its
// handler at the head and its body through Request::source as it arrives; Http2Client sends a
// Request::source as it yields.

// What the request-streaming handler saw.
struct Seen {
  int heads = 0;       // requests handed over
  int streamed = 0;    // ... of them with a source
  std::string errors;  // errors their bodies ended with
  std::string gone;    // how the downstream went away, as their handlers were told (/count)
  size_t read = 0;     // body bytes the handler read (/count)
  std::vector<std::shared_ptr<BodySource>> held;  // bodies kept unread (/hold)
};

// "/echo": the request body goes straight back as the streamed response body, trailers
// included (a bidirectional echo). "/hold": the body is kept unread; answered at once.
// "/refuse": answered at once with a gRPC error, the body left unread. "/count": reads the
// whole body, then answers its size. Anything without a source: its buffered body back.
RequestHandler request_streaming_handler(Seen* seen) {
  return [seen](Request req) -> awaitable<Response> {
    ++seen->heads;
    Response r;
    r.status = 200;
    r.headers.push_back({"content-type", "application/grpc"});
    if (!req.source) {
      r.body = std::move(req.body);
      co_return r;
    }
    ++seen->streamed;
    const std::string& target = req.head.target;
    if (target == "/echo") {
      r.source = std::move(req.source);
    } else if (target == "/hold") {
      seen->held.push_back(std::move(req.source));
      r.source = std::make_shared<ScriptedBody>(co_await asio::this_coro::executor);
    } else if (target == "/refuse") {
      r.headers.push_back({"grpc-status", "3"});
    } else if (target == "/count") {
      for (;;) {
        auto piece = co_await req.source->next();
        seen->read += piece.data.size();
        if (!piece.error.empty()) seen->errors += piece.error + ";";
        if (piece.end || !piece.error.empty()) break;
      }
      // A body that failed because its downstream went away: the handler is cancelled too
      // (its read may say either), and told why.
      if (req.gone && req.gone->happened()) {
        seen->gone += fmt::format("{} {} {};", req.gone->flag, req.gone->status, req.gone->why);
      }
      r.trailers.push_back({"grpc-status", "0"});
      r.trailers.push_back({"x-read", std::to_string(seen->read)});
    }
    co_return r;
  };
}

// A gRPC request whose body the test drives through `body`.
Request streamed_request(std::string target, std::shared_ptr<ScriptedBody> body) {
  Request r = streamed(std::move(target));
  r.body.clear();
  r.source = std::move(body);
  return r;
}

class Http2RequestStreamTest : public Http2Test {
 protected:
  void SetUp() override { serve_streaming(32 * 1024 * 1024); }
  void serve_streaming(size_t budget) {
    Limits limits;
    limits.stream_grpc_requests = true;
    limits.max_connection_body_bytes = budget;
    serve(request_streaming_handler(&seen), limits);
  }
  Seen seen;
};

TEST_F(Http2RequestStreamTest, AGrpcRequestBodyFlowsBothWaysPieceByPiece) {
  run([&]() -> awaitable<void> {
    auto client = co_await connect_client(port_);
    auto ex = co_await asio::this_coro::executor;
    auto body = std::make_shared<ScriptedBody>(ex);
    auto res = co_await client->send(streamed_request("/echo", body));
    EXPECT_TRUE(res && res->source) << (res ? "not streamed" : res.error().message);
    if (!res || !res->source) co_return;
    EXPECT_EQ(seen.streamed, 1) << "the handler runs while the request body is still open";
    // Each piece comes back before the next is sent: neither side waits for the other's end.
    for (std::string ping :
         {std::string("ping-1"), std::string("ping-2"), std::string(300 * 1024, 'x')}) {
      body->push(ping);
      std::string got;
      while (got.size() < ping.size()) {
        auto piece = co_await res->source->next();
        EXPECT_TRUE(piece.error.empty() && !piece.end) << piece.error;
        if (!piece.error.empty() || piece.end) co_return;
        got += piece.data;
      }
      EXPECT_EQ(got, ping);
    }
    body->end({{"grpc-status", "0"}, {"x-last", "yes"}});
    std::string rest = co_await read_all(*res);
    EXPECT_EQ(rest, "");
    EXPECT_EQ(find_header(res->trailers, "x-last"), "yes") << "the request's trailers went through";
    auto dropped = body->dropped;
    body.reset();
    EXPECT_TRUE(co_await wait_until([&] { return *dropped; }))
        << "the client's pump let its source go at the end";

    // Other requests are as before: a non-gRPC body is buffered, a gRPC one counted whole.
    auto plain = co_await client->send(make_request("POST", "/plain", "whole"));
    EXPECT_TRUE(plain && plain->body == "whole");
    auto counted_body = std::make_shared<ScriptedBody>(ex);
    counted_body->push(std::string(2 * 1024 * 1024, 'c'));
    counted_body->end({});
    Request counted = streamed_request("/count", counted_body);
    counted.stream_response = false;
    auto count = co_await client->send(std::move(counted));
    EXPECT_TRUE(count && find_header(count->trailers, "x-read") == std::to_string(2 * 1024 * 1024))
        << (count ? "" : count.error().message);
    EXPECT_EQ(seen.heads, 3);
    EXPECT_EQ(seen.streamed, 2);
    EXPECT_EQ(seen.errors, "");
  });
}

TEST_F(Http2RequestStreamTest, AnUnreadRequestBodyHoldsItsSenderBackAndNotTheOthers) {
  run([&]() -> awaitable<void> {
    auto client = co_await connect_client(port_);
    auto ex = co_await asio::this_coro::executor;
    // Six endless request bodies nobody reads: each stops near its 1 MiB stream window (plus
    // the client pump's 64 KiB lead and a piece in hand); together they pass the 4 MiB
    // connection window, which they must not keep for themselves.
    std::vector<std::shared_ptr<ScriptedBody>> bodies;
    std::vector<Response> answers;
    for (int i = 0; i < 6; ++i) {
      auto body = std::make_shared<ScriptedBody>(ex);
      body->endless = true;
      auto res = co_await client->send(streamed_request("/hold", body));
      EXPECT_TRUE(res) << res.error().message;
      if (!res) co_return;
      bodies.push_back(body);
      answers.push_back(std::move(*res));
    }
    EXPECT_TRUE(co_await wait_until([&] {
      return std::all_of(bodies.begin(), bodies.end(),
                         [](const auto& b) { return b->pulled >= 1024 * 1024; });
    })) << "a stream could not fill its window: the connection window is held by unread streams";
    co_await sleep_for(200ms);
    for (auto& b : bodies) EXPECT_LT(b->pulled, 2u * 1024 * 1024) << "pulled while nobody read";
    // Reading one lets it flow again, its window given back as it goes.
    if (seen.held.size() != 6) co_return;
    size_t read = 0;
    while (read < 8 * 1024 * 1024) {
      auto got = co_await async::with_timeout(seen.held[1]->next(), 5s);
      EXPECT_TRUE(got && got->error.empty()) << "the held-back stream did not flow again";
      if (!got || !got->error.empty()) co_return;
      read += got->data.size();
    }
    // The unread streams given up: a gRPC answer refused at its head still arrives, and its
    // sender is told to stop (its source dropped).
    seen.held.clear();
    for (auto& b : bodies) b->endless = false;
    answers.clear();
    auto refused_body = std::make_shared<ScriptedBody>(ex);
    refused_body->endless = true;
    auto dropped = refused_body->dropped;
    auto refused =
        co_await async::with_timeout(client->send(streamed_request("/refuse", refused_body)), 5s);
    refused_body.reset();
    EXPECT_TRUE(refused && *refused && find_header((*refused)->headers, "grpc-status") == "3");
    EXPECT_TRUE(co_await wait_until([&] { return *dropped; }))
        << "the client kept sending a request whose answer had ended";
    EXPECT_TRUE(co_await wait_until([&] { return client->active_streams() == 0; }));
    EXPECT_TRUE(client->usable());
  });
}

TEST_F(Http2RequestStreamTest, AStreamedBodyThatBreaksItsContentLengthIsRefused) {
  run([&]() -> awaitable<void> {
    auto client = co_await connect_client(port_);
    auto body = std::make_shared<ScriptedBody>(co_await asio::this_coro::executor);
    body->push("0123456789");  // and no end: the excess alone must refuse it
    Request r = streamed_request("/count", body);
    r.head.headers.push_back({"content-length", "4"});
    r.stream_response = false;
    auto res = co_await async::with_timeout(client->send(std::move(r)), 5s);
    // (The codec's 400 to a gRPC request goes out as a gRPC status: INTERNAL.)
    EXPECT_TRUE(res && *res && (*res)->status == 200 &&
                find_header((*res)->headers, "grpc-status") == "13" &&
                find_header((*res)->headers, "grpc-message") == "bad request" &&
                (*res)->body.empty())
        << (res && *res ? std::to_string((*res)->status) : "no answer");
    EXPECT_TRUE(co_await wait_until([&] { return !seen.gone.empty(); }));
    EXPECT_EQ(seen.gone, "DPE 200 request refused: http2.content_length_mismatch;");
    EXPECT_FALSE(seen.errors.empty()) << "the handler's read did not fail";

    // Shorter than announced, found at its end once the answer has begun (an echo): the
    // stream is reset, as no status can be sent any more.
    auto echoed = std::make_shared<ScriptedBody>(co_await asio::this_coro::executor);
    Request short_one = streamed_request("/echo", echoed);
    short_one.head.headers.push_back({"content-length", "10"});
    auto res2 = co_await async::with_timeout(client->send(std::move(short_one)), 5s);
    EXPECT_TRUE(res2 && *res2 && (*res2)->source);
    if (!res2 || !*res2 || !(*res2)->source) co_return;
    echoed->push("abc");
    echoed->end({});
    auto got = co_await async::with_timeout(read_all(**res2), 5s);
    EXPECT_TRUE(got && contains(*got, "stream reset: PROTOCOL_ERROR")) << (got ? *got : "hung");
    EXPECT_TRUE(client->usable());
  });
}

// Sends `body` (made endless) to "/hold", whose handler keeps it unread; its streamed answer.
awaitable<std::optional<Response>> hold_endless(Http2Client& client,
                                                std::shared_ptr<ScriptedBody> body, Seen& seen) {
  body->endless = true;
  auto res = co_await client.send(streamed_request("/hold", std::move(body)));
  EXPECT_TRUE(res && res->source) << (res ? "not streamed" : res.error().message);
  if (!res || !res->source || seen.held.size() != 1) co_return std::nullopt;
  co_return std::move(*res);
}

// The client's answer `res` ends with a reset naming `reset`, the handler's held body with
// `error` (after any data that had arrived).
awaitable<void> expect_reset_both_ways(Response& res, Seen& seen, std::string reset,
                                       std::string error) {
  auto got = co_await async::with_timeout(res.source->next(), 5s);
  EXPECT_TRUE(got && contains(got->error, reset)) << (got ? got->error : "no reset in 5 s");
  // (What arrived before the reset reached the server may come first.)
  auto held = co_await async::with_timeout(seen.held.front()->next(), 5s);
  while (held && held->error.empty() && !held->end) {
    held = co_await async::with_timeout(seen.held.front()->next(), 5s);
  }
  EXPECT_TRUE(held && held->error == error) << (held ? held->error : "still waiting");
  seen.held.clear();
}

// A connection whose request body budget is 256 KiB.
class Http2RequestBudgetTest : public Http2RequestStreamTest {
 protected:
  void SetUp() override { serve_streaming(256 * 1024); }
};

TEST_F(Http2RequestBudgetTest, AStreamedRequestPastTheConnectionBudgetIsResetAlone) {
  run([&]() -> awaitable<void> {
    auto client = co_await connect_client(port_);
    auto ex = co_await asio::this_coro::executor;
    // An unread body passes the 256 KiB budget before its 1 MiB window: its stream is reset
    // (ENHANCE_YOUR_CALM: gRPC's RESOURCE_EXHAUSTED) and its handler's body fails.
    auto body = std::make_shared<ScriptedBody>(ex);
    auto res = co_await hold_endless(*client, body, seen);
    if (!res) co_return;
    co_await expect_reset_both_ways(*res, seen, "stream reset: ENHANCE_YOUR_CALM",
                                    "the connection's request body budget is spent");
    // The budget is free again and the connection carries on.
    auto plain =
        co_await client->send(make_request("POST", "/plain", std::string(200 * 1024, 'p')));
    EXPECT_TRUE(plain && plain->body.size() == 200 * 1024u);
    EXPECT_TRUE(client->usable());
  });
}

TEST_F(Http2RequestStreamTest, ASourceThatFailsWhileItsPeerReadsNothingResetsAtOnce) {
  run([&]() -> awaitable<void> {
    auto client = co_await connect_client(port_);
    // The server reads nothing, so the client's pump waits for the window with 64 KiB in hand;
    // when the source fails meanwhile (its own downstream went away), the stream is reset then,
    // not when the peer next reads.
    auto body = std::make_shared<ScriptedBody>(co_await asio::this_coro::executor);
    auto res = co_await hold_endless(*client, body, seen);
    if (!res) co_return;
    // Past the server's 1 MiB window and the 64 KiB lead: the pump is parked (it parks in the
    // same turn as the pull that took it there).
    EXPECT_TRUE(co_await wait_until([&] { return body->pulled >= 1024 * 1024 + 64 * 1024; }));
    body->endless = false;
    BodySource::Piece broken;
    broken.error = "downstream reset";
    body->push(std::move(broken));
    co_await expect_reset_both_ways(*res, seen, "stream reset: CANCEL",
                                    "the downstream reset the stream");
    EXPECT_TRUE(client->usable());
  });
}

TEST_F(Http2RequestStreamTest, AStreamedRequestThatFailsResetsItsStreamAndTellsTheHandler) {
  run([&]() -> awaitable<void> {
    auto client = co_await connect_client(port_);
    auto ex = co_await asio::this_coro::executor;
    auto body = std::make_shared<ScriptedBody>(ex);
    body->push("some");
    using Sent = std::optional<Result<Response>>;
    auto sending = std::make_shared<Sent>();
    asio::co_spawn(
        ex,
        [](std::shared_ptr<Http2Client> c, Request r,
           std::shared_ptr<Sent> out) -> awaitable<void> {
          *out = co_await c->send(std::move(r));
        }(client, streamed_request("/count", body), sending),
        asio::detached);
    // The handler reads "some", then the body fails (its downstream went away).
    EXPECT_TRUE(co_await wait_until([&] { return seen.read == 4; }));
    BodySource::Piece broken;
    broken.error = "downstream reset";
    body->push(std::move(broken));
    EXPECT_TRUE(co_await wait_until([&] { return sending->has_value(); }));
    EXPECT_TRUE(*sending && !**sending) << "a request whose body failed was answered";
    if (*sending && !**sending) {
      EXPECT_TRUE(contains((**sending).error().message, "CANCEL")) << (**sending).error().message;
    }
    EXPECT_TRUE(co_await wait_until([&] { return !seen.gone.empty(); }));
    EXPECT_EQ(seen.gone, "DR 0 the downstream reset the stream;");
    EXPECT_FALSE(seen.errors.empty()) << "the handler's read did not fail";
    EXPECT_TRUE(client->usable());
  });
}

// ---------------------------------------------------------------------------------------------
// Real-world clients: nghttp and h2load.

TEST(Http2Interop, NghttpClient) {
  ServerThread server(echo_handler);
  const std::string url = "http://127.0.0.1:" + std::to_string(server.port());
  auto [rc, out] = run_command("nghttp -v " + url + "/trailers/hello");
  EXPECT_EQ(rc, 0) << out;
  EXPECT_TRUE(contains(out, ":status: 200")) << out;
  EXPECT_TRUE(contains(out, "x-path: /trailers/hello")) << out;
  EXPECT_TRUE(contains(out, "x-authority: 127.0.0.1:" + std::to_string(server.port()))) << out;
  EXPECT_TRUE(contains(out, "grpc-status: 0")) << out;  // the trailers HEADERS frame
  EXPECT_FALSE(contains(out, "connection: close")) << out;

  // An upload: the body comes back.
  const std::string file = ::testing::TempDir() + "/h2_upload.txt";
  {
    FILE* f = fopen(file.c_str(), "w");
    ASSERT_NE(f, nullptr);
    fputs("uploaded by nghttp", f);
    fclose(f);
  }
  auto [rc2, out2] = run_command("nghttp -d " + file + " " + url + "/upload");
  EXPECT_EQ(rc2, 0) << out2;
  EXPECT_TRUE(contains(out2, "uploaded by nghttp")) << out2;
  std::remove(file.c_str());

  // A request nghttp sends with a connection-specific header is refused with 400.
  auto [rc3, out3] = run_command("nghttp -v -H 'te: gzip' " + url + "/x");
  EXPECT_TRUE(contains(out3, ":status: 400")) << out3;
}

TEST(Http2Interop, H2load) {
  ServerThread server(echo_handler);
  const std::string url = "http://127.0.0.1:" + std::to_string(server.port()) + "/load";
  auto [rc, out] = run_command("h2load -n 2000 -c 4 -m 20 " + url);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_TRUE(contains(out, "2000 succeeded, 0 failed, 0 errored")) << out;
  EXPECT_TRUE(contains(out, "2000 2xx")) << out;
}

// ---------------------------------------------------------------------------------------------
// Bodies too long to buffer: with Limits::stream_bodies_after, serve_http2 hands any request to
// its handler once its body passes that size (what arrived in Request::body, the rest through
// Request::source), and Http2Client answers a request with Request::stream_response_after the
// same way; max_body_bytes no longer bounds either.

constexpr size_t kStreamAfter = 64 * 1024;

std::vector<std::string> split_fields(const std::string& line) {
  std::vector<std::string> out;
  std::istringstream in(line);
  for (std::string f; in >> f;) out.push_back(f);
  return out;
}

// "/upload": reads the whole body and answers what came how ("<in body> <in source> <total>
// <trailer x-t>"). "/download/<n>": a buffered body of n bytes of 'd'.
RequestHandler long_body_handler() {
  return [](Request req) -> awaitable<Response> {
    Response r;
    r.status = 200;
    if (req.head.target.starts_with("/download/")) {
      r.body.assign(std::stoul(req.head.target.substr(10)), 'd');
      co_return r;
    }
    size_t from_source = 0;
    bool intact = std::all_of(req.body.begin(), req.body.end(), [](char c) { return c == 'u'; });
    http::HeaderList trailers = req.trailers;
    while (req.source) {
      auto piece = co_await req.source->next();
      from_source += piece.data.size();
      intact = intact &&
               std::all_of(piece.data.begin(), piece.data.end(), [](char c) { return c == 'u'; });
      if (!piece.error.empty()) {
        r.body = "error: " + piece.error;
        co_return r;
      }
      if (piece.end) {
        trailers = std::move(piece.trailers);
        req.source.reset();
      }
    }
    r.body =
        fmt::format("{} {} {} {} {}", req.body.size(), from_source, req.body.size() + from_source,
                    find_header(trailers, "x-t").value_or("-"), intact ? "intact" : "damaged");
    co_return r;
  };
}

TEST_F(Http2Test, BodiesLongerThanTheBufferStreamAndAreNotBoundedByTheBodyLimit) {
  Limits limits;
  limits.stream_bodies_after = kStreamAfter;
  limits.max_body_bytes = 1024 * 1024;
  serve(long_body_handler(), limits);
  run([&]() -> awaitable<void> {
    auto client = co_await connect_client(port_);
    constexpr size_t kLong = 3 * 1024 * 1024;
    // A request body past the limit (announced by its Content-Length, so not refused at the
    // head either): handed over once 64 KiB are in, the rest streamed, trailers included.
    Request up = make_request("POST", "/upload", std::string(kLong, 'u'));
    up.head.headers.push_back({"content-length", std::to_string(kLong)});
    auto res = co_await client->send(std::move(up));
    EXPECT_TRUE(res) << res.error().message;
    if (!res) co_return;
    EXPECT_EQ(res->status, 200);
    auto fields = split_fields(res->body);
    EXPECT_EQ(fields.size(), 5u) << res->body;
    if (fields.size() != 5) co_return;
    EXPECT_LE(std::stoul(fields[0]), kStreamAfter) << "at most the threshold is buffered";
    EXPECT_GT(std::stoul(fields[1]), 0u) << "the rest streamed";
    EXPECT_EQ(fields[2], std::to_string(kLong));
    EXPECT_EQ(fields[4], "intact");
    Request with_trailers = make_request("POST", "/upload", std::string(kLong, 'u'));
    with_trailers.trailers.push_back({"x-t", "yes"});
    res = co_await client->send(std::move(with_trailers));
    EXPECT_TRUE(res && res->body.ends_with(fmt::format(" {} yes intact", kLong)))
        << (res ? res->body : res.error().message);
    // A short body is buffered whole, as before.
    res = co_await client->send(make_request("POST", "/upload", std::string(1000, 'u')));
    EXPECT_TRUE(res && res->body == "1000 0 1000 - intact") << (res ? res->body : "");

    // A long answer to a client that asks: its first bytes in the body, the rest streamed.
    Request down = make_request("GET", fmt::format("/download/{}", kLong));
    down.stream_response_after = kStreamAfter;
    res = co_await client->send(std::move(down));
    EXPECT_TRUE(res && res->source) << (res ? "buffered whole" : res.error().message);
    if (!res) co_return;
    EXPECT_LE(res->body.size(), kStreamAfter);
    std::string all = co_await read_all(*res);
    EXPECT_EQ(all.size(), kLong);
    EXPECT_TRUE(std::all_of(all.begin(), all.end(), [](char c) { return c == 'd'; }));
    // A short one is whole; one to a client that does not ask is refused past max_body_bytes.
    Request small = make_request("GET", "/download/1000");
    small.stream_response_after = kStreamAfter;
    res = co_await client->send(std::move(small));
    EXPECT_TRUE(res && !res->source && res->body.size() == 1000u);
    auto refused = co_await client->send(make_request("GET", fmt::format("/download/{}", 9 << 20)));
    EXPECT_FALSE(refused) << "a client that does not stream buffers at most max_body_bytes";
  });
}

// A body too long to buffer that breaks its Content-Length or the connection's budget is
// refused as a buffered one is, before any handler runs: 400, or REFUSED_STREAM (safe to retry).
TEST_F(Http2Test, ALongBodyThatBreaksItsLengthOrTheBudgetIsRefusedBeforeItsHandler) {
  int handled = 0;
  Limits limits;
  limits.stream_bodies_after = 1024;
  limits.max_connection_body_bytes = 1500;
  serve(
      [&](Request) -> awaitable<Response> {
        ++handled;
        co_return local_response(200, "handled");
      },
      limits);
  run([&]() -> awaitable<void> {
    auto client = co_await connect_client(port_);
    Request lying = make_request("POST", "/lying", std::string(1400, 'x'));
    lying.head.headers.push_back({"content-length", "10"});
    auto res = co_await client->send(std::move(lying));
    EXPECT_TRUE(res && res->status == 400)
        << (res ? std::to_string(res->status) : res.error().message);
    res = co_await client->send(make_request("POST", "/big", std::string(3000, 'x')));
    EXPECT_FALSE(res);
    if (!res) {
      EXPECT_TRUE(contains(res.error().message, "REFUSED_STREAM")) << res.error().message;
    }
    EXPECT_EQ(handled, 0);
  });
}

// With Limits::stream_late_bodies_after, a short answer whose body is still coming that long
// after its head (server-sent events) is answered then, its body streamed as it is written;
// one that ends in time is whole.
TEST_F(Http2Test, AnAnswerWhoseBodyIsLateStreamsWhateverItsSize) {
  std::shared_ptr<ScriptedBody> events;
  serve([&](Request req) -> awaitable<Response> {
    Response r;
    r.status = 200;
    r.headers.push_back({"content-type", "text/event-stream"});
    if (req.head.target == "/events") {
      events = std::make_shared<ScriptedBody>(co_await asio::this_coro::executor);
      r.source = events;
    } else {
      r.body = "whole";
    }
    co_return r;
  });
  run([&]() -> awaitable<void> {
    Limits limits;
    limits.stream_late_bodies_after = std::chrono::milliseconds(20);
    auto client = co_await connect_client(port_, limits);
    Request req = make_request("GET", "/events");
    req.stream_response_after = kStreamAfter;
    const auto start = std::chrono::steady_clock::now();
    auto res = co_await client->send(std::move(req));
    EXPECT_TRUE(res && res->source) << (res ? "buffered" : res.error().message);
    if (!res || !res->source) co_return;
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
    EXPECT_EQ(res->body, "");
    events->push("data: one\n\n");
    auto piece = co_await res->source->next();
    EXPECT_EQ(piece.data, "data: one\n\n") << "the first event comes before the body ends";
    events->end({});
    EXPECT_EQ(co_await read_all(*res), "");

    Request quick = make_request("GET", "/quick");
    quick.stream_response_after = kStreamAfter;
    res = co_await client->send(std::move(quick));
    EXPECT_TRUE(res && !res->source && res->body == "whole");
  });
}

}  // namespace
}  // namespace zt::waypoint::http2
