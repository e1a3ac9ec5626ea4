// Http1Client against scripted raw-socket servers on loopback: each test reads the request the
// client wrote and answers with exact bytes.
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "tests/integration/waypoint_http1/test_util.h"
#include "tests/support/coro.h"
#include "waypoint/http1/http1.h"

namespace zt::waypoint::http1::testing {
namespace {

using zt::testing::run_coroutine;

Request make_request(std::string method, std::string target, std::string body = {}) {
  Request r;
  r.head.method = std::move(method);
  r.head.target = std::move(target);
  r.head.authority = "backend:8080";
  r.head.headers = {{"x-request-id", "abc"}, {"Host", "ignored"}};
  r.body = std::move(body);
  return r;
}

// What one scripted exchange produced.
struct Exchange {
  std::vector<RawMessage> requests;  // as the server read them
  std::vector<Result<Response>> responses;
  std::vector<bool> reusable;
  std::string already_read;
  // Per response that came streamed (Response::source): what came in Response::body, whether
  // the client was reusable before its body was read, and how its body ended ("" or the error).
  std::vector<size_t> streamed_prefix;
  std::vector<bool> reusable_mid_body;
  std::vector<std::string> body_errors;
};

// The client sends `requests` one after another on one connection; the server reads each
// request and writes the matching `answers` entry (then closes after the last when
// `close_after`).
awaitable<void> scripted_server(tcp::socket s, std::vector<std::string> answers,
                                std::shared_ptr<Exchange> ex, bool close_after) {
  std::string buf;
  for (auto& answer : answers) {
    auto req = co_await read_message(s, buf);
    ex->requests.push_back(req);
    if (!req.complete) co_return;
    co_await write_str(s, answer);
  }
  if (close_after) {
    error_code ec;
    s.shutdown(tcp::socket::shutdown_send, ec);
    co_await read_all(s);
  } else {
    co_await read_all(s);  // until the client goes away
  }
}

awaitable<void> exchange_body(std::vector<Request> requests, std::vector<std::string> answers,
                              std::shared_ptr<Exchange> ex, Limits limits, bool close_after) {
  auto pair = co_await socket_pair();
  auto exec = co_await asio::this_coro::executor;
  asio::co_spawn(exec, scripted_server(std::move(pair.server), answers, ex, close_after),
                 asio::detached);
  Http1Client client(Duplex::of_socket(std::move(pair.client)), limits);
  for (const auto& r : requests) {
    auto res = co_await client.send(r);
    if (res && res->source) {
      ex->streamed_prefix.push_back(res->body.size());
      ex->reusable_mid_body.push_back(client.reusable());
      std::string error;
      while (res->source) {
        auto piece = co_await res->source->next();
        res->body += piece.data;
        if (piece.end) res->trailers = std::move(piece.trailers);
        error = piece.error;
        if (piece.end || !piece.error.empty()) res->source.reset();
      }
      ex->body_errors.push_back(error);
    }
    ex->responses.push_back(std::move(res));
    ex->reusable.push_back(client.reusable());
    if (!ex->responses.back()) break;
  }
  ex->already_read = client.take_already_read();
  client.abort();
}

std::shared_ptr<Exchange> run_exchange(std::vector<Request> requests,
                                       std::vector<std::string> answers, Limits limits = {},
                                       bool close_after = false) {
  asio::io_context io;
  auto ex = std::make_shared<Exchange>();
  run_coroutine(io, [&] { return exchange_body(requests, answers, ex, limits, close_after); });
  return ex;
}

TEST(Http1Client, ContentLengthResponse) {
  auto ex = run_exchange({make_request("POST", "/items?id=1", "abc")},
                         {"HTTP/1.1 201 Created\r\nContent-Length: 5\r\nX-Up: 1\r\n\r\nhello"});
  ASSERT_EQ(ex->requests.size(), 1u);
  const auto& wire = ex->requests[0];
  EXPECT_EQ(wire.head.rfind("POST /items?id=1 HTTP/1.1\r\n", 0), 0u) << wire.head;
  EXPECT_TRUE(wire.has("host: backend:8080"));
  EXPECT_FALSE(wire.has("ignored"));
  EXPECT_TRUE(wire.has("x-request-id: abc"));
  EXPECT_TRUE(wire.has("content-length: 3"));
  EXPECT_EQ(wire.body, "abc");
  ASSERT_EQ(ex->responses.size(), 1u);
  ASSERT_TRUE(ex->responses[0]) << ex->responses[0].error().describe();
  const auto& res = *ex->responses[0];
  EXPECT_EQ(res.status, 201);
  EXPECT_EQ(res.body, "hello");
  EXPECT_EQ(http::find_header(res.headers, "x-up"), "1");
  EXPECT_TRUE(ex->reusable[0]);
}

TEST(Http1Client, ChunkedResponseWithTrailers) {
  auto ex = run_exchange({make_request("GET", "/grpc")},
                         {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                          "4\r\nwiki\r\n5;x=y\r\npedia\r\n0\r\ngrpc-status: 0\r\n"
                          "grpc-message: fine\r\n\r\n"});
  ASSERT_EQ(ex->responses.size(), 1u);
  ASSERT_TRUE(ex->responses[0]) << ex->responses[0].error().describe();
  const auto& res = *ex->responses[0];
  EXPECT_EQ(res.body, "wikipedia");
  ASSERT_EQ(res.trailers.size(), 2u);
  EXPECT_EQ(res.trailers[0], (http::Header{"grpc-status", "0"}));
  EXPECT_EQ(res.trailers[1], (http::Header{"grpc-message", "fine"}));
  EXPECT_FALSE(http::find_header(res.headers, "transfer-encoding").has_value());
  EXPECT_TRUE(ex->reusable[0]);
  // A GET without a body has no framing header.
  EXPECT_FALSE(ex->requests[0].has("content-length"));
}

// With Request::stream_response_after, a body past that size is answered at once and read from
// the connection as it is pulled, not bounded by max_body_bytes; the connection is busy until
// the body has ended, then serves the next request.
TEST(Http1Client, ALongBodyStreamsAndTheConnectionServesAgainAfterItsEnd) {
  constexpr size_t kAfter = 64 * 1024;
  const std::string first(300'000, 'x');
  const std::string second(200'000, 'y');
  std::string chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (size_t at = 0; at < second.size(); at += 50'000) {
    chunked += fmt::format("{:x}\r\n{}\r\n", 50'000, second.substr(at, 50'000));
  }
  chunked += "0\r\nx-sum: 2\r\n\r\n";
  auto a = make_request("GET", "/first");
  a.stream_response_after = kAfter;
  auto b = make_request("GET", "/second");
  b.stream_response_after = kAfter;
  auto small = make_request("GET", "/small");
  small.stream_response_after = kAfter;
  Limits limits;
  limits.max_body_bytes = 100'000;  // less than either body
  auto ex = run_exchange(
      {a, b, small},
      {fmt::format("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{}", first.size(), first), chunked,
       "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nsmall"},
      limits);
  ASSERT_EQ(ex->requests.size(), 3u) << "the connection served each request in turn";
  ASSERT_EQ(ex->responses.size(), 3u);
  for (const auto& r : ex->responses) ASSERT_TRUE(r) << r.error().describe();
  EXPECT_EQ(ex->responses[0]->body, first);
  EXPECT_EQ(ex->responses[1]->body, second);
  EXPECT_EQ(http::find_header(ex->responses[1]->trailers, "x-sum"), "2");
  EXPECT_EQ(ex->responses[2]->body, "small");
  ASSERT_EQ(ex->streamed_prefix.size(), 2u) << "only the long bodies streamed";
  for (size_t prefix : ex->streamed_prefix) {
    EXPECT_GT(prefix, kAfter);
    EXPECT_LE(prefix, kAfter + 64 * 1024) << "at most one more read is buffered";
  }
  EXPECT_EQ(ex->reusable_mid_body, (std::vector<bool>{false, false}));
  EXPECT_EQ(ex->body_errors, (std::vector<std::string>{"", ""}));
  EXPECT_EQ(ex->reusable, (std::vector<bool>{true, true, true}));
}

// A server for one request: an event stream's head and first event, then, once `release` is
// cancelled, the second event and the end.
awaitable<void> events_then_end(tcp::socket& s, asio::steady_timer& release) {
  std::string buf;
  co_await read_message(s, buf);
  co_await write_str(s,
                     "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                     "Transfer-Encoding: chunked\r\n\r\n7\r\nevent 1\r\n");
  co_await release.async_wait(kTuple);  // until the client has the first event
  co_await write_str(s, "7\r\nevent 2\r\n0\r\n\r\n");
}

// A server that answers a request's head at once with 413 and its close, then reads nothing.
awaitable<void> answer_413_then_read_nothing(tcp::socket& s) {
  std::string buf;
  co_await read_until(s, buf, "\r\n\r\n");
  co_await write_str(s,
                     "HTTP/1.1 413 Payload Too Large\r\nContent-Length: 8\r\n"
                     "Connection: close\r\n\r\ntoo long");
  error_code ec;
  s.shutdown(tcp::socket::shutdown_send, ec);
}

// With Limits::stream_late_bodies_after, an answer whose body is still coming that long after
// its head (server-sent events) is answered then, whatever its size; its body streams.
TEST(Http1Client, AnAnswerWhoseBodyIsLateStreamsWhateverItsSize) {
  asio::io_context io;
  run_coroutine(io, [&]() -> awaitable<void> {
    auto pair = co_await socket_pair();
    auto ex = co_await asio::this_coro::executor;
    asio::steady_timer release(ex, std::chrono::seconds(30));
    // (A function, not a capturing lambda: its frame must not refer to a closure that is gone.)
    asio::co_spawn(ex, events_then_end(pair.server, release), asio::detached);
    Limits limits;
    limits.stream_late_bodies_after = std::chrono::milliseconds(20);
    Http1Client client(Duplex::of_socket(std::move(pair.client)), limits);
    auto req = make_request("GET", "/events");
    req.stream_response_after = 64 * 1024;
    auto res = co_await client.send(req);
    EXPECT_TRUE(res && res->source) << (res ? "buffered" : res.error().describe());
    if (!res || !res->source) co_return;
    std::string got = res->body;
    while (got.size() < 7) {
      auto piece = co_await res->source->next();
      got += piece.data;
      if (piece.end || !piece.error.empty()) break;
    }
    EXPECT_EQ(got, "event 1") << "the first event comes before the body ends";
    release.cancel();
    for (;;) {
      auto piece = co_await res->source->next();
      got += piece.data;
      if (piece.end || !piece.error.empty()) break;
    }
    EXPECT_EQ(got, "event 1event 2");
    EXPECT_TRUE(client.reusable());
    client.abort();
  });
}

TEST(Http1Client, AStreamedBodyCutShortIsAnError) {
  auto req = make_request("GET", "/cut");
  req.stream_response_after = 1024;
  auto ex = run_exchange(
      {req}, {"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + std::string(10'000, 'z')}, {},
      /*close_after=*/true);
  ASSERT_EQ(ex->responses.size(), 1u);
  ASSERT_TRUE(ex->responses[0]) << ex->responses[0].error().describe();
  EXPECT_EQ(ex->responses[0]->body.size(), 10'000u);
  EXPECT_EQ(ex->body_errors, (std::vector<std::string>{"upstream connection closed in mid-body"}));
  EXPECT_FALSE(ex->reusable[0]);
}

// A streamed request body (Request::source) goes out after Request::body: raw under the
// Content-Length it declared, else chunked with its trailers; one that breaks its declared
// length is not sent as whole.
TEST(Http1Client, AStreamedRequestBodyIsSentAsItComes) {
  auto with_length = make_request("POST", "/len", "head-");
  with_length.head.headers.push_back({"content-length", "13"});
  with_length.source = std::make_shared<PiecesBody>(std::vector<std::string>{"ab", "", "cdefgh"},
                                                    http::HeaderList{}, false);
  auto chunked = make_request("POST", "/chunked", "head-");
  chunked.source = std::make_shared<PiecesBody>(std::vector<std::string>{"ab", "cd"},
                                                http::HeaderList{{"x-t", "1"}});
  auto ex = run_exchange({with_length, chunked}, {"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na",
                                                  "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb"});
  ASSERT_EQ(ex->requests.size(), 2u);
  EXPECT_TRUE(ex->requests[0].has("content-length: 13")) << ex->requests[0].head;
  EXPECT_EQ(ex->requests[0].body, "head-abcdefgh");
  EXPECT_TRUE(ex->requests[1].has("transfer-encoding: chunked")) << ex->requests[1].head;
  EXPECT_EQ(ex->requests[1].body, "5\r\nhead-\r\n2\r\nab\r\n2\r\ncd\r\n0\r\nx-t: 1\r\n\r\n");
  ASSERT_EQ(ex->responses.size(), 2u);
  EXPECT_TRUE(ex->responses[1] && ex->responses[1]->body == "b");

  // One body, under a declared Content-Length, then `rest` from the source.
  const auto with_declared = [](std::string body, std::string length, std::string rest) {
    auto r = make_request("POST", "/len", std::move(body));
    r.head.headers.push_back({"content-length", std::move(length)});
    r.source =
        std::make_shared<PiecesBody>(std::vector<std::string>{std::move(rest)}, http::HeaderList{});
    return run_exchange({r}, {"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na"});
  };
  ex = with_declared("head-", "6", "ab");
  ASSERT_EQ(ex->responses.size(), 1u);
  EXPECT_FALSE(ex->responses[0]);
  EXPECT_FALSE(ex->reusable[0]);

  // A Content-Length its first bytes already pass (a header filter may have set it): nothing
  // is sent, or the rest would be read upstream as another request.
  ex = with_declared("head-and-more", "4", "GET /x HTTP/1.1");
  ASSERT_EQ(ex->responses.size(), 1u);
  EXPECT_FALSE(ex->responses[0]);
  EXPECT_TRUE(ex->requests.empty() || ex->requests[0].head.empty()) << ex->requests[0].head;
}

// An upstream that answers before a streamed body's end and then takes no more of it (a 413
// for an upload too large): its answer is returned once the body's write gives up, and the
// connection is not used again.
TEST(Http1Client, AnAnswerBeforeTheEndOfAStreamedBodyIsReturned) {
  asio::io_context io;
  run_coroutine(io, [&]() -> awaitable<void> {
    auto pair = co_await socket_pair();
    asio::co_spawn(co_await asio::this_coro::executor, answer_413_then_read_nothing(pair.server),
                   asio::detached);
    Limits limits;
    limits.stream_idle_timeout = std::chrono::milliseconds(300);
    Http1Client client(Duplex::of_socket(std::move(pair.client)), limits);
    auto req = make_request("POST", "/upload");
    req.head.headers.push_back({"content-length", std::to_string(400 * 65536)});
    req.source = std::make_shared<PiecesBody>(
        std::vector<std::string>(400, std::string(65536, 'u')), http::HeaderList{});
    auto res = co_await client.send(req);
    EXPECT_TRUE(res) << res.error().describe();
    if (res) {
      EXPECT_EQ(res->status, 413);
      EXPECT_EQ(res->body, "too long");
    }
    EXPECT_FALSE(client.reusable());
    client.abort();
  });
}

TEST(Http1Client, RequestWithTrailersIsChunked) {
  auto req = make_request("POST", "/t", "payload");
  req.trailers = {{"x-sum", "9"}};
  auto ex = run_exchange({req}, {"HTTP/1.1 204 No Content\r\n\r\n"});
  ASSERT_EQ(ex->requests.size(), 1u);
  EXPECT_TRUE(ex->requests[0].has("transfer-encoding: chunked"));
  EXPECT_EQ(ex->requests[0].body, "7\r\npayload\r\n0\r\nx-sum: 9\r\n\r\n");
  ASSERT_TRUE(ex->responses[0]);
  EXPECT_EQ(ex->responses[0]->status, 204);
  EXPECT_TRUE(ex->reusable[0]);
}

TEST(Http1Client, CloseDelimitedResponse) {
  auto ex = run_exchange({make_request("GET", "/")}, {"HTTP/1.1 200 OK\r\n\r\nuntil the end"}, {},
                         /*close_after=*/true);
  ASSERT_EQ(ex->responses.size(), 1u);
  ASSERT_TRUE(ex->responses[0]) << ex->responses[0].error().describe();
  EXPECT_EQ(ex->responses[0]->body, "until the end");
  EXPECT_FALSE(ex->reusable[0]);
}

TEST(Http1Client, InterimResponsesSkipped) {
  auto ex = run_exchange({make_request("PUT", "/x", "data")},
                         {"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n"
                          "\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"});
  ASSERT_TRUE(ex->responses[0]) << ex->responses[0].error().describe();
  EXPECT_EQ(ex->responses[0]->status, 200);
  EXPECT_EQ(ex->responses[0]->body, "ok");
  EXPECT_FALSE(http::find_header(ex->responses[0]->headers, "link").has_value());
  EXPECT_TRUE(ex->reusable[0]);
}

TEST(Http1Client, KeepAliveReuse) {
  auto ex = run_exchange(
      {make_request("GET", "/1"), make_request("GET", "/2"), make_request("HEAD", "/3")},
      {"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na",
       "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nbb",
       "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"});
  ASSERT_EQ(ex->responses.size(), 3u);
  ASSERT_EQ(ex->requests.size(), 3u);
  EXPECT_EQ(ex->requests[1].head.rfind("GET /2 ", 0), 0u);
  EXPECT_EQ(ex->responses[0]->body, "a");
  EXPECT_EQ(ex->responses[1]->body, "bb");
  ASSERT_TRUE(ex->responses[2]) << ex->responses[2].error().describe();
  EXPECT_EQ(ex->responses[2]->body, "");  // HEAD: no body despite the length
  EXPECT_EQ(http::find_header(ex->responses[2]->headers, "content-length"), "10");
  EXPECT_TRUE(ex->reusable[0] && ex->reusable[1] && ex->reusable[2]);
}

TEST(Http1Client, ConnectionCloseResponseNotReusable) {
  auto ex = run_exchange({make_request("GET", "/")},
                         {"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"});
  ASSERT_TRUE(ex->responses[0]);
  EXPECT_FALSE(ex->reusable[0]);
  auto ex10 =
      run_exchange({make_request("GET", "/")}, {"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"});
  ASSERT_TRUE(ex10->responses[0]);
  EXPECT_FALSE(ex10->reusable[0]);
}

TEST(Http1Client, ServerClosesMidResponse) {
  auto ex = run_exchange({make_request("GET", "/")},
                         {"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly a part"}, {},
                         /*close_after=*/true);
  ASSERT_EQ(ex->responses.size(), 1u);
  ASSERT_FALSE(ex->responses[0]);
  EXPECT_NE(ex->responses[0].error().message.find("upstream connection closed"), std::string::npos);
  EXPECT_FALSE(ex->reusable[0]);
  // Closed inside the head, and before any byte.
  for (std::string answer : {"HTTP/1.1 200 OK\r\nContent-Le", ""}) {
    auto e = run_exchange({make_request("GET", "/")}, {answer}, {}, true);
    ASSERT_FALSE(e->responses[0]);
    EXPECT_FALSE(e->reusable[0]);
  }
}

TEST(Http1Client, SecondSendAfterErrorFails) {
  auto ex = run_exchange({make_request("GET", "/"), make_request("GET", "/again")},
                         {"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab"}, {}, true);
  ASSERT_EQ(ex->responses.size(), 1u);  // the loop stops at the first error
  EXPECT_FALSE(ex->reusable[0]);
}

TEST(Http1Client, OversizedResponseIsError) {
  Limits limits;
  limits.max_body_bytes = 10;
  auto ex = run_exchange({make_request("GET", "/")},
                         {"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n01234567890"}, limits);
  ASSERT_FALSE(ex->responses[0]);
  EXPECT_NE(ex->responses[0].error().message.find("too large"), std::string::npos);
  EXPECT_FALSE(ex->reusable[0]);
  auto chunked = run_exchange({make_request("GET", "/")},
                              {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                               "8\r\n01234567\r\n8\r\n01234567\r\n0\r\n\r\n"},
                              limits);
  ASSERT_FALSE(chunked->responses[0]);
  EXPECT_FALSE(chunked->reusable[0]);
  Limits head_limits;
  head_limits.max_header_bytes = 256;
  auto head = run_exchange(
      {make_request("GET", "/")},
      {"HTTP/1.1 200 OK\r\nx-big: " + std::string(1000, 'x') + "\r\nContent-Length: 0\r\n\r\n"},
      head_limits);
  ASSERT_FALSE(head->responses[0]);
  EXPECT_NE(head->responses[0].error().message.find("too large"), std::string::npos);
}

TEST(Http1Client, MalformedResponseIsError) {
  for (std::string answer :
       {"HTTP/1.1 2000 OK\r\n\r\n", "SMTP ready\r\n\r\n",
        "HTTP/1.1 050 OK\r\nContent-Length: 0\r\n\r\n", "HTTP/1.1 000 OK\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"}) {
    auto ex = run_exchange({make_request("GET", "/")}, {answer});
    ASSERT_EQ(ex->responses.size(), 1u);
    EXPECT_FALSE(ex->responses[0]) << answer;
    EXPECT_FALSE(ex->reusable[0]);
  }
}

TEST(Http1Client, AStatusBelow100IsAMalformedResponse) {
  auto ex = run_exchange({make_request("GET", "/")}, {"HTTP/1.1 050 OK\r\n\r\n"});
  ASSERT_EQ(ex->responses.size(), 1u);
  ASSERT_FALSE(ex->responses[0]);
  EXPECT_NE(ex->responses[0].error().message.find("status 050"), std::string::npos)
      << ex->responses[0].error().message;
  EXPECT_FALSE(ex->reusable[0]);
}

TEST(Http1Client, SwitchingProtocolsKeepsBytesAfterHead) {
  auto req = make_request("GET", "/ws");
  req.head.headers.push_back({"Connection", "Upgrade"});
  req.head.headers.push_back({"Upgrade", "websocket"});
  auto ex = run_exchange({req}, {"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                 "Connection: Upgrade\r\n\r\nframe-bytes"});
  ASSERT_TRUE(ex->requests[0].has("upgrade: websocket"));
  ASSERT_TRUE(ex->responses[0]) << ex->responses[0].error().describe();
  EXPECT_EQ(ex->responses[0]->status, 101);
  EXPECT_FALSE(ex->reusable[0]);
  EXPECT_EQ(ex->already_read, "frame-bytes");
}

TEST(Http1Client, InvalidRequestRefusedBeforeWriting) {
  auto bad = make_request("GET", "/a b");
  auto ex = run_exchange({bad}, {"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"});
  ASSERT_FALSE(ex->responses[0]);
  EXPECT_FALSE(ex->reusable[0]);
}

}  // namespace
}  // namespace zt::waypoint::http1::testing
