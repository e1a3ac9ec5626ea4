// The JSON served at /config_dump: workloads, services, policies, certificates (with expiry)
// and the effective configuration, in the shape of Istio ztunnel's dump where fields overlap.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/identity/certificate_manager.h"
#include "ztunnel/config/config.h"
#include "ztunnel/state/state.h"

namespace zt::app {

// A pod enrolled over ZDS (shared mode), as /config_dump lists it.
struct EnrolledPodInfo {
  std::string uid;
  std::string workload;  // namespace/name
  std::string identity;
  uint64_t netns_inode = 0;
  std::vector<std::string> ips;
};

std::string config_dump_json(const std::shared_ptr<const state::State>& state,
                             const identity::CertificateManager& certs,
                             const config::Config& config,
                             const std::vector<EnrolledPodInfo>& pods = {});

}  // namespace zt::app
