// Loopback plumbing for the HTTP/1.1 codec tests: connected socket pairs on 127.0.0.1 (port 0),
// raw reads of HTTP messages, a recording request handler, and a body given piece by piece.
#pragma once

#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "common/async/asio.h"
#include "waypoint/http1/http1.h"

namespace zt::waypoint::http1::testing {

struct SocketPair {
  tcp::socket client;
  tcp::socket server;
};

// A connected TCP pair over 127.0.0.1.
inline awaitable<SocketPair> socket_pair() {
  auto ex = co_await asio::this_coro::executor;
  tcp::acceptor acceptor(ex, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  tcp::socket client(ex);
  co_await client.async_connect(acceptor.local_endpoint(), asio::use_awaitable);
  tcp::socket server = co_await acceptor.async_accept(asio::use_awaitable);
  co_return SocketPair{std::move(client), std::move(server)};
}

inline awaitable<void> write_str(tcp::socket& s, std::string data) {
  auto [ec, n] = co_await asio::async_write(s, asio::buffer(data), kTuple);
  EXPECT_FALSE(ec) << ec.message();
}

// Reads until `buffer` holds `needle` (true) or the stream ends (false).
inline awaitable<bool> read_until(tcp::socket& s, std::string& buffer, std::string_view needle) {
  for (;;) {
    if (buffer.find(needle) != std::string::npos) co_return true;
    char chunk[4096];
    auto [ec, n] = co_await s.async_read_some(asio::buffer(chunk), kTuple);
    buffer.append(chunk, n);
    if (ec && n == 0) co_return buffer.find(needle) != std::string::npos;
  }
}

// Reads until the peer closes; returns everything.
inline awaitable<std::string> read_all(tcp::socket& s, std::string buffer = {}) {
  for (;;) {
    char chunk[4096];
    auto [ec, n] = co_await s.async_read_some(asio::buffer(chunk), kTuple);
    buffer.append(chunk, n);
    if (ec && n == 0) co_return buffer;
  }
}

inline std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

struct RawMessage {
  std::string head;  // start line + fields, without the blank line
  std::string body;
  bool complete = false;

  // "200" from "HTTP/1.1 200 OK"; "POST" from a request line.
  std::string first_word_after_version() const {
    const size_t sp = head.find(' ');
    return head.substr(sp + 1, 3);
  }
  bool has(std::string_view field_line) const {
    return lower(head).find(lower(std::string(field_line))) != std::string::npos;
  }
};

// Reads one message (head, then a Content-Length or chunked body; `bodyless` for HEAD
// answers and 1xx/204/304) from `s`, keeping extra bytes in `buffer`.
inline awaitable<RawMessage> read_message(tcp::socket& s, std::string& buffer,
                                          bool bodyless = false) {
  RawMessage m;
  if (!co_await read_until(s, buffer, "\r\n\r\n")) co_return m;
  const size_t end = buffer.find("\r\n\r\n");
  m.head = buffer.substr(0, end);
  buffer.erase(0, end + 4);
  const std::string lh = lower(m.head);
  if (bodyless) {
    m.complete = true;
    co_return m;
  }
  if (lh.find("transfer-encoding: chunked") != std::string::npos) {
    // Raw chunked body, until the last chunk and the end of trailers.
    if (!co_await read_until(s, buffer, "0\r\n")) co_return m;
    if (!co_await read_until(s, buffer, "\r\n\r\n")) co_return m;
    const size_t e = buffer.find("\r\n\r\n", buffer.find("0\r\n"));
    if (e == std::string::npos) co_return m;
    m.body = buffer.substr(0, e + 4);
    buffer.erase(0, e + 4);
    m.complete = true;
    co_return m;
  }
  size_t length = 0;
  if (auto p = lh.find("content-length: "); p != std::string::npos) {
    length = std::strtoul(lh.c_str() + p + 16, nullptr, 10);
  }
  while (buffer.size() < length) {
    char chunk[4096];
    auto [ec, n] = co_await s.async_read_some(asio::buffer(chunk), kTuple);
    buffer.append(chunk, n);
    if (ec && n == 0) co_return m;
  }
  m.body = buffer.substr(0, length);
  buffer.erase(0, length);
  m.complete = true;
  co_return m;
}

// Requests the handler saw (the handler may run on another thread in the curl tests).
struct Recorder {
  std::mutex mu;
  std::vector<Request> seen;

  size_t count() {
    std::lock_guard lock(mu);
    return seen.size();
  }
  Request at(size_t i) {
    std::lock_guard lock(mu);
    return seen.at(i);
  }
};

// 200 with body "<method> <target> <body size>" and an x-seen header with the call count.
inline awaitable<Response> echo_handler(std::shared_ptr<Recorder> rec, Request req) {
  Response res;
  res.status = 200;
  std::string body =
      req.head.method + " " + req.head.target + " " + std::to_string(req.body.size());
  size_t n = 0;
  {
    std::lock_guard lock(rec->mu);
    rec->seen.push_back(std::move(req));
    n = rec->seen.size();
  }
  res.headers.push_back({"x-seen", std::to_string(n)});
  res.body = std::move(body);
  co_return res;
}

inline RequestHandler make_echo(std::shared_ptr<Recorder> rec) {
  return [rec](Request req) { return echo_handler(rec, std::move(req)); };
}

// A message body given piece by piece (Request::source, Response::source), then its end with
// `trailers`, or, with `fail`, an error after the pieces.
class PiecesBody final : public BodySource {
 public:
  PiecesBody(std::vector<std::string> pieces, http::HeaderList trailers, bool fail = false)
      : pieces_(std::move(pieces)), trailers_(std::move(trailers)), fail_(fail) {}
  awaitable<Piece> next() override {
    Piece p;
    if (next_ < pieces_.size()) {
      p.data = pieces_[next_++];
    } else if (fail_) {
      p.error = "upstream broke";
    } else {
      p.end = true;
      p.trailers = trailers_;
    }
    co_return p;
  }

 private:
  std::vector<std::string> pieces_;
  http::HeaderList trailers_;
  bool fail_;
  size_t next_ = 0;
};

}  // namespace zt::waypoint::http1::testing
