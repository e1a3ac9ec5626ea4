// serve_http1() over real loopback TCP: raw clients write exact bytes and read exact answers;
// curl checks interop with a real-world client.
#include <array>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "tests/integration/waypoint_http1/test_util.h"
#include "tests/support/coro.h"
#include "waypoint/base/strings.h"
#include "waypoint/http1/http1.h"

namespace zt::waypoint::http1::testing {
namespace {

using zt::testing::run_coroutine;

struct ServerEnd {
  std::shared_ptr<bool> finished = std::make_shared<bool>(false);
};

awaitable<void> run_server(Duplex d, Limits limits, RequestHandler handler,
                           std::shared_ptr<bool> finished) {
  co_await serve_http1(std::move(d), "", limits, std::move(handler));
  *finished = true;
}

// Closes our end (ending the server's linger), then waits up to 3 s for the session to end.
awaitable<bool> closed_and_finished(tcp::socket& client, std::shared_ptr<bool> finished) {
  error_code ec;
  client.close(ec);
  auto ex = co_await asio::this_coro::executor;
  for (int i = 0; i < 300 && !*finished; ++i) {
    asio::steady_timer t(ex, std::chrono::milliseconds(10));
    co_await t.async_wait(kTuple);
  }
  co_return *finished;
}

// Starts serve_http1 on the server end of a fresh pair; returns the client socket.
awaitable<tcp::socket> start(RequestHandler handler, ServerEnd& end, Limits limits = {}) {
  auto pair = co_await socket_pair();
  auto ex = co_await asio::this_coro::executor;
  asio::co_spawn(ex,
                 run_server(Duplex::of_socket(std::move(pair.server)), limits, std::move(handler),
                            end.finished),
                 asio::detached);
  co_return std::move(pair.client);
}

// Sends `request` on a fresh session and returns everything until the server closes.
awaitable<std::string> one_shot(std::string request, std::shared_ptr<Recorder> rec, Limits limits,
                                std::shared_ptr<bool> finished) {
  ServerEnd end;
  auto client = co_await start(make_echo(rec), end, limits);
  co_await write_str(client, std::move(request));
  std::string all = co_await read_all(client);
  *finished = co_await closed_and_finished(client, end.finished);
  co_return all;
}

// Runs `request` and expects a rejection with `status`, `Connection: close`, no handler call.
void expect_rejected(const std::string& request, int status, Limits limits = {}) {
  asio::io_context io;
  auto rec = std::make_shared<Recorder>();
  auto finished = std::make_shared<bool>(false);
  std::string answer;
  run_coroutine(
      io, [&]() -> awaitable<void> { answer = co_await one_shot(request, rec, limits, finished); });
  EXPECT_EQ(answer.rfind("HTTP/1.1 " + std::to_string(status) + " ", 0), 0u) << answer;
  EXPECT_NE(lower(answer).find("connection: close"), std::string::npos) << answer;
  EXPECT_EQ(rec->count(), 0u);
  EXPECT_TRUE(*finished);
}

// --- keep-alive, pipelining ------------------------------------------------------------------

awaitable<void> pipelined_body() {
  auto rec = std::make_shared<Recorder>();
  ServerEnd end;
  auto client = co_await start(make_echo(rec), end);
  co_await write_str(client,
                     "GET /first HTTP/1.1\r\nHost: svc\r\n\r\n"
                     "POST /second HTTP/1.1\r\nHost: svc\r\nContent-Length: 3\r\n\r\nabc"
                     "GET /third HTTP/1.1\r\nHost: svc\r\n\r\n");
  std::string buf;
  auto a = co_await read_message(client, buf);
  auto b = co_await read_message(client, buf);
  auto c = co_await read_message(client, buf);
  EXPECT_TRUE(a.complete && b.complete && c.complete);
  EXPECT_EQ(a.body, "GET /first 0");
  EXPECT_EQ(b.body, "POST /second 3");
  EXPECT_EQ(c.body, "GET /third 0");
  EXPECT_TRUE(a.has("x-seen: 1"));
  EXPECT_TRUE(c.has("x-seen: 3"));
  EXPECT_FALSE(a.has("connection: close"));
  // Still open: a fourth request on the same connection.
  co_await write_str(client, "GET /fourth HTTP/1.1\r\nHost: svc\r\n\r\n");
  auto d = co_await read_message(client, buf);
  EXPECT_EQ(d.body, "GET /fourth 0");
  EXPECT_EQ(rec->count(), 4u);
  if (rec->count() == 4) {
    auto r = rec->at(1);
    EXPECT_EQ(r.head.authority, "svc");
    EXPECT_EQ(r.body, "abc");
    EXPECT_FALSE(http::find_header(r.head.headers, "host").has_value());
    EXPECT_EQ(r.version, HttpVersion::kHttp11);
  }
  client.close();
}

TEST(Http1Server, PipelinedRequestsAnsweredInOrder) {
  asio::io_context io;
  run_coroutine(io, [] { return pipelined_body(); });
}

awaitable<void> split_writes_body() {
  // A head and body trickling in small pieces, with the next request's first bytes attached.
  auto rec = std::make_shared<Recorder>();
  ServerEnd end;
  auto client = co_await start(make_echo(rec), end);
  const std::string wire =
      "PUT /slow HTTP/1.1\r\nHost: svc\r\nContent-Length: 10\r\n\r\n0123456789GET /n HTTP/1.1\r\n"
      "Host: svc\r\n\r\n";
  auto ex = co_await asio::this_coro::executor;
  for (size_t i = 0; i < wire.size(); i += 7) {
    co_await write_str(client, wire.substr(i, 7));
    asio::steady_timer t(ex, std::chrono::milliseconds(1));
    co_await t.async_wait(asio::use_awaitable);
  }
  std::string buf;
  auto a = co_await read_message(client, buf);
  auto b = co_await read_message(client, buf);
  EXPECT_EQ(a.body, "PUT /slow 10");
  EXPECT_EQ(b.body, "GET /n 0");
}

TEST(Http1Server, RequestsSplitAcrossWrites) {
  asio::io_context io;
  run_coroutine(io, [] { return split_writes_body(); });
}

// --- bodies --------------------------------------------------------------------------------

awaitable<void> chunked_body() {
  auto rec = std::make_shared<Recorder>();
  ServerEnd end;
  auto client = co_await start(make_echo(rec), end);
  co_await write_str(
      client,
      "POST /upload HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n"
      "Trailer: x-checksum\r\n\r\n"
      "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nx-checksum: abc123\r\nx-more: 2\r\n\r\n");
  std::string buf;
  auto a = co_await read_message(client, buf);
  EXPECT_EQ(a.body, "POST /upload 11");
  EXPECT_EQ(rec->count(), 1u);
  if (rec->count() == 1) {
    auto r = rec->at(0);
    EXPECT_EQ(r.body, "hello world");
    EXPECT_EQ(r.trailers, (http::HeaderList{{"x-checksum", "abc123"}, {"x-more", "2"}}));
    EXPECT_FALSE(http::find_header(r.head.headers, "x-checksum").has_value());
  }
}

TEST(Http1Server, ChunkedBodyWithTrailers) {
  asio::io_context io;
  run_coroutine(io, [] { return chunked_body(); });
}

awaitable<void> continue_body() {
  auto rec = std::make_shared<Recorder>();
  ServerEnd end;
  auto client = co_await start(make_echo(rec), end);
  co_await write_str(client,
                     "POST /big HTTP/1.1\r\nHost: svc\r\nContent-Length: 5\r\n"
                     "Expect: 100-continue\r\n\r\n");
  // Nothing of the body is sent until the 100 arrives.
  std::string buf;
  auto interim = co_await read_message(client, buf, /*bodyless=*/true);
  EXPECT_EQ(interim.head, "HTTP/1.1 100 Continue");
  EXPECT_EQ(rec->count(), 0u);
  co_await write_str(client, "12345");
  auto final_answer = co_await read_message(client, buf);
  EXPECT_EQ(final_answer.first_word_after_version(), "200");
  EXPECT_EQ(final_answer.body, "POST /big 5");
  EXPECT_EQ(rec->count(), 1u);
  if (rec->count() == 1) {
    EXPECT_FALSE(http::find_header(rec->at(0).head.headers, "expect").has_value());
  }
}

TEST(Http1Server, ExpectContinueSends100BeforeBody) {
  asio::io_context io;
  run_coroutine(io, [] { return continue_body(); });
}

TEST(Http1Server, ExpectContinueWithTooLargeBodyGets413Without100) {
  Limits limits;
  limits.max_body_bytes = 100;
  expect_rejected(
      "POST /big HTTP/1.1\r\nHost: svc\r\nContent-Length: 101\r\nExpect: 100-continue\r\n\r\n", 413,
      limits);
}

// --- rejections ----------------------------------------------------------------------------

TEST(Http1Server, ContentLengthAndChunkedIs400) {
  expect_rejected(
      "POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
      "0\r\n\r\n",
      400);
}

TEST(Http1Server, DuplicateContentLengthIs400) {
  expect_rejected(
      "POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 400);
}

TEST(Http1Server, TransferEncodingNotEndingInChunkedIs400) {
  expect_rejected("POST / HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: gzip\r\n\r\nabc", 400);
}

TEST(Http1Server, UnsupportedTransferCodingIs501) {
  expect_rejected(
      "POST / HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501);
}

TEST(Http1Server, TransferEncodingInHttp10Is400) {
  expect_rejected("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400);
}

TEST(Http1Server, OversizedHeadIs431) {
  Limits limits;
  limits.max_header_bytes = 1024;
  expect_rejected("GET / HTTP/1.1\r\nHost: svc\r\nx-big: " + std::string(2000, 'a') + "\r\n\r\n",
                  431, limits);
}

TEST(Http1Server, OversizedHeadWithoutEndIs431) {
  // The blank line never comes: refused once the limit is passed, not when the head ends.
  Limits limits;
  limits.max_header_bytes = 1024;
  expect_rejected("GET / HTTP/1.1\r\nHost: svc\r\nx-big: " + std::string(3000, 'a'), 431, limits);
}

TEST(Http1Server, TooManyHeadersIs431) {
  Limits limits;
  limits.max_headers = 5;
  std::string req = "GET / HTTP/1.1\r\nHost: svc\r\n";
  for (int i = 0; i < 6; ++i) req += "x-h" + std::to_string(i) + ": v\r\n";
  expect_rejected(req + "\r\n", 431, limits);
}

TEST(Http1Server, OversizedContentLengthBodyIs413) {
  Limits limits;
  limits.max_body_bytes = 100;
  expect_rejected(
      "POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: 1000\r\n\r\n" + std::string(1000, 'b'), 413,
      limits);
}

TEST(Http1Server, OversizedChunkedBodyIs413) {
  Limits limits;
  limits.max_body_bytes = 100;
  std::string req = "POST / HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (int i = 0; i < 5; ++i) req += "20\r\n" + std::string(32, 'c') + "\r\n";
  expect_rejected(req + "0\r\n\r\n", 413, limits);
}

TEST(Http1Server, MalformedRequestLineIs400) {
  expect_rejected("GET  /x HTTP/1.1\r\nHost: svc\r\n\r\n", 400);
  expect_rejected("GARBAGE\r\n\r\n", 400);
  expect_rejected("GET /x HTTP/2.0\r\nHost: svc\r\n\r\n", 400);
}

TEST(Http1Server, BadFramingBytesAre400) {
  expect_rejected("GET / HTTP/1.1\nHost: svc\n\n", 400);                      // bare LF
  expect_rejected("GET / HTTP/1.1\r\nHost : svc\r\n\r\n", 400);               // space before colon
  expect_rejected("GET / HTTP/1.1\r\nHost: svc\r\nx: a\r\n b\r\n\r\n", 400);  // obs-fold
  expect_rejected("GET / HTTP/1.1\r\n\r\n", 400);                             // no Host
  expect_rejected("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400);       // two Hosts
  expect_rejected("get / HTTP/1.1\r\nHost: svc\r\n\r\n", 400);                // lower-case method
  expect_rejected("GET http://x/ HTTP/1.1\r\nHost: svc\r\n\r\n", 400);        // absolute form
  expect_rejected("POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: -1\r\n\r\n", 400);
  expect_rejected(
      "POST / HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
      400);  // bad chunk size
}

TEST(Http1Server, UpgradeRequestWithBodyIs400) {
  expect_rejected(
      "POST /ws HTTP/1.1\r\nHost: svc\r\nConnection: upgrade\r\nUpgrade: websocket\r\n"
      "Content-Length: 3\r\n\r\nabc",
      400);
}

// --- connection persistence ------------------------------------------------------------------

awaitable<void> close_body(std::string request, bool expect_close_header) {
  auto rec = std::make_shared<Recorder>();
  ServerEnd end;
  auto client = co_await start(make_echo(rec), end);
  co_await write_str(client, std::move(request));
  // read_all returns only when the server closes.
  std::string all = co_await read_all(client);
  EXPECT_EQ(all.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << all;
  EXPECT_EQ(lower(all).find("connection: close") != std::string::npos, expect_close_header);
  EXPECT_TRUE(all.ends_with("GET /bye 0")) << all;
  EXPECT_EQ(rec->count(), 1u);
  EXPECT_TRUE(co_await closed_and_finished(client, end.finished));
}

TEST(Http1Server, ConnectionCloseEndsSessionAfterResponse) {
  asio::io_context io;
  run_coroutine(io, [] {
    return close_body(
        "GET /bye HTTP/1.1\r\nHost: svc\r\nConnection: close\r\n\r\nGET /never HTTP/1.1\r\n"
        "Host: svc\r\n\r\n",
        true);
  });
}

TEST(Http1Server, Http10WithoutKeepAliveCloses) {
  asio::io_context io;
  run_coroutine(io, [] { return close_body("GET /bye HTTP/1.0\r\n\r\n", true); });
}

awaitable<void> http10_keep_alive_body() {
  auto rec = std::make_shared<Recorder>();
  ServerEnd end;
  auto client = co_await start(make_echo(rec), end);
  co_await write_str(client, "GET /a HTTP/1.0\r\nConnection: keep-alive\r\nHost: old\r\n\r\n");
  std::string buf;
  auto a = co_await read_message(client, buf);
  EXPECT_TRUE(a.has("connection: keep-alive")) << a.head;
  EXPECT_EQ(a.body, "GET /a 0");
  co_await write_str(client, "GET /b HTTP/1.0\r\n\r\n");
  std::string rest = co_await read_all(client, buf);
  EXPECT_TRUE(rest.ends_with("GET /b 0")) << rest;
  EXPECT_EQ(rec->count(), 2u);
  if (rec->count() == 2) {
    EXPECT_EQ(rec->at(0).version, HttpVersion::kHttp10);
    EXPECT_EQ(rec->at(0).head.authority, "old");
    EXPECT_EQ(rec->at(1).head.authority, "");
  }
}

TEST(Http1Server, Http10KeepAliveStaysOpen) {
  asio::io_context io;
  run_coroutine(io, [] { return http10_keep_alive_body(); });
}

// A handler that answers with fixed response headers (here: Connection: close, hop-by-hop).
Response hop_response() {
  Response r;
  r.status = 200;
  r.headers = {{"Connection", "close, x-private"}, {"x-private", "secret"},
               {"Keep-Alive", "timeout=5"},        {"Transfer-Encoding", "chunked"},
               {"Content-Length", "999"},          {"x-kept", "yes"}};
  r.body = "ok";
  return r;
}

awaitable<Response> hop_handler(Request) { co_return hop_response(); }

awaitable<void> response_close_body() {
  ServerEnd end;
  auto client = co_await start([](Request r) { return hop_handler(std::move(r)); }, end);
  co_await write_str(client, "GET / HTTP/1.1\r\nHost: svc\r\n\r\n");
  std::string all = co_await read_all(client);
  const std::string l = lower(all);
  EXPECT_NE(l.find("x-kept: yes"), std::string::npos) << all;
  EXPECT_EQ(l.find("x-private"), std::string::npos) << all;
  EXPECT_EQ(l.find("keep-alive"), std::string::npos) << all;
  EXPECT_EQ(l.find("transfer-encoding"), std::string::npos) << all;
  EXPECT_NE(l.find("content-length: 2\r\n"), std::string::npos) << all;
  EXPECT_NE(l.find("connection: close"), std::string::npos) << all;
  EXPECT_TRUE(all.ends_with("\r\n\r\nok")) << all;
}

TEST(Http1Server, ResponseHopByHopStrippedAndConnectionCloseHonoured) {
  asio::io_context io;
  run_coroutine(io, [] { return response_close_body(); });
}

// --- response framing --------------------------------------------------------------------------

Response status_response(const Request& req) {
  Response r;
  r.status = std::stoi(std::string(req.head.target.substr(1)));
  r.body = "body!";
  if (r.status == 299) {
    r.status = 200;
    r.trailers = {{"grpc-status", "0"}};
  }
  return r;
}

awaitable<Response> status_handler(Request req) { co_return status_response(req); }

awaitable<void> framing_body() {
  ServerEnd end;
  auto client = co_await start([](Request r) { return status_handler(std::move(r)); }, end);
  std::string buf;
  // HEAD: Content-Length of the body a GET would get, no body bytes.
  co_await write_str(client, "HEAD /200 HTTP/1.1\r\nHost: svc\r\n\r\n");
  auto head = co_await read_message(client, buf, /*bodyless=*/true);
  EXPECT_TRUE(head.has("content-length: 5")) << head.head;
  // 204 and 304: neither body nor length.
  co_await write_str(client, "GET /204 HTTP/1.1\r\nHost: svc\r\n\r\n");
  auto no_content = co_await read_message(client, buf, true);
  EXPECT_EQ(no_content.first_word_after_version(), "204");
  EXPECT_FALSE(no_content.has("content-length")) << no_content.head;
  co_await write_str(client, "GET /304 HTTP/1.1\r\nHost: svc\r\n\r\n");
  auto not_modified = co_await read_message(client, buf, true);
  EXPECT_EQ(not_modified.first_word_after_version(), "304");
  // Trailers: chunked.
  co_await write_str(client, "GET /299 HTTP/1.1\r\nHost: svc\r\n\r\n");
  auto trailers = co_await read_message(client, buf);
  EXPECT_TRUE(trailers.has("transfer-encoding: chunked")) << trailers.head;
  EXPECT_EQ(trailers.body, "5\r\nbody!\r\n0\r\ngrpc-status: 0\r\n\r\n");
  // Nothing stray was sent: the next answer starts right after.
  co_await write_str(client, "GET /201 HTTP/1.1\r\nHost: svc\r\n\r\n");
  auto created = co_await read_message(client, buf);
  EXPECT_EQ(created.head.rfind("HTTP/1.1 201 Created", 0), 0u) << created.head;
  EXPECT_EQ(created.body, "body!");
  EXPECT_TRUE(buf.empty());
}

TEST(Http1Server, ResponseFramingHeadNoContentTrailers) {
  asio::io_context io;
  run_coroutine(io, [] { return framing_body(); });
}

// --- upgrade -------------------------------------------------------------------------------

awaitable<void> echo_relay(Duplex stream, std::string already_read) {
  if (!already_read.empty()) {
    if (co_await stream.write_all(asio::buffer(already_read))) co_return;
  }
  std::array<char, 1024> buf;
  for (;;) {
    auto [ec, n] = co_await stream.read_some(asio::buffer(buf));
    if (ec || n == 0) break;
    if (co_await stream.write_all(asio::buffer(buf.data(), n))) co_return;
  }
  co_await stream.shutdown_write();
}

Response upgrade_response() {
  Response r;
  r.status = 101;
  r.headers = {{"Upgrade", "websocket"}, {"Connection", "Upgrade"}};
  r.upgraded = [](Duplex d, std::string already) {
    return echo_relay(std::move(d), std::move(already));
  };
  return r;
}

awaitable<Response> upgrade_handler(std::shared_ptr<Recorder> rec, Request req) {
  {
    std::lock_guard lock(rec->mu);
    rec->seen.push_back(std::move(req));
  }
  co_return upgrade_response();
}

// The handler saw the upgrade request with Upgrade and Connection intact.
void check_upgrade_request(Recorder& rec) {
  ASSERT_EQ(rec.count(), 1u);
  const Request r = rec.at(0);
  EXPECT_EQ(http::find_header(r.head.headers, "upgrade").value_or(""), "websocket");
  EXPECT_EQ(http::find_header(r.head.headers, "connection").value_or(""), "Upgrade");
}

awaitable<void> upgrade_body() {
  auto rec = std::make_shared<Recorder>();
  ServerEnd end;
  RequestHandler handler = [rec](Request r) { return upgrade_handler(rec, std::move(r)); };
  auto client = co_await start(std::move(handler), end);
  // The first relayed bytes arrive with the request.
  co_await write_str(client,
                     "GET /ws HTTP/1.1\r\nHost: svc\r\nConnection: Upgrade\r\n"
                     "Upgrade: websocket\r\n\r\nearly-");
  std::string buf;
  auto head = co_await read_message(client, buf, true);
  EXPECT_EQ(head.head.rfind("HTTP/1.1 101 Switching Protocols", 0), 0u) << head.head;
  EXPECT_TRUE(head.has("upgrade: websocket"));
  EXPECT_TRUE(head.has("connection: upgrade"));
  co_await write_str(client, "ping");
  EXPECT_TRUE(co_await read_until(client, buf, "early-ping"));
  client.shutdown(tcp::socket::shutdown_send);
  std::string rest = co_await read_all(client, buf);
  EXPECT_EQ(rest, "early-ping");
  check_upgrade_request(*rec);
}

TEST(Http1Server, UpgradeRelaysBytesBothWays) {
  asio::io_context io;
  run_coroutine(io, [] { return upgrade_body(); });
}

// --- robustness ----------------------------------------------------------------------------

awaitable<void> eof_body(std::string partial) {
  auto rec = std::make_shared<Recorder>();
  ServerEnd end;
  auto client = co_await start(make_echo(rec), end);
  co_await write_str(client, std::move(partial));
  client.shutdown(tcp::socket::shutdown_send);
  std::string all = co_await read_all(client);
  EXPECT_TRUE(all.empty()) << all;
  EXPECT_EQ(rec->count(), 0u);
  EXPECT_TRUE(co_await closed_and_finished(client, end.finished));
}

TEST(Http1Server, PeerClosingMidRequestEndsQuietly) {
  for (const char* partial : {"", "GET / HT", "GET / HTTP/1.1\r\nHost: svc\r\n",
                              "POST / HTTP/1.1\r\nHost: s\r\n"
                              "Content-Length: 10\r\n\r\nabc",
                              "POST / HTTP/1.1\r\nHost: s\r\nTransfer-Encoding: "
                              "chunked\r\n\r\n5\r\nab"}) {
    asio::io_context io;
    run_coroutine(io, [p = std::string(partial)] { return eof_body(p); });
  }
}

// Mutated requests (fixed seed): whatever the bytes, the session answers or closes and ends.
awaitable<void> garbage_body(std::string bytes) {
  auto rec = std::make_shared<Recorder>();
  ServerEnd end;
  Limits limits;
  limits.max_header_bytes = 512;
  limits.max_body_bytes = 256;
  limits.max_headers = 8;
  auto client = co_await start(make_echo(rec), end, limits);
  co_await write_str(client, std::move(bytes));
  error_code ec;
  client.shutdown(tcp::socket::shutdown_send, ec);
  std::string all = co_await read_all(client);
  EXPECT_TRUE(all.empty() || all.starts_with("HTTP/1.1 ")) << all;
  EXPECT_TRUE(co_await closed_and_finished(client, end.finished));
}

TEST(Http1Server, MutatedInputNeverCrashes) {
  const std::string seeds[] = {
      "POST /a HTTP/1.1\r\nHost: s\r\nContent-Length: 3\r\n\r\nabc",
      "POST /a HTTP/1.1\r\nHost: s\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nt: "
      "1\r\n\r\n",
      "GET /ws HTTP/1.1\r\nHost: s\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\n",
      "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.1\r\nHost: s\r\n\r\n"};
  std::mt19937 rng(12345);
  const char alphabet[] = "\r\n :;0123456789abcdefABCDEF\t\x00\x7f\xff-,/";
  for (int i = 0; i < 200; ++i) {
    std::string bytes = seeds[static_cast<size_t>(i) % std::size(seeds)];
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits && !bytes.empty(); ++e) {
      const size_t pos = rng() % bytes.size();
      const char c = alphabet[rng() % (sizeof(alphabet) - 1)];
      switch (rng() % 3) {
        case 0:
          bytes[pos] = c;
          break;
        case 1:
          bytes.insert(pos, 1, c);
          break;
        default:
          bytes.erase(pos, 1 + rng() % 8);
          break;
      }
    }
    asio::io_context io;
    run_coroutine(io, [&] { return garbage_body(bytes); });
  }
}

awaitable<Response> throwing_handler(Request) {
  throw std::runtime_error("boom");
  co_return Response{};
}

// "/chunked": "pre-" then three pieces and trailers, no length; "/length": a declared
// Content-Length of 10, "01234" then "56789"; "/short": a declared 10 and only 5 bytes;
// "/broken": one piece, then the source fails.
awaitable<Response> streaming_handler(Request req) {
  Response r;
  r.status = 200;
  const std::string& t = req.head.target;
  if (t == "/chunked") {
    r.body = "pre-";
    r.source = std::make_shared<PiecesBody>(std::vector<std::string>{"a", "", "bb"},
                                            http::HeaderList{{"x-t", "1"}}, false);
  } else if (t == "/length" || t == "/short") {
    r.headers.push_back({"content-length", "10"});
    r.body = "01234";
    r.source = std::make_shared<PiecesBody>(
        t == "/length" ? std::vector<std::string>{"56789"} : std::vector<std::string>{},
        http::HeaderList{}, false);
  } else {
    r.body = "x";
    r.source =
        std::make_shared<PiecesBody>(std::vector<std::string>{"y"}, http::HeaderList{}, true);
  }
  co_return r;
}

// A streamed response is framed by its Content-Length, else chunked (with its trailers), or for
// HTTP/1.0 by the close; a body that breaks (its source fails, or it misses its length) cuts
// the connection, the only way HTTP/1.1 has to tell.
TEST(Http1Server, StreamedResponsesAreFramedAndABrokenBodyCutsTheConnection) {
  asio::io_context io;
  run_coroutine(io, [&]() -> awaitable<void> {
    ServerEnd end;
    auto client = co_await start(streaming_handler, end);
    std::string buf;
    co_await write_str(client, "GET /chunked HTTP/1.1\r\nHost: a\r\n\r\n");
    RawMessage m = co_await read_message(client, buf);
    EXPECT_TRUE(m.complete && m.has("transfer-encoding: chunked")) << m.head;
    EXPECT_EQ(m.body, "4\r\npre-\r\n1\r\na\r\n2\r\nbb\r\n0\r\nx-t: 1\r\n\r\n");
    co_await write_str(client, "GET /length HTTP/1.1\r\nHost: a\r\n\r\n");
    m = co_await read_message(client, buf);
    EXPECT_TRUE(m.complete && m.has("content-length: 10")) << m.head;
    EXPECT_FALSE(m.has("transfer-encoding"));
    EXPECT_EQ(m.body, "0123456789");
    // The connection served both; a broken body now cuts it after what was sent.
    co_await write_str(client, "GET /broken HTTP/1.1\r\nHost: a\r\n\r\n");
    // (The connection is reset: what was still in flight may be lost with it.)
    std::string rest = co_await read_all(client, buf);
    EXPECT_TRUE(rest.starts_with("HTTP/1.1 200 OK\r\n")) << rest;
    EXPECT_TRUE(rest.find("\r\n0\r\n") == std::string::npos) << "no last chunk: " << rest;
    EXPECT_TRUE(co_await closed_and_finished(client, end.finished));

    ServerEnd end2;
    auto client2 = co_await start(streaming_handler, end2);
    co_await write_str(client2, "GET /short HTTP/1.1\r\nHost: a\r\n\r\n");
    rest = co_await read_all(client2);
    EXPECT_TRUE(rest.starts_with("HTTP/1.1 200 OK\r\n")) << rest;
    EXPECT_TRUE(rest.find("56789") == std::string::npos) << rest;
    EXPECT_TRUE(co_await closed_and_finished(client2, end2.finished));

    ServerEnd end3;
    auto client3 = co_await start(streaming_handler, end3);
    co_await write_str(client3, "GET /chunked HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    rest = co_await read_all(client3);
    EXPECT_TRUE(lower(rest).find("connection: close") != std::string::npos) << rest;
    EXPECT_TRUE(rest.find("transfer-encoding") == std::string::npos) << rest;
    EXPECT_TRUE(rest.ends_with("\r\n\r\npre-abb")) << "delimited by the close: " << rest;
    EXPECT_TRUE(co_await closed_and_finished(client3, end3.finished));
  });
}

// "/read": reads the whole body and answers "<bytes in Request::body> <bytes from the source>
// <trailer x-t or -> <error or ok>"; "/ignore": answers at once without reading it.
awaitable<Response> body_reading_handler(Request req) {
  Response r;
  r.status = 200;
  if (req.head.target == "/ignore") {
    r.body = "ignored";
    co_return r;
  }
  size_t rest = 0;
  std::string error = "ok";
  http::HeaderList trailers = req.trailers;
  while (req.source) {
    auto piece = co_await req.source->next();
    rest += piece.data.size();
    if (piece.end) trailers = std::move(piece.trailers);
    if (!piece.error.empty()) error = "error";
    if (piece.end || !piece.error.empty()) req.source.reset();
  }
  r.body = fmt::format("{} {} {} {}", req.body.size(), rest,
                       http::find_header(trailers, "x-t").value_or("-"), error);
  co_return r;
}

// With Limits::stream_bodies_after, a request body past that size reaches the handler with what
// arrived in Request::body and the rest through Request::source, unbounded by max_body_bytes;
// the bytes after it (a pipelined request) are served next, on the same connection, unless the
// handler left the body unread: then the connection ends after the answer.
TEST(Http1Server, LongRequestBodiesStreamToTheHandler) {
  Limits limits;
  limits.stream_bodies_after = 1024;
  limits.max_body_bytes = 10'000;
  asio::io_context io;
  run_coroutine(io, [&]() -> awaitable<void> {
    ServerEnd end;
    auto client = co_await start(body_reading_handler, end, limits);
    const std::string body(100'000, 'b');
    std::string chunked;
    for (int i = 0; i < 10; ++i) chunked += fmt::format("2710\r\n{}\r\n", std::string(10'000, 'c'));
    chunked += "0\r\nx-t: 1\r\n\r\n";
    co_await write_str(client,
                       fmt::format("POST /read HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n{}"
                                   "POST /read HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: "
                                   "chunked\r\n\r\n{}GET /read HTTP/1.1\r\nHost: a\r\n\r\n",
                                   body.size(), body, chunked));
    std::string buf;
    RawMessage m = co_await read_message(client, buf);
    auto fields = [](const std::string& b) {
      std::vector<std::string> out;
      std::istringstream in(b);
      for (std::string f; in >> f;) out.push_back(f);
      return out;
    };
    auto f = fields(m.body);
    EXPECT_EQ(f.size(), 4u) << m.body;
    if (f.size() == 4) {
      EXPECT_GT(std::stoul(f[0]), 1024u);
      EXPECT_LT(std::stoul(f[0]), body.size()) << "the rest streamed";
      EXPECT_EQ(std::stoul(f[0]) + std::stoul(f[1]), body.size());
      EXPECT_EQ(f[3], "ok");
    }
    m = co_await read_message(client, buf);
    f = fields(m.body);
    EXPECT_EQ(f.size(), 4u) << m.body;
    if (f.size() == 4) {
      EXPECT_EQ(std::stoul(f[0]) + std::stoul(f[1]), 100'000u);
      EXPECT_EQ(f[2], "1") << "the trailers came at the end";
    }
    m = co_await read_message(client, buf);
    EXPECT_EQ(m.body, "0 0 - ok") << "the pipelined request after the bodies was served";
    EXPECT_FALSE(m.has("connection: close"));

    // A body the handler does not read: answered, then the connection ends.
    co_await write_str(client, fmt::format("POST /ignore HTTP/1.1\r\nHost: a\r\nContent-Length: "
                                           "{}\r\n\r\n{}",
                                           body.size(), body));
    m = co_await read_message(client, buf);
    EXPECT_EQ(m.body, "ignored");
    EXPECT_TRUE(m.has("connection: close")) << m.head;
    EXPECT_TRUE(co_await closed_and_finished(client, end.finished));
  });
}

TEST(Http1Server, HandlerExceptionIs500AndClose) {
  asio::io_context io;
  std::string all;
  run_coroutine(io, [&]() -> awaitable<void> {
    ServerEnd end;
    auto client = co_await start([](Request r) { return throwing_handler(std::move(r)); }, end);
    co_await write_str(client, "GET / HTTP/1.1\r\nHost: svc\r\n\r\n");
    all = co_await read_all(client);
  });
  EXPECT_EQ(all.rfind("HTTP/1.1 500 ", 0), 0u) << all;
}

TEST(Http1Server, AlreadyReadBytesParsedFirst) {
  asio::io_context io;
  auto rec = std::make_shared<Recorder>();
  std::string all;
  run_coroutine(io, [&]() -> awaitable<void> {
    auto pair = co_await socket_pair();
    auto ex = co_await asio::this_coro::executor;
    asio::co_spawn(ex,
                   serve_http1(Duplex::of_socket(std::move(pair.server)), "GET /sniffed HT", {},
                               make_echo(rec)),
                   asio::detached);
    co_await write_str(pair.client, "TP/1.1\r\nHost: svc\r\nConnection: close\r\n\r\n");
    all = co_await read_all(pair.client);
  });
  EXPECT_TRUE(all.ends_with("GET /sniffed 0")) << all;
}

// --- curl interop ----------------------------------------------------------------------------

// A serve_http1 listener on its own thread, for curl to talk to.
class CurlServer {
 public:
  CurlServer() : acceptor_(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
    asio::co_spawn(io_, accept_loop(), asio::detached);
    thread_ = std::thread([this] { io_.run(); });
  }
  ~CurlServer() {
    asio::post(io_, [this] {
      error_code ec;
      acceptor_.close(ec);
      io_.stop();
    });
    thread_.join();
  }
  uint16_t port() const { return acceptor_.local_endpoint().port(); }
  std::shared_ptr<Recorder> recorder() const { return rec_; }
  int connections() const { return connections_.load(); }

 private:
  awaitable<void> accept_loop() {
    for (;;) {
      auto [ec, socket] = co_await acceptor_.async_accept(kTuple);
      if (ec) co_return;
      ++connections_;
      asio::co_spawn(
          io_, serve_http1(Duplex::of_socket(std::move(socket)), "", limits_, make_echo(rec_)),
          asio::detached);
    }
  }

  asio::io_context io_;
  tcp::acceptor acceptor_;
  Limits limits_;
  std::shared_ptr<Recorder> rec_ = std::make_shared<Recorder>();
  std::atomic<int> connections_{0};
  std::thread thread_;
};

// Runs a shell command; returns its stdout.
std::string run(const std::string& cmd) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return out;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  pclose(p);
  return out;
}

std::string temp_file(const std::string& name, const std::string& content) {
  std::string path = ::testing::TempDir() + "/" + name + "-" + std::to_string(getpid());
  std::ofstream(path, std::ios::binary) << content;
  return path;
}

std::string pattern(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + (i * 7 + i / 1000) % 26);
  return s;
}

TEST(Http1ServerCurl, ChunkedUpload) {
  ASSERT_EQ(system("command -v curl >/dev/null 2>&1"), 0)
      << "curl is needed (scripts/setup.sh installs it)";
  CurlServer server;
  const std::string body = pattern(200 * 1000);
  const std::string file = temp_file("chunked", body);
  const std::string out =
      run("curl -s --http1.1 -H 'Transfer-Encoding: chunked' -H 'Expect:' --data-binary @" + file +
          " http://127.0.0.1:" + std::to_string(server.port()) + "/upload?x=1");
  EXPECT_EQ(out, "POST /upload?x=1 200000");
  auto rec = server.recorder();
  ASSERT_EQ(rec->count(), 1u);
  auto r = rec->at(0);
  EXPECT_EQ(r.body, body);
  EXPECT_EQ(r.head.authority, "127.0.0.1:" + std::to_string(server.port()));
  EXPECT_TRUE(
      iequals(http::find_header(r.head.headers, "transfer-encoding").value_or(""), "chunked"));
  std::remove(file.c_str());
}

TEST(Http1ServerCurl, ExpectContinueLargeBody) {
  ASSERT_EQ(system("command -v curl >/dev/null 2>&1"), 0)
      << "curl is needed (scripts/setup.sh installs it)";
  CurlServer server;
  const std::string body = pattern(3 * 1024 * 1024);
  const std::string file = temp_file("expect", body);
  // --expect100-timeout makes curl wait long for our 100 instead of sending after 1 s.
  const std::string out =
      run("curl -sv --http1.1 --expect100-timeout 30 -H 'Expect: 100-continue' -w ' %{http_code}' "
          "--data-binary @" +
          file + " http://127.0.0.1:" + std::to_string(server.port()) + "/big 2>&1");
  // curl's trace: it sent the Expect, got our 100, then the final answer.
  EXPECT_NE(out.find("> Expect: 100-continue"), std::string::npos) << out;
  EXPECT_NE(out.find("< HTTP/1.1 100 Continue"), std::string::npos) << out;
  EXPECT_NE(out.find("POST /big 3145728 200"), std::string::npos) << out;
  auto rec = server.recorder();
  ASSERT_EQ(rec->count(), 1u);
  auto r = rec->at(0);
  EXPECT_EQ(r.body, body);
  EXPECT_FALSE(http::find_header(r.head.headers, "expect").has_value());
  std::remove(file.c_str());
}

TEST(Http1ServerCurl, KeepAliveReusesConnection) {
  ASSERT_EQ(system("command -v curl >/dev/null 2>&1"), 0)
      << "curl is needed (scripts/setup.sh installs it)";
  CurlServer server;
  const std::string base = "http://127.0.0.1:" + std::to_string(server.port());
  const std::string out = run("curl -s --http1.1 " + base + "/one " + base + "/two -I " +
                              " 2>&1; echo; curl -s "
                              "--http1.0 " +
                              base + "/three");
  // -I makes both HEAD requests.
  EXPECT_NE(out.find("HTTP/1.1 200 OK"), std::string::npos) << out;
  EXPECT_NE(out.find("GET /three 0"), std::string::npos) << out;
  auto rec = server.recorder();
  ASSERT_EQ(rec->count(), 3u);
  EXPECT_EQ(rec->at(0).head.method, "HEAD");
  EXPECT_EQ(rec->at(1).head.target, "/two");
  EXPECT_EQ(rec->at(2).version, HttpVersion::kHttp10);
  EXPECT_EQ(server.connections(), 2);  // /one and /two shared one connection
}

}  // namespace
}  // namespace zt::waypoint::http1::testing
