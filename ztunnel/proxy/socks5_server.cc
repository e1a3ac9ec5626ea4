#include "ztunnel/proxy/socks5_server.h"

#include <vector>

#include "common/async/timeout.h"
#include "common/base/log.h"
#include "common/net/address.h"
#include "ztunnel/socks5/socks5.h"

namespace zt::proxy {
namespace {

constexpr auto kHandshakeTimeout = std::chrono::seconds(10);
// A greeting plus a request with the longest domain name fit in far less.
constexpr size_t kMaxHandshakeBytes = 1024;

using Deadline = std::chrono::steady_clock::time_point;

// Reads more bytes into `buf`; false on error, EOF, an oversized handshake, or when the whole
// handshake's deadline passed (a client trickling one byte at a time gets no more time).
awaitable<bool> read_more(tcp::socket& s, std::vector<uint8_t>& buf, Deadline deadline) {
  if (buf.size() >= kMaxHandshakeBytes) co_return false;
  auto left = deadline - std::chrono::steady_clock::now();
  if (left <= std::chrono::steady_clock::duration::zero()) co_return false;
  size_t old = buf.size();
  buf.resize(kMaxHandshakeBytes);
  auto r = co_await async::with_timeout(
      s.async_read_some(asio::buffer(buf.data() + old, buf.size() - old), kTuple), left);
  if (!r || std::get<0>(*r) || std::get<1>(*r) == 0) {
    buf.resize(old);
    co_return false;
  }
  buf.resize(old + std::get<1>(*r));
  co_return true;
}

// Name resolution with a deadline. Resolver operations ignore per-operation cancellation, so
// the lookup completes into shared state and is cancelled (not awaited) when time is up.
awaitable<std::optional<tcp::endpoint>> resolve(const std::string& host, uint16_t port,
                                                std::chrono::steady_clock::duration limit) {
  struct Lookup {
    explicit Lookup(asio::any_io_executor ex) : resolver(ex), done(ex) {}
    tcp::resolver resolver;
    async::Event done;
    bool finished = false;
    std::optional<tcp::endpoint> result;
  };
  auto ex = co_await asio::this_coro::executor;
  auto lookup = std::make_shared<Lookup>(ex);
  lookup->resolver.async_resolve(
      host, std::to_string(port),
      [lookup](const error_code& ec, const tcp::resolver::results_type& results) {
        if (!ec && !results.empty()) lookup->result = results.begin()->endpoint();
        lookup->finished = true;
        lookup->done.notify();
      });
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!lookup->finished) {
    auto left = deadline - std::chrono::steady_clock::now();
    if (left <= std::chrono::steady_clock::duration::zero()) break;
    auto woke = co_await async::with_timeout(lookup->done.wait(), left);
    if (woke && !*woke) break;  // cancelled
  }
  if (!lookup->finished) lookup->resolver.cancel();
  co_return lookup->result;
}

awaitable<void> write_reply(tcp::socket& s, socks5::Reply reply) {
  auto bytes = socks5::make_connect_reply(reply);
  co_await async::with_timeout(asio::async_write(s, asio::buffer(bytes), kTuple),
                               kHandshakeTimeout);
}

}  // namespace

awaitable<void> serve_socks5(tcp::socket client, ProxyContext& ctx, Outbound& outbound) {
  std::vector<uint8_t> buf;
  buf.reserve(kMaxHandshakeBytes);
  const Deadline deadline = std::chrono::steady_clock::now() + kHandshakeTimeout;
  error_code ec;
  auto peer = client.remote_endpoint(ec);

  // Greeting.
  size_t consumed = 0;
  for (;;) {
    auto g = socks5::parse_greeting(buf);
    if (!g) {
      auto reply = socks5::make_method_reply(false);
      co_await async::with_timeout(asio::async_write(client, asio::buffer(reply), kTuple),
                                   kHandshakeTimeout);
      ctx.metrics.error("socks5", "bad_greeting");
      ZT_LOG_WARN("component=socks5 src.addr={} error=\"{}\"", net::format_endpoint(peer),
                  g.error().describe());
      co_return;
    }
    if (*g) {
      consumed = (*g)->consumed;
      break;
    }
    if (!co_await read_more(client, buf, deadline)) co_return;
  }
  auto accept = socks5::make_method_reply(true);
  auto w = co_await async::with_timeout(asio::async_write(client, asio::buffer(accept), kTuple),
                                        kHandshakeTimeout);
  if (!w || std::get<0>(*w)) co_return;
  buf.erase(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(consumed));

  // Request.
  socks5::Request request;
  for (;;) {
    auto r = socks5::parse_request(buf);
    if (!r) {
      co_await write_reply(client, socks5::reply_for(r.error()));
      ctx.metrics.error("socks5", "bad_request");
      ZT_LOG_WARN("component=socks5 src.addr={} error=\"{}\"", net::format_endpoint(peer),
                  r.error().describe());
      co_return;
    }
    if (*r) {
      request = (*r)->first;
      buf.erase(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>((*r)->second));
      break;
    }
    if (!co_await read_more(client, buf, deadline)) co_return;
  }
  if (!buf.empty()) {
    // The client sent data before our reply: it would be lost, so refuse.
    co_await write_reply(client, socks5::Reply::kGeneralFailure);
    co_return;
  }

  // Destination: an IP, a mesh service hostname (its first VIP), or DNS.
  tcp::endpoint dst;
  if (auto* ip = std::get_if<asio::ip::address>(&request.host)) {
    dst = tcp::endpoint(*ip, request.port);
  } else {
    const auto& host = std::get<std::string>(request.host);
    auto snapshot = ctx.state.current();
    auto svc = snapshot->find_service_by_hostname(host, outbound.scope().local.ns);
    if (svc && !svc->vips.empty()) {
      dst = tcp::endpoint(svc->vips.front().address, request.port);
    } else {
      auto resolved = co_await resolve(host, request.port, kHandshakeTimeout);
      if (!resolved) {
        co_await write_reply(client, socks5::Reply::kHostUnreachable);
        ctx.metrics.error("socks5", "resolve");
        ZT_LOG_WARN("component=socks5 src.addr={} msg=\"cannot resolve {}\"",
                    net::format_endpoint(peer), host);
        co_return;
      }
      dst = *resolved;
    }
  }

  co_await outbound.proxy(std::move(client), dst,
                          [](tcp::socket& s, bool connected) -> awaitable<bool> {
                            auto reply = socks5::make_connect_reply(
                                connected ? socks5::Reply::kSucceeded
                                          : socks5::Reply::kConnectionRefused);
                            auto r = co_await async::with_timeout(
                                asio::async_write(s, asio::buffer(reply), kTuple),
                                kHandshakeTimeout);
                            co_return connected && r && !std::get<0>(*r);
                          });
}

}  // namespace zt::proxy
