#include "ztunnel/state/routing.h"

#include <algorithm>
#include <optional>
#include <variant>

#include <fmt/format.h>

namespace zt::state {
namespace {

// The workload address to use: the first of the same family as `like`, else the first.
std::optional<asio::ip::address> pick_address(const Workload& w, const asio::ip::address& like) {
  if (w.workload_ips.empty()) return std::nullopt;
  for (const auto& ip : w.workload_ips) {
    if (net::unmap(ip).is_v4() == like.is_v4()) return net::unmap(ip);
  }
  return net::unmap(w.workload_ips.front());
}

// Target port for `service_port`: endpoint map, then service map; 0 when neither has one.
uint16_t target_port(const Service& svc, const PortMap& endpoint_ports, uint16_t service_port) {
  if (auto it = endpoint_ports.find(service_port); it != endpoint_ports.end() && it->second != 0) {
    return it->second;
  }
  if (auto it = svc.ports.find(service_port); it != svc.ports.end()) return it->second;
  return 0;
}

Upstream to_workload(std::shared_ptr<const Workload> w, const asio::ip::address& ip, uint16_t port,
                     const tcp::endpoint& original_dst) {
  Upstream up;
  up.original_dst = original_dst;
  up.target_port = port;
  if (w->protocol == TunnelProtocol::kHbone) {
    up.kind = UpstreamKind::kHbone;
    up.connect = tcp::endpoint(ip, hbone::kHbonePort);
    up.authority = net::format_endpoint(tcp::endpoint(ip, port));
    up.expected_identities.push_back(w->identity());
  } else {
    up.kind = UpstreamKind::kTcp;
    up.connect = tcp::endpoint(ip, port);
  }
  up.workload = std::move(w);
  return up;
}

// An endpoint chosen for a service port.
struct Chosen {
  std::shared_ptr<const Workload> workload;
  asio::ip::address ip;
  uint16_t port = 0;
};

// kUseServicePort: an endpoint without a target port for the port is reached on the port
// itself (a waypoint's HBONE port need not be listed on its service).
enum class PortFallback { kNone, kUseServicePort };

// Endpoints are usable when healthy (or the health policy is AllowAll), with capacity > 0, an
// address in `network` and a target port; one is picked at random weighted by capacity.
std::optional<Chosen> pick_endpoint(const State& state, const Service& svc,
                                    std::string_view network, const asio::ip::address& like,
                                    uint16_t port, PortFallback fallback, std::mt19937_64& rng) {
  bool allow_unhealthy =
      svc.load_balancer && svc.load_balancer->health_policy == LoadBalancerHealthPolicy::kAllowAll;
  std::vector<Chosen> candidates;
  uint64_t total_weight = 0;
  for (const auto& ep : state.endpoints(svc.key())) {
    const auto& w = *ep.workload;
    if (ep.status != HealthStatus::kHealthy && !allow_unhealthy) continue;
    if (w.capacity == 0 || w.network != network) continue;
    auto ip = pick_address(w, like);
    if (!ip) continue;  // hostname-only workloads need DNS, not supported here
    uint16_t target = target_port(svc, ep.ports, port);
    if (target == 0 && fallback == PortFallback::kUseServicePort) target = port;
    if (target == 0) continue;
    candidates.push_back({ep.workload, *ip, target});
    total_weight += w.capacity;
  }
  if (candidates.empty()) return std::nullopt;
  uint64_t pick = std::uniform_int_distribution<uint64_t>(0, total_weight - 1)(rng);
  for (const auto& c : candidates) {
    if (pick < c.workload->capacity) return c;
    pick -= c.workload->capacity;
  }
  return candidates.back();
}

std::string describe(const GatewayAddress& gw) {
  if (const auto* a = std::get_if<NetworkAddress>(&gw.destination)) {
    return a->network.empty() ? a->address.to_string() : a->to_string();
  }
  return std::get<NamespacedHostname>(gw.destination).to_string();
}

bool has_ip(const Workload& w, const asio::ip::address& ip) {
  auto want = net::unmap(ip);
  return std::any_of(w.workload_ips.begin(), w.workload_ips.end(),
                     [&](const auto& a) { return net::unmap(a) == want; });
}

bool is_endpoint_of(const State& state, const Service& svc, const Workload& w) {
  for (const auto& ep : state.endpoints(svc.key())) {
    if (ep.workload.get() == &w || ep.workload->uid == w.uid) return true;
  }
  return false;
}

// The source is the waypoint itself: its IP is the waypoint's address, or it is an endpoint of
// the waypoint's service (by VIP or hostname).
bool is_from_waypoint(const State& state, const Workload* source, const GatewayAddress& gw) {
  if (!source) return false;
  if (const auto* a = std::get_if<NetworkAddress>(&gw.destination)) {
    if (source->network == a->network && has_ip(*source, a->address)) return true;
    auto svc = state.find_service(a->network, net::unmap(a->address));
    return svc && is_endpoint_of(state, *svc, *source);
  }
  const auto& host = std::get<NamespacedHostname>(gw.destination);
  auto svc = state.find_service(host.namespace_name, host.hostname);
  return svc && is_endpoint_of(state, *svc, *source);
}

// HBONE to the waypoint named by `gw`, keeping the original destination as the authority.
Result<Upstream> through_waypoint(const State& state, const Workload* source,
                                  const GatewayAddress& gw, const tcp::endpoint& original_dst,
                                  std::mt19937_64& rng) {
  std::string_view network = source ? std::string_view(source->network) : std::string_view();
  auto like = net::unmap(original_dst.address());
  std::optional<Chosen> chosen;
  if (const auto* a = std::get_if<NetworkAddress>(&gw.destination)) {
    auto ip = net::unmap(a->address);
    if (auto w = state.find_workload(a->network, ip)) {
      // Referenced by IP: that IP is used, even when the client's family differs.
      chosen = Chosen{std::move(w), ip, gw.hbone_mtls_port};
    } else if (auto wsvc = state.find_service(a->network, ip)) {
      chosen = pick_endpoint(state, *wsvc, a->network, ip, gw.hbone_mtls_port,
                             PortFallback::kUseServicePort, rng);
      if (!chosen) return failf("no healthy upstream for waypoint {}", wsvc->key());
    }
  } else {
    const auto& host = std::get<NamespacedHostname>(gw.destination);
    if (auto wsvc = state.find_service(host.namespace_name, host.hostname)) {
      chosen = pick_endpoint(state, *wsvc, network, like, gw.hbone_mtls_port,
                             PortFallback::kUseServicePort, rng);
      if (!chosen) return failf("no healthy upstream for waypoint {}", wsvc->key());
    }
  }
  if (!chosen) return failf("waypoint {} not found", describe(gw));

  Upstream up;
  up.kind = UpstreamKind::kHbone;
  up.via_waypoint = true;
  up.connect = tcp::endpoint(chosen->ip, chosen->port);
  up.authority = net::format_endpoint(tcp::endpoint(like, original_dst.port()));
  up.expected_identities.push_back(chosen->workload->identity());
  up.original_dst = original_dst;
  up.target_port = original_dst.port();
  up.workload = std::move(chosen->workload);
  return up;
}

}  // namespace

std::string Upstream::waypoint_address() const {
  return via_waypoint ? net::format_endpoint(connect) : std::string();
}

bool is_proxy_port(uint16_t port) {
  return std::find(kProxyPorts.begin(), kProxyPorts.end(), port) != kProxyPorts.end();
}

std::string_view to_string(UpstreamKind kind) {
  switch (kind) {
    case UpstreamKind::kHbone:
      return "hbone";
    case UpstreamKind::kTcp:
      return "tcp";
    case UpstreamKind::kPassthrough:
      return "passthrough";
  }
  return "?";
}

Result<Upstream> resolve_outbound(const State& state, const Workload* source,
                                  const tcp::endpoint& original_dst, std::mt19937_64& rng) {
  auto dst_ip = net::unmap(original_dst.address());
  uint16_t port = original_dst.port();
  if (dst_ip.is_loopback() && is_proxy_port(port)) {
    return failf("attempted recursive call to ourselves ({})", net::format_endpoint(original_dst));
  }
  std::string_view network = source ? std::string_view(source->network) : std::string_view();
  std::string_view client_ns =
      source ? std::string_view(source->namespace_name) : std::string_view();

  auto svc = state.find_service(network, dst_ip, client_ns);
  bool passthrough_service =
      svc && svc->load_balancer && svc->load_balancer->mode == LoadBalancerMode::kPassthrough;
  if (svc && svc->waypoint && !is_from_waypoint(state, source, *svc->waypoint)) {
    auto up = through_waypoint(state, source, *svc->waypoint, original_dst, rng);
    if (!up) return tl::unexpected(wrap(up.error(), fmt::format("service {}", svc->key())));
    up->service = svc;
    return up;
  }
  if (svc && !passthrough_service) {
    auto chosen = pick_endpoint(state, *svc, network, dst_ip, port, PortFallback::kNone, rng);
    if (!chosen) {
      return failf("no healthy upstream for {} (port {})", svc->key(), port);
    }
    auto up = to_workload(chosen->workload, chosen->ip, chosen->port, original_dst);
    if (up.kind == UpstreamKind::kHbone) {
      for (const auto& san : svc->subject_alt_names) {
        if (std::find(up.expected_identities.begin(), up.expected_identities.end(), san) ==
            up.expected_identities.end()) {
          up.expected_identities.push_back(san);
        }
      }
    }
    up.service = svc;
    return up;
  }

  // Addressed to a workload directly (or through a PASSTHROUGH service, which keeps the
  // original destination): its port is used as is.
  if (auto w = state.find_workload(network, dst_ip)) {
    if (w->waypoint && !is_from_waypoint(state, source, *w->waypoint)) {
      auto up = through_waypoint(state, source, *w->waypoint, original_dst, rng);
      if (!up) return tl::unexpected(wrap(up.error(), fmt::format("workload {}", w->uid)));
      up->addressed_workload = std::move(w);
      if (passthrough_service) up->service = svc;
      return up;
    }
    auto up = to_workload(std::move(w), dst_ip, port, original_dst);
    if (passthrough_service) up.service = svc;
    return up;
  }

  Upstream up;
  up.kind = UpstreamKind::kPassthrough;
  up.connect = original_dst;
  up.original_dst = original_dst;
  up.target_port = port;
  if (passthrough_service) up.service = svc;
  return up;
}

std::vector<ServiceEndpointTarget> usable_service_endpoints(const State& state, const Service& svc,
                                                            uint16_t service_port,
                                                            std::string_view network,
                                                            const asio::ip::address& like) {
  bool allow_unhealthy =
      svc.load_balancer && svc.load_balancer->health_policy == LoadBalancerHealthPolicy::kAllowAll;
  std::vector<ServiceEndpointTarget> out;
  for (const auto& ep : state.endpoints(svc.key())) {
    const auto& w = *ep.workload;
    if (ep.status != HealthStatus::kHealthy && !allow_unhealthy) continue;
    if (w.capacity == 0 || w.network != network) continue;
    auto ip = pick_address(w, like);
    if (!ip) continue;
    uint16_t target = target_port(svc, ep.ports, service_port);
    if (target == 0) continue;
    out.push_back({ep.workload, *ip, target});
  }
  return out;
}

Result<InboundTarget> resolve_inbound(const State& state, const tcp::endpoint& arrived_at,
                                      const hbone::Authority& authority, std::string_view network) {
  auto pod_ip = net::unmap(arrived_at.address());
  InboundTarget target;
  target.workload = state.find_workload(network, pod_ip);
  if (!target.workload) return failf("unknown target workload {}", pod_ip.to_string());

  uint16_t port = authority.port;
  if (!authority.ip) {
    target.service =
        state.find_service_by_hostname(authority.host, target.workload->namespace_name);
    if (!target.service) return failf("no service for hostname {}", net::quote(authority.host));
    const PortMap* own_ports = nullptr;
    for (const auto& ep : state.endpoints(target.service->key())) {
      if (ep.workload == target.workload) own_ports = &ep.ports;
    }
    static const PortMap kNoPorts;
    port = target_port(*target.service, own_ports ? *own_ports : kNoPorts, authority.port);
    if (port == 0) {
      return failf("service {} has no target port for port {}", target.service->key(),
                   authority.port);
    }
  }
  if (is_proxy_port(port)) {
    return failf("refusing a call to the proxy's own port {} (self call)", port);
  }
  target.app = tcp::endpoint(pod_ip, port);
  return target;
}

}  // namespace zt::state
