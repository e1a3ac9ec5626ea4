// HAProxy sidecars with mutual TLS (issue 7's outside reference): what a user might deploy
// instead of a mesh. Debian's haproxy, configured by the bench, one process per pod in the pod's
// sidecar cgroup and netns, mode tcp:
//   client pod:  127.0.0.1:kHaproxyAppPort  -> <server ip>:kHaproxyTlsAppPort  (TLS 1.3, client cert)
//                127.0.0.1:kHaproxyBulkPort -> <server ip>:kHaproxyTlsBulkPort
//   server pod:  <server ip>:kHaproxyTlsAppPort  (TLS 1.3, client cert required) -> 127.0.0.1:app
//                <server ip>:kHaproxyTlsBulkPort                               -> 127.0.0.1:bulk
// Certificates: one per side with the pod's SPIFFE identity, signed by meshd's CA (the cluster's
// CA directory); each side verifies the other against that CA. No eBPF capture: the client
// addresses its sidecar explicitly (http://127.0.0.1:kHaproxyAppPort/), as a user would.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "bench/mesh/plan/topology.h"
#include "common/base/result.h"

namespace zt::sim {
class Cluster;
}

namespace zt::bench::mesh {

inline constexpr uint16_t kHaproxyAppPort = 15001;
inline constexpr uint16_t kHaproxyBulkPort = 15002;
inline constexpr uint16_t kHaproxyTlsAppPort = 15443;
inline constexpr uint16_t kHaproxyTlsBulkPort = 15444;

struct HaproxyOptions {
  std::string client_pod, server_pod;  // "ns/name"
  std::string server_ip;
  uint16_t app_port = kAppPort, bulk_port = kBulkPort;
  std::filesystem::path ca_dir;    // ca-cert.pem + ca-key.pem
  std::filesystem::path work_dir;  // configs, keys and certificates are written here
  int threads = 1;                 // nbthread of each process
};

// Writes both configurations, starts both processes ("<ns>.<pod>.haproxy"), waits until each
// listens, and checks one request end to end. Fails naming the step (haproxy missing, a config
// error with haproxy's message, a listener that never opened).
Result<std::vector<StartedProxy>> start_haproxy_pair(sim::Cluster& cluster,
                                                     const HaproxyOptions& options);

}  // namespace zt::bench::mesh
