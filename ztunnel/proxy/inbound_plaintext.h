// Inbound plaintext (port 15006): connections captured on their way into the pod without
// HBONE. The original destination is the accepted socket's local address (what eBPF sk_lookup
// capture preserves); a connection that reached 15006 itself was not captured and is refused,
// as are destinations on the proxy's own ports (loops).
#pragma once

#include "ztunnel/proxy/authz_guard.h"
#include "ztunnel/proxy/context.h"
#include "ztunnel/proxy/pod_scope.h"

namespace zt::proxy {

// Forwards `client` to `original_dst` (an app port of the local workload) when the
// authorization policies allow it (no identity: plaintext). With a `tracker` (the worker's),
// the connection is closed when a later policy change denies it.
// `scope` is the pod the listener serves (delivery happens in its netns, with the client's IP).
awaitable<void> serve_plaintext(tcp::socket client, tcp::endpoint original_dst, ProxyContext& ctx,
                                std::shared_ptr<const PodScope> scope,
                                ConnectionTracker* tracker = nullptr);

// The same for the dedicated workload of ctx.local (no netns).
awaitable<void> serve_plaintext(tcp::socket client, tcp::endpoint original_dst, ProxyContext& ctx,
                                ConnectionTracker* tracker = nullptr);

}  // namespace zt::proxy
