// The SOCKS5 listener's per-connection handler (UNSTABLE_ENABLE_SOCKS5): reads the greeting and
// the CONNECT request, resolves the destination (a mesh service hostname, or DNS), then hands
// the connection and that destination to the outbound path. The SOCKS5 reply is sent once the
// upstream is connected (or has failed).
#pragma once

#include "ztunnel/proxy/context.h"
#include "ztunnel/proxy/outbound.h"

namespace zt::proxy {

awaitable<void> serve_socks5(tcp::socket client, ProxyContext& ctx, Outbound& outbound);

}  // namespace zt::proxy
