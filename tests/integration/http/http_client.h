// Test-only HTTP/1.1 client and a helper that runs one coroutine on an io_context until it
// finishes. Every client step has a deadline, so a broken server fails the test instead of
// hanging it. Client errors are exceptions here: they fail the test with their message.
#pragma once

#include <array>
#include <chrono>
#include <future>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "common/async/asio.h"

namespace zt::http::testing {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using HttpResponse = bhttp::response<bhttp::string_body>;

inline constexpr std::chrono::seconds kClientDeadline{5};

// Runs `task` on `ioc` (single thread, the caller's) until it completes; rethrows what it threw.
// Throws if it has not finished within `limit`.
template <class T>
T run_until_done(asio::io_context& ioc, awaitable<T> task,
                 std::chrono::steady_clock::duration limit = std::chrono::seconds(20)) {
  auto done = asio::co_spawn(ioc, std::move(task), asio::use_future);
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (done.wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
    if (std::chrono::steady_clock::now() > deadline) {
      throw std::runtime_error("test task did not finish in time");
    }
    if (ioc.stopped()) ioc.restart();
    ioc.run_one_for(std::chrono::milliseconds(100));
  }
  return done.get();
}

class Client {
 public:
  static awaitable<Client> connect(tcp::endpoint endpoint) {
    Client c(co_await asio::this_coro::executor);
    c.stream_.expires_after(kClientDeadline);
    co_await c.stream_.async_connect(endpoint, asio::use_awaitable);
    co_return c;
  }

  static std::string format(std::string_view method, std::string_view target,
                            std::string_view body = {},
                            const std::vector<std::pair<std::string, std::string>>& headers = {}) {
    std::string raw;
    raw.append(method).append(" ").append(target).append(" HTTP/1.1\r\nHost: test\r\n");
    for (const auto& [k, v] : headers) raw.append(k).append(": ").append(v).append("\r\n");
    if (!body.empty() || method == "POST") {
      raw.append("Content-Length: ").append(std::to_string(body.size())).append("\r\n");
    }
    raw.append("\r\n").append(body);
    return raw;
  }

  awaitable<void> write(std::string_view raw) {
    stream_.expires_after(kClientDeadline);
    co_await asio::async_write(stream_, asio::buffer(raw), asio::use_awaitable);
  }

  awaitable<HttpResponse> read_response() {
    HttpResponse res;
    stream_.expires_after(kClientDeadline);
    co_await bhttp::async_read(stream_, buffer_, res, asio::use_awaitable);
    co_return res;
  }

  awaitable<HttpResponse> request(std::string_view method, std::string_view target,
                                  std::string_view body = {}) {
    co_await write(format(method, target, body));
    co_return co_await read_response();
  }

  // Reads (and drops) until the connection ends; returns how it ended (eof: closed by the
  // server). Throws when nothing happens within `deadline`.
  awaitable<error_code> wait_closed(
      std::chrono::steady_clock::duration deadline = kClientDeadline) {
    stream_.expires_after(deadline);
    std::array<char, 1024> scratch;
    for (;;) {
      auto [ec, n] = co_await stream_.async_read_some(asio::buffer(scratch), kTuple);
      if (ec == beast::error::timeout) throw std::runtime_error("server did not close");
      if (ec) co_return ec;
    }
  }

  beast::tcp_stream& stream() { return stream_; }

 private:
  explicit Client(asio::any_io_executor ex) : stream_(std::move(ex)) {}
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
};

// Connects, sends one request, returns the response.
inline awaitable<HttpResponse> fetch(tcp::endpoint endpoint, std::string method, std::string target,
                                     std::string body = {}) {
  auto client = co_await Client::connect(endpoint);
  co_return co_await client.request(method, target, body);
}

}  // namespace zt::http::testing
