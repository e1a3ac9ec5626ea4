// Inbound plaintext (port 15006): connections captured on their way into the pod without
// HBONE. The original destination is the accepted socket's local address (what eBPF sk_lookup
// capture preserves); a connection that reached 15006 itself was not captured and is refused,
// as are destinations on the proxy's own ports (loops).
#pragma once

#include "ztunnel/proxy/context.h"

namespace zt::proxy {

// Forwards `client` to `original_dst` (an app port of the local workload).
awaitable<void> serve_plaintext(tcp::socket client, tcp::endpoint original_dst, ProxyContext& ctx);

}  // namespace zt::proxy
