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

// Reads more bytes into `buf`; false on error, timeout, EOF or an oversized handshake.
awaitable<bool> read_more(tcp::socket& s, std::vector<uint8_t>& buf) {
  if (buf.size() >= kMaxHandshakeBytes) co_return false;
  size_t old = buf.size();
  buf.resize(kMaxHandshakeBytes);
  auto r = co_await async::with_timeout(
      s.async_read_some(asio::buffer(buf.data() + old, buf.size() - old), kTuple),
      kHandshakeTimeout);
  if (!r || std::get<0>(*r) || std::get<1>(*r) == 0) {
    buf.resize(old);
    co_return false;
  }
  buf.resize(old + std::get<1>(*r));
  co_return true;
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
    if (!co_await read_more(client, buf)) co_return;
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
    if (!co_await read_more(client, buf)) co_return;
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
    auto svc = snapshot->find_service_by_hostname(host, ctx.local.ns);
    if (svc && !svc->vips.empty()) {
      dst = tcp::endpoint(svc->vips.front().address, request.port);
    } else {
      tcp::resolver resolver(co_await asio::this_coro::executor);
      auto res = co_await async::with_timeout(
          resolver.async_resolve(host, std::to_string(request.port), kTuple), kHandshakeTimeout);
      if (!res || std::get<0>(*res) || std::get<1>(*res).empty()) {
        co_await write_reply(client, socks5::Reply::kHostUnreachable);
        ZT_LOG_WARN("component=socks5 src.addr={} msg=\"cannot resolve {}\"",
                    net::format_endpoint(peer), host);
        co_return;
      }
      dst = std::get<1>(*res).begin()->endpoint();
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
