#include "tools/loadgen/socks5.h"

#include <array>

namespace zt::loadgen::socks5 {

Result<std::vector<uint8_t>> connect_request(const HostPort& target) {
  std::vector<uint8_t> req;
  req.reserve(4 + 1 + 255 + 2);
  for (uint8_t b : {0x05, 0x01, 0x00}) req.push_back(b);
  error_code ec;
  auto ip = asio::ip::make_address(target.host, ec);
  if (!ec && ip.is_v4()) {
    req.push_back(0x01);
    auto b = ip.to_v4().to_bytes();
    for (uint8_t x : b) req.push_back(x);
  } else if (!ec && ip.is_v6()) {
    req.push_back(0x04);
    auto b = ip.to_v6().to_bytes();
    for (uint8_t x : b) req.push_back(x);
  } else {
    if (target.host.empty() || target.host.size() > 255) {
      return failf("socks5: bad host name '{}'", target.host);
    }
    req.push_back(0x03);
    req.push_back(static_cast<uint8_t>(target.host.size()));
    for (char x : target.host) req.push_back(static_cast<uint8_t>(x));
  }
  req.push_back(static_cast<uint8_t>(target.port >> 8));
  req.push_back(static_cast<uint8_t>(target.port & 0xff));
  return req;
}

std::string reply_text(uint8_t rep) {
  switch (rep) {
    case 0x00:
      return "succeeded";
    case 0x01:
      return "general SOCKS server failure";
    case 0x02:
      return "connection not allowed by ruleset";
    case 0x03:
      return "network unreachable";
    case 0x04:
      return "host unreachable";
    case 0x05:
      return "connection refused";
    case 0x06:
      return "TTL expired";
    case 0x07:
      return "command not supported";
    case 0x08:
      return "address type not supported";
    default:
      return fmt::format("unknown reply code {}", rep);
  }
}

Result<size_t> reply_length(const uint8_t* r) {
  if (r[0] != 0x05) return failf("socks5: reply version {} (want 5)", r[0]);
  if (r[1] != 0x00) return failf("socks5: CONNECT failed: {}", reply_text(r[1]));
  switch (r[3]) {
    case 0x01:
      return size_t{4 + 4 + 2};
    case 0x04:
      return size_t{4 + 16 + 2};
    case 0x03:
      return size_t{4 + 1} + r[4] + 2;
    default:
      return failf("socks5: reply address type {}", r[3]);
  }
}

awaitable<Status> handshake(tcp::socket& s, const HostPort& target) {
  auto req = connect_request(target);
  if (!req) co_return tl::unexpected(req.error());
  // Greeting and request in one write: the server answers the greeting first anyway.
  std::vector<uint8_t> out;
  out.reserve(3 + req->size());
  for (uint8_t b : {0x05, 0x01, 0x00}) out.push_back(b);
  for (uint8_t b : *req) out.push_back(b);
  auto [wec, wn] = co_await asio::async_write(s, asio::buffer(out), kTuple);
  if (wec) co_return fail(wec, "socks5: write");
  std::array<uint8_t, 2> method{};
  auto [mec, mn] = co_await asio::async_read(s, asio::buffer(method), kTuple);
  if (mec) co_return fail(mec, "socks5: read method");
  if (method[0] != 0x05 || method[1] != 0x00) {
    co_return failf("socks5: server chose method {} (want 0, no authentication)", method[1]);
  }
  std::array<uint8_t, 4 + 1 + 255 + 2> reply{};
  auto [rec, rn] = co_await asio::async_read(s, asio::buffer(reply.data(), 5), kTuple);
  if (rec) co_return fail(rec, "socks5: read reply");
  auto len = reply_length(reply.data());
  if (!len) co_return tl::unexpected(len.error());
  auto [tec, tn] = co_await asio::async_read(s, asio::buffer(reply.data() + 5, *len - 5), kTuple);
  if (tec) co_return fail(tec, "socks5: read reply address");
  co_return Status{};
}

}  // namespace zt::loadgen::socks5
