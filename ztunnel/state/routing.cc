#include "ztunnel/state/routing.h"

#include <algorithm>

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

Upstream to_workload(std::shared_ptr<const Workload> w, const asio::ip::address& ip,
                     uint16_t port, const tcp::endpoint& original_dst) {
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

}  // namespace

bool is_proxy_port(uint16_t port) {
  return std::find(kProxyPorts.begin(), kProxyPorts.end(), port) != kProxyPorts.end();
}

std::string_view to_string(UpstreamKind kind) {
  switch (kind) {
    case UpstreamKind::kHbone: return "hbone";
    case UpstreamKind::kTcp: return "tcp";
    case UpstreamKind::kPassthrough: return "passthrough";
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
  std::string_view client_ns = source ? std::string_view(source->namespace_name) : std::string_view();

  auto svc = state.find_service(network, dst_ip, client_ns);
  bool passthrough_service =
      svc && svc->load_balancer && svc->load_balancer->mode == LoadBalancerMode::kPassthrough;
  if (svc && !passthrough_service) {
    bool allow_unhealthy = svc->load_balancer && svc->load_balancer->health_policy ==
                                                     LoadBalancerHealthPolicy::kAllowAll;
    struct Candidate {
      const State::Endpoint* endpoint;
      asio::ip::address ip;
      uint16_t port;
    };
    std::vector<Candidate> candidates;
    uint64_t total_weight = 0;
    for (const auto& ep : state.endpoints(svc->key())) {
      const auto& w = *ep.workload;
      if (ep.status != HealthStatus::kHealthy && !allow_unhealthy) continue;
      if (w.capacity == 0 || w.network != network) continue;
      auto ip = pick_address(w, dst_ip);
      if (!ip) continue;  // hostname-only workloads need DNS, not supported here
      uint16_t target = target_port(*svc, ep.ports, port);
      if (target == 0) continue;
      candidates.push_back({&ep, *ip, target});
      total_weight += w.capacity;
    }
    if (candidates.empty()) {
      return failf("no healthy upstream for {} (port {})", svc->key(), port);
    }
    uint64_t pick = std::uniform_int_distribution<uint64_t>(0, total_weight - 1)(rng);
    const Candidate* chosen = &candidates.back();
    for (const auto& c : candidates) {
      if (pick < c.endpoint->workload->capacity) {
        chosen = &c;
        break;
      }
      pick -= c.endpoint->workload->capacity;
    }
    auto up = to_workload(chosen->endpoint->workload, chosen->ip, chosen->port, original_dst);
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

Result<InboundTarget> resolve_inbound(const State& state, const tcp::endpoint& arrived_at,
                                      const hbone::Authority& authority,
                                      std::string_view network) {
  auto pod_ip = net::unmap(arrived_at.address());
  InboundTarget target;
  target.workload = state.find_workload(network, pod_ip);
  if (!target.workload) return failf("unknown target workload {}", pod_ip.to_string());

  uint16_t port = authority.port;
  if (!authority.ip) {
    target.service = state.find_service_by_hostname(authority.host,
                                                    target.workload->namespace_name);
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
