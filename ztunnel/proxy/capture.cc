#include "ztunnel/proxy/capture.h"

#include <linux/netfilter_ipv4.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>

#include "common/base/log.h"
#include "common/net/address.h"
#include "ztunnel/proxy/access_log.h"

#ifndef IP6T_SO_ORIGINAL_DST
#define IP6T_SO_ORIGINAL_DST 80
#endif

namespace zt::proxy {
namespace {

std::optional<tcp::endpoint> so_original_dst(int fd, bool v4) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (::getsockopt(fd, v4 ? SOL_IP : SOL_IPV6, v4 ? SO_ORIGINAL_DST : IP6T_SO_ORIGINAL_DST, &ss,
                   &len) != 0) {
    return std::nullopt;
  }
  if (ss.ss_family == AF_INET) {
    sockaddr_in sin{};
    std::memcpy(&sin, &ss, sizeof(sin));
    asio::ip::address_v4 ip(ntohl(sin.sin_addr.s_addr));
    return tcp::endpoint(ip, ntohs(sin.sin_port));
  }
  if (ss.ss_family == AF_INET6) {
    sockaddr_in6 sin6{};
    std::memcpy(&sin6, &ss, sizeof(sin6));
    asio::ip::address_v6::bytes_type b;
    std::memcpy(b.data(), &sin6.sin6_addr, b.size());
    return tcp::endpoint(asio::ip::address_v6(b), ntohs(sin6.sin6_port));
  }
  return std::nullopt;
}

bool is_proxy_port(uint16_t port) {
  return port == kOutboundPort || port == kInboundPlaintextPort || port == kHbonePort ||
         port == kSocks5Port;
}

}  // namespace

std::optional<tcp::endpoint> original_destination(const PodScope& scope, tcp::socket& accepted) {
  error_code ec;
  auto peer = accepted.remote_endpoint(ec);
  if (ec) return std::nullopt;
  if (scope.maps) {
    if (auto cookie = netns::socket_netns_cookie(accepted.native_handle())) {
      if (auto dst = scope.maps->take_original_destination(*cookie, peer)) return dst;
    }
  }
  auto local = accepted.local_endpoint(ec);
  if (ec) return std::nullopt;
  auto dst = so_original_dst(accepted.native_handle(), local.address().is_v4());
  // Without a redirect, SO_ORIGINAL_DST on a conntracked socket answers its own local address:
  // that is a direct connection to the listener, not a captured one.
  if (dst && *dst == local) return std::nullopt;
  return dst;
}

awaitable<void> serve_captured(tcp::socket client, ProxyContext& ctx, Outbound& outbound) {
  auto dst = original_destination(outbound.scope(), client);
  if (!dst) {
    error_code ec;
    ConnectionRecord rec(ctx.metrics, ConnectionRecord::Direction::kOutbound);
    rec.src_addr = net::format_endpoint(client.remote_endpoint(ec));
    rec.dst_addr = net::format_endpoint(client.local_endpoint(ec));
    rec.src_workload = outbound.scope().local.name;
    rec.src_namespace = outbound.scope().local.ns;
    rec.set_error("no original destination recorded for this connection (not captured)", "NR");
    ctx.metrics.error("outbound", "original_destination");
    co_return;
  }
  if (dst->address().is_loopback() && is_proxy_port(dst->port())) {
    error_code ec;
    ConnectionRecord rec(ctx.metrics, ConnectionRecord::Direction::kOutbound);
    rec.src_addr = net::format_endpoint(client.remote_endpoint(ec));
    rec.dst_addr = net::format_endpoint(*dst);
    rec.set_error("attempted recursive call to ourselves", "NR");
    ctx.metrics.error("outbound", "self_call");
    co_return;
  }
  co_await outbound.proxy(std::move(client), *dst, nullptr);
}

}  // namespace zt::proxy
