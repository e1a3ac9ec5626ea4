// What every worker of the waypoint shares: who the waypoint is, settings, the workload state
// (services, workloads, endpoints: ztunnel's state model, fed by xDS or a local file), the L7
// configuration, certificates and metrics. Everything reachable from here is immutable or
// thread-safe.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "common/h2/connection.h"
#include "common/identity/certificate_manager.h"
#include "common/tls/spiffe.h"
#include "waypoint/authz/normalize.h"
#include "waypoint/message/message.h"
#include "waypoint/proxy/metrics.h"
#include "waypoint/state/config_store.h"
#include "ztunnel/state/store.h"
#include "ztunnel/state/types.h"

namespace zt::waypoint::proxy {

inline constexpr uint16_t kHbonePort = 15008;

// The waypoint itself: a Gateway (class istio-waypoint) `namespace_name/name`.
struct Self {
  std::string name;
  std::string namespace_name;
  tls::SpiffeId identity;              // its certificate's SAN; HBONE out is opened with it
  std::vector<asio::ip::address> ips;  // where ztunnels reach it (GatewayAddress by address)
  std::string hostname;                // "<name>.<namespace>.svc.<domain>" (by hostname)

  // True when `gw` (a service's or workload's `waypoint` field) names this waypoint: its
  // address is one of `ips`, or its hostname is `hostname` (namespace included).
  bool is(const zt::state::GatewayAddress& gw) const;
};

struct Settings {
  h2::Settings hbone;  // HTTP/2 of the HBONE connections (in and out)
  uint32_t pool_max_streams = 100;
  std::chrono::milliseconds connect_timeout{10'000};
  std::chrono::milliseconds handshake_timeout{10'000};
  // The waypoint streams gRPC request bodies (client and bidirectional streaming calls), any
  // body longer than 64 KiB, so that no body size is refused, and a response body still coming
  // 10 ms after its head (server-sent events).
  Limits limits{.stream_grpc_requests = true,
                .stream_bodies_after = 64 * 1024,
                .stream_late_bodies_after = std::chrono::milliseconds(10)};
  std::string cluster_id = "Kubernetes";
  // meshConfig.pathNormalization: what L7 policy checks and what is forwarded.
  authz::NormalizeOptions path_normalization;
};

struct WaypointContext {
  Self self;
  Settings settings;
  zt::state::StateStore& state;
  identity::CertificateManager& certs;
  state::ConfigStore& config;
  WaypointMetrics& metrics;
};

}  // namespace zt::waypoint::proxy
