// What every worker's proxies share: settings, the state store, certificates and metrics.
// Everything reachable from here is either immutable or thread-safe.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "common/h2/connection.h"
#include "common/identity/certificate_manager.h"
#include "common/tls/spiffe.h"
#include "ztunnel/proxy/metrics.h"
#include "ztunnel/state/store.h"

namespace zt::proxy {

inline constexpr uint16_t kOutboundPort = 15001;
inline constexpr uint16_t kInboundPlaintextPort = 15006;
inline constexpr uint16_t kHbonePort = 15008;
inline constexpr uint16_t kSocks5Port = 15080;

struct ProxySettings {
  h2::Settings h2;
  uint32_t pool_max_streams = 100;
  std::chrono::milliseconds connect_timeout{10'000};
  std::chrono::milliseconds handshake_timeout{10'000};
  std::string cluster_id = "Kubernetes";
};

// The workload a proxy acts for: PROXY_WORKLOAD_INFO in dedicated mode, one enrolled pod in
// shared mode (its PodScope, pod_scope.h).
struct LocalWorkload {
  std::string ns;
  std::string name;
  tls::SpiffeId identity;
  std::vector<asio::ip::address> ips;
  std::string network;
};

struct ProxyContext {
  ProxySettings settings;
  // Dedicated mode: the one workload (the listeners get it through their PodScope). Empty in
  // shared mode, where every pod has its own scope.
  LocalWorkload local;
  state::StateStore& state;
  identity::CertificateManager& certs;
  ProxyMetrics& metrics;
};

}  // namespace zt::proxy
