// Where a connection goes, decided purely from a State snapshot (facts §1.4, §1.5). No sockets
// here: the proxy asks, then connects. The results hold shared_ptrs to the workload and
// service, so they stay valid after the snapshot they came from is replaced.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "common/base/result.h"
#include "common/hbone/authority.h"
#include "common/hbone/request.h"
#include "common/net/address.h"
#include "ztunnel/state/state.h"

namespace zt::state {

// ztunnel's own listener ports (outbound, inbound plaintext, HBONE, SOCKS5): a connection aimed
// at one of them is a loop, never a real destination.
inline constexpr std::array<uint16_t, 4> kProxyPorts = {15001, 15006, 15008, 15080};
bool is_proxy_port(uint16_t port);

enum class UpstreamKind {
  kHbone,        // mTLS + HTTP/2 CONNECT to <pod ip>:15008
  kTcp,          // plain TCP to the workload (its tunnel protocol is TCP)
  kPassthrough,  // not in the mesh: plain TCP to the original destination
};

std::string_view to_string(UpstreamKind kind);

struct Upstream {
  UpstreamKind kind = UpstreamKind::kPassthrough;
  tcp::endpoint connect{};  // where to open the TCP connection
  std::string authority{};  // the CONNECT :authority (HBONE only), "<pod ip>:<target port>"
  std::vector<std::string> expected_identities{};  // SANs the server may present (HBONE only)
  tcp::endpoint original_dst{};                    // what the client asked for
  uint16_t target_port = 0;  // port on the destination workload (or the original port)
  std::shared_ptr<const Workload> workload{};  // null for passthrough
  std::shared_ptr<const Service> service{};    // set when the client addressed a service VIP
  // Set when the connection goes through a waypoint (facts §1.4 steps 4 and 7): `connect` is
  // the waypoint's <ip>:<hbone_mtls_port>, `authority` stays the original destination
  // ("<vip>:<service port>" or "<pod ip>:<port>"), `expected_identities` is the waypoint
  // workload's identity and `workload` is the waypoint workload (Istio logs it as dst.workload).
  bool via_waypoint = false;
  // The workload the client addressed by IP when a workload waypoint took the connection.
  std::shared_ptr<const Workload> addressed_workload{};
  // "<ip>:<port>" of the waypoint the connection goes through ("" when direct).
  std::string waypoint_address() const;
};

// `source` is the workload the connection comes from (its network and namespace steer the
// lookups); null when unknown. Errors: a loop to our own ports on a loopback destination
// ("attempted recursive call to ourselves"), and a service VIP without a usable endpoint
// ("no healthy upstream for <namespace/hostname>").
//
// Waypoints: a service VIP whose service has a `waypoint`, or a workload IP whose workload has
// one, goes over HBONE to the waypoint instead (any service LB mode). The waypoint is reached by
// its GatewayAddress: an IP names the waypoint workload (or, when no workload has it, a
// waypoint service VIP whose endpoints are load-balanced); a namespaced hostname names the
// waypoint's service. A waypoint that does not resolve to a workload fails the connection
// ("waypoint ... not found", as Istio's UnknownWaypoint); it is never bypassed. A source that
// is the waypoint itself (its IP is the waypoint address, or it is an endpoint of the
// waypoint's service) is routed directly, so traffic never loops through its own waypoint.
//
// Service endpoints are usable when healthy (or the service's health policy is AllowAll),
// with capacity > 0, an address in the client's network, and a target port for the service
// port: the endpoint's own map wins over the service's, 0 means none. One is picked at random,
// weighted by capacity. Same-family addresses are preferred (an IPv6 VIP picks IPv6 pods).
Result<Upstream> resolve_outbound(const State& state, const Workload* source,
                                  const tcp::endpoint& original_dst, std::mt19937_64& rng);

// A usable endpoint of a service for one service port, by the rules resolve_outbound applies
// (healthy unless the service allows all, capacity > 0, in `network`, an address of the family
// of `like` when it has one, a target port from the endpoint's or the service's map).
struct ServiceEndpointTarget {
  std::shared_ptr<const Workload> workload{};
  asio::ip::address ip{};
  uint16_t port = 0;  // target port on the workload
};

// Every usable endpoint of `svc` for `service_port`, in the state's endpoint order (the
// waypoint picks among them with its own load balancer).
std::vector<ServiceEndpointTarget> usable_service_endpoints(const State& state, const Service& svc,
                                                            uint16_t service_port,
                                                            std::string_view network,
                                                            const asio::ip::address& like);

struct InboundTarget {
  tcp::endpoint app{};                         // <pod ip>:<target port>
  std::shared_ptr<const Workload> workload{};  // the local workload the stream arrived for
  std::shared_ptr<const Service> service{};    // set for hostname authorities
};

// For a CONNECT that passed hbone::check_connect_request (or a plaintext connection, with an
// authority made of its original destination). Every error means answer 503: the pod IP is not
// a known workload, a hostname authority names no service or no target port, or the port is
// one of ours (self call).
Result<InboundTarget> resolve_inbound(const State& state, const tcp::endpoint& arrived_at,
                                      const hbone::Authority& authority,
                                      std::string_view network = {});

}  // namespace zt::state
