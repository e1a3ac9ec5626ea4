// Outbound capture (port 15001 inside a pod): the eBPF connect hook rewrote the app's connect to
// 127.0.0.1:15001 and recorded where it was going. This recovers that original destination and
// hands the connection to the pod's Outbound.
#pragma once

#include <optional>

#include "ztunnel/proxy/context.h"
#include "ztunnel/proxy/outbound.h"
#include "ztunnel/proxy/pod_scope.h"

namespace zt::proxy {

// The destination the app asked for: from the capture maps (keyed by the socket's netns cookie
// and the peer address), else getsockopt(SO_ORIGINAL_DST) (what iptables REDIRECT, or a
// cgroup/getsockopt program, answers). nullopt when neither knows.
std::optional<tcp::endpoint> original_destination(const PodScope& scope, tcp::socket& accepted);

// Serves one connection accepted on the pod's 15001 listener.
awaitable<void> serve_captured(tcp::socket client, ProxyContext& ctx, Outbound& outbound);

}  // namespace zt::proxy
