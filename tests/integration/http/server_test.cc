#include "common/http/server.h"

#include <atomic>
#include <chrono>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/http/router.h"
#include "common/stats/registry.h"
#include "tests/integration/http/http_client.h"

namespace zt::http {
namespace {

using namespace std::chrono_literals;
using testing::Client;
using ::testing::HasSubstr;
using testing::HttpResponse;
using ::testing::StartsWith;

const tcp::endpoint kAnyLoopbackPort{asio::ip::address_v4::loopback(), 0};

class HttpServerTest : public ::testing::Test {
 protected:
  // Binds to 127.0.0.1:0 and starts accepting.
  std::unique_ptr<Server> serve(Handler handler, ServerOptions options = {}) {
    if (options.name == "http") options.name = "test";
    auto server =
        Server::bind(ioc_.get_executor(), kAnyLoopbackPort, std::move(handler), std::move(options));
    if (!server) {
      ADD_FAILURE() << server.error().message;
      return nullptr;
    }
    (*server)->start();
    return std::move(*server);
  }

  template <class T>
  T run(awaitable<T> task) {
    return testing::run_until_done(ioc_, std::move(task));
  }

  static Router test_router() {
    Router r;
    r.get("/hello", [](const Request&) { return Response::text(200, "hello\n"); });
    r.post("/echo", [](const Request& req) {
      std::string out = "path=" + req.path + " body=" + req.body;
      for (const auto& [k, v] : req.query) out += " " + k + "=" + v;
      if (auto h = req.header("x-test")) out += " x-test=" + std::string(*h);
      return Response::text(200, out);
    });
    r.get("/throws", [](const Request&) -> Response { throw std::runtime_error("boom"); });
    return r;
  }

  asio::io_context ioc_;
};

TEST_F(HttpServerTest, RoutesByMethodAndPathAndPassesQueryHeadersAndBody) {
  auto server = serve(test_router());
  ASSERT_TRUE(server);
  auto ep = server->local_endpoint();
  EXPECT_NE(ep.port(), 0);
  auto hello = run(testing::fetch(ep, "GET", "/hello"));
  EXPECT_EQ(hello.result_int(), 200);
  EXPECT_EQ(hello.body(), "hello\n");
  EXPECT_EQ(hello[testing::bhttp::field::content_type], "text/plain; charset=utf-8");

  // Built outside the coroutine: g++ 12 miscompiles initializer lists inside coroutines.
  auto raw = Client::format("POST", "/echo?level=debug&msg=a%20b", "payload", {{"X-Test", "yes"}});
  auto echo = run([&]() -> awaitable<HttpResponse> {
    auto c = co_await Client::connect(ep);
    co_await c.write(raw);
    co_return co_await c.read_response();
  }());
  EXPECT_EQ(echo.result_int(), 200);
  EXPECT_EQ(echo.body(), "path=/echo body=payload level=debug msg=a b x-test=yes");
}

TEST_F(HttpServerTest, KeepAliveServesTwoRequestsOnOneConnection) {
  std::vector<std::string> peers;
  Router r;
  r.get("/who", [&](const Request& req) {
    peers.push_back(req.peer);
    return Response::text(200, "n=" + std::to_string(peers.size()));
  });
  auto server = serve(std::move(r));
  ASSERT_TRUE(server);
  auto [first, second] = run([&]() -> awaitable<std::pair<HttpResponse, HttpResponse>> {
    auto c = co_await Client::connect(server->local_endpoint());
    auto a = co_await c.request("GET", "/who");
    auto b = co_await c.request("GET", "/who");
    co_return std::pair{std::move(a), std::move(b)};
  }());
  EXPECT_EQ(first.body(), "n=1");
  EXPECT_TRUE(first.keep_alive());
  EXPECT_EQ(second.body(), "n=2");
  ASSERT_EQ(peers.size(), 2u);
  EXPECT_EQ(peers[0], peers[1]);  // same client port: one connection
}

TEST_F(HttpServerTest, PipelinedRequestsAreAnsweredInOrder) {
  auto server = serve(test_router());
  ASSERT_TRUE(server);
  auto bodies = run([&]() -> awaitable<std::vector<std::string>> {
    auto c = co_await Client::connect(server->local_endpoint());
    co_await c.write(Client::format("GET", "/hello") + Client::format("POST", "/echo", "2") +
                     Client::format("GET", "/missing"));
    std::vector<std::string> out;
    for (int i = 0; i < 3; ++i) {
      auto res = co_await c.read_response();
      out.push_back(std::to_string(res.result_int()) + " " + res.body());
    }
    co_return out;
  }());
  EXPECT_EQ(bodies,
            (std::vector<std::string>{"200 hello\n", "200 path=/echo body=2", "404 not found\n"}));
}

TEST_F(HttpServerTest, UnknownPathIs404AndWrongMethodIs405WithAllow) {
  auto server = serve(test_router());
  ASSERT_TRUE(server);
  auto ep = server->local_endpoint();
  EXPECT_EQ(run(testing::fetch(ep, "GET", "/nope")).result_int(), 404);
  auto wrong = run(testing::fetch(ep, "GET", "/echo"));
  EXPECT_EQ(wrong.result_int(), 405);
  EXPECT_EQ(wrong[testing::bhttp::field::allow], "POST");
}

TEST_F(HttpServerTest, OversizedHeaderGets431AndTheConnectionIsClosed) {
  stats::Registry registry;
  ServerOptions options;
  options.registry = &registry;
  auto server = serve(test_router(), options);
  ASSERT_TRUE(server);
  auto raw = Client::format("GET", "/hello", "", {{"X-Big", std::string(20000, 'a')}});
  auto [res, closed] = run([&]() -> awaitable<std::pair<HttpResponse, error_code>> {
    auto c = co_await Client::connect(server->local_endpoint());
    co_await c.write(raw);
    auto r = co_await c.read_response();
    co_return std::pair{std::move(r), co_await c.wait_closed()};
  }());
  EXPECT_EQ(res.result_int(), 431);
  EXPECT_FALSE(res.keep_alive());
  EXPECT_EQ(closed, asio::error::eof);
  EXPECT_THAT(
      registry.render_prometheus(),
      HasSubstr("http_server_errors_total{reason=\"header_too_large\",server=\"test\"} 1\n"));
  EXPECT_THAT(registry.render_prometheus(),
              HasSubstr("http_server_requests_total{code=\"431\",server=\"test\"} 1\n"));
}

TEST_F(HttpServerTest, HeaderJustUnderTheLimitIsAccepted) {
  auto server = serve(test_router());
  ASSERT_TRUE(server);
  auto raw = Client::format("GET", "/hello", "", {{"X-Big", std::string(15000, 'a')}});
  auto res = run([&]() -> awaitable<HttpResponse> {
    auto c = co_await Client::connect(server->local_endpoint());
    co_await c.write(raw);
    co_return co_await c.read_response();
  }());
  EXPECT_EQ(res.result_int(), 200);
}

TEST_F(HttpServerTest, OversizedBodyGets413) {
  auto server = serve(test_router());
  ASSERT_TRUE(server);
  auto res = run(
      testing::fetch(server->local_endpoint(), "POST", "/echo", std::string(64 * 1024 + 1, 'b')));
  EXPECT_EQ(res.result_int(), 413);
  auto ok =
      run(testing::fetch(server->local_endpoint(), "POST", "/echo", std::string(64 * 1024, 'b')));
  EXPECT_EQ(ok.result_int(), 200);
}

TEST_F(HttpServerTest, ClientThatSendsNothingIsClosedAfterTheReadTimeout) {
  ServerOptions options;
  options.read_timeout = 200ms;
  auto server = serve(test_router(), options);
  ASSERT_TRUE(server);
  auto start = std::chrono::steady_clock::now();
  auto closed = run([&]() -> awaitable<error_code> {
    auto c = co_await Client::connect(server->local_endpoint());
    co_return co_await c.wait_closed();
  }());
  EXPECT_EQ(closed, asio::error::eof);
  EXPECT_GE(std::chrono::steady_clock::now() - start, 200ms);
}

TEST_F(HttpServerTest, ClientThatStopsMidRequestIsClosedAtTheDeadline) {
  ServerOptions options;
  options.read_timeout = 200ms;
  auto server = serve(test_router(), options);
  ASSERT_TRUE(server);
  auto closed = run([&]() -> awaitable<error_code> {
    auto c = co_await Client::connect(server->local_endpoint());
    co_await c.write("GET /hello HTTP/1.1\r\nHost: te");
    co_return co_await c.wait_closed();
  }());
  EXPECT_EQ(closed, asio::error::eof);
}

TEST_F(HttpServerTest, IdleKeepAliveConnectionIsClosedAfterTheReadTimeout) {
  ServerOptions options;
  options.read_timeout = 200ms;
  auto server = serve(test_router(), options);
  ASSERT_TRUE(server);
  auto [res, closed] = run([&]() -> awaitable<std::pair<HttpResponse, error_code>> {
    auto c = co_await Client::connect(server->local_endpoint());
    auto r = co_await c.request("GET", "/hello");
    co_return std::pair{std::move(r), co_await c.wait_closed()};
  }());
  EXPECT_EQ(res.result_int(), 200);
  EXPECT_EQ(closed, asio::error::eof);
}

TEST_F(HttpServerTest, MalformedRequestGets400AndTheServerKeepsServing) {
  auto server = serve(test_router());
  ASSERT_TRUE(server);
  auto ep = server->local_endpoint();
  for (std::string garbage :
       {"NOT HTTP AT ALL\r\n\r\n", "GET /hello HTTP/9.9\r\n\r\n",
        "GET /hello HTTP/1.1\r\nBad Header\r\n\r\n", "GET /bad%zz HTTP/1.1\r\nHost: x\r\n\r\n"}) {
    auto res = run([&]() -> awaitable<HttpResponse> {
      auto c = co_await Client::connect(ep);
      co_await c.write(garbage);
      co_return co_await c.read_response();
    }());
    EXPECT_EQ(res.result_int(), 400) << garbage;
    EXPECT_THAT(res.body(), StartsWith("bad request")) << garbage;
  }
  EXPECT_EQ(run(testing::fetch(ep, "GET", "/hello")).result_int(), 200);
}

TEST_F(HttpServerTest, HandlerExceptionGives500AndTheConnectionStaysUsable) {
  auto server = serve(test_router());
  ASSERT_TRUE(server);
  auto [a, b] = run([&]() -> awaitable<std::pair<HttpResponse, HttpResponse>> {
    auto c = co_await Client::connect(server->local_endpoint());
    auto x = co_await c.request("GET", "/throws");
    auto y = co_await c.request("GET", "/hello");
    co_return std::pair{std::move(x), std::move(y)};
  }());
  EXPECT_EQ(a.result_int(), 500);
  EXPECT_EQ(b.result_int(), 200);
}

TEST_F(HttpServerTest, ResponseBeastCannotSendBecomes500) {
  Router r;
  r.get("/no-content", [](const Request&) { return Response{204, "", "", {}, {}}; });
  r.get("/body-on-204", [](const Request&) { return Response::text(204, "not allowed"); });
  r.get("/status-42", [](const Request&) { return Response::text(42, "?"); });
  auto server = serve(std::move(r));
  ASSERT_TRUE(server);
  auto ep = server->local_endpoint();
  EXPECT_EQ(run(testing::fetch(ep, "GET", "/no-content")).result_int(), 204);
  EXPECT_EQ(run(testing::fetch(ep, "GET", "/body-on-204")).result_int(), 500);
  EXPECT_EQ(run(testing::fetch(ep, "GET", "/status-42")).result_int(), 500);
}

TEST_F(HttpServerTest, ExpectContinueGets100BeforeTheBody) {
  auto server = serve(test_router());
  ASSERT_TRUE(server);
  auto [interim, res] = run([&]() -> awaitable<std::pair<std::string, HttpResponse>> {
    auto c = co_await Client::connect(server->local_endpoint());
    co_await c.write(
        "POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n");
    auto cont = co_await c.read_response();  // a 1xx response has no body
    std::string status = std::to_string(cont.result_int());
    co_await c.write("data");
    co_return std::pair{status, co_await c.read_response()};
  }());
  EXPECT_EQ(interim, "100");
  EXPECT_EQ(res.result_int(), 200);
  EXPECT_EQ(res.body(), "path=/echo body=data");
}

TEST_F(HttpServerTest, Http10RequestIsAnsweredAndClosed) {
  auto server = serve(test_router());
  ASSERT_TRUE(server);
  auto [res, closed] = run([&]() -> awaitable<std::pair<HttpResponse, error_code>> {
    auto c = co_await Client::connect(server->local_endpoint());
    co_await c.write("GET /hello HTTP/1.0\r\n\r\n");
    auto r = co_await c.read_response();
    co_return std::pair{std::move(r), co_await c.wait_closed()};
  }());
  EXPECT_EQ(res.result_int(), 200);
  EXPECT_EQ(res.version(), 10u);
  EXPECT_EQ(closed, asio::error::eof);
}

TEST_F(HttpServerTest, AfterSendRunsOnceTheResponseIsWritten) {
  int after = 0;
  Router r;
  r.post("/quit", [&](const Request&) {
    auto res = Response::text(200, "bye\n");
    res.after_send = [&] { ++after; };
    return res;
  });
  auto server = serve(std::move(r));
  ASSERT_TRUE(server);
  auto res = run(testing::fetch(server->local_endpoint(), "POST", "/quit"));
  EXPECT_EQ(res.body(), "bye\n");
  EXPECT_EQ(after, 1);
}

TEST_F(HttpServerTest, ConnectionsBeyondTheLimitAreClosedAtOnce) {
  ServerOptions options;
  options.max_connections = 1;
  auto server = serve(test_router(), options);
  ASSERT_TRUE(server);
  auto ep = server->local_endpoint();
  auto [extra, first] = run([&]() -> awaitable<std::pair<error_code, HttpResponse>> {
    auto a = co_await Client::connect(ep);
    auto before = co_await a.request("GET", "/hello");  // `a` is now surely accepted
    auto b = co_await Client::connect(ep);
    auto ended = co_await b.wait_closed();
    co_return std::pair{ended, co_await a.request("GET", "/hello")};
  }());
  EXPECT_TRUE(extra == asio::error::eof || extra == asio::error::connection_reset)
      << extra.message();
  EXPECT_EQ(first.result_int(), 200);
}

TEST_F(HttpServerTest, StopClosesOpenConnectionsAndStopsAccepting) {
  auto server = serve(test_router());
  ASSERT_TRUE(server);
  auto ep = server->local_endpoint();
  auto closed = run([&]() -> awaitable<error_code> {
    auto c = co_await Client::connect(ep);
    co_await c.request("GET", "/hello");
    server->stop();
    co_return co_await c.wait_closed();
  }());
  EXPECT_EQ(closed, asio::error::eof);
  auto refused = run([&]() -> awaitable<error_code> {
    tcp::socket s(co_await asio::this_coro::executor);
    auto [ec] = co_await s.async_connect(ep, kTuple);
    co_return ec;
  }());
  EXPECT_EQ(refused, asio::error::connection_refused);
}

TEST_F(HttpServerTest, BindReportsAddressInUseWithTheServerName) {
  auto first = serve(test_router());
  ASSERT_TRUE(first);
  auto ep = first->local_endpoint();
  ServerOptions options;
  options.name = "admin";
  auto second = Server::bind(ioc_.get_executor(), ep, test_router(), options);
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().message,
            "address already in use: 127.0.0.1:" + std::to_string(ep.port()) + " (admin)");
}

TEST_F(HttpServerTest, DestroyingTheServerWithOpenConnectionsIsSafe) {
  auto server = serve(test_router());
  ASSERT_TRUE(server);
  auto closed = run([&]() -> awaitable<error_code> {
    auto c = co_await Client::connect(server->local_endpoint());
    co_await c.request("GET", "/hello");
    server.reset();
    co_return co_await c.wait_closed();
  }());
  EXPECT_EQ(closed, asio::error::eof);
}

TEST(HttpServerEndpoint, FormatsV4AndV6) {
  EXPECT_EQ(to_string(tcp::endpoint(asio::ip::make_address("127.0.0.1"), 15000)),
            "127.0.0.1:15000");
  EXPECT_EQ(to_string(tcp::endpoint(asio::ip::make_address("::1"), 15000)), "[::1]:15000");
}

}  // namespace
}  // namespace zt::http
