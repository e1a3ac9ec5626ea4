// The JSON served at /config_dump: workloads, services, policies, certificates (with expiry)
// and the effective configuration, in the shape of Istio ztunnel's dump where fields overlap.
#pragma once

#include <memory>
#include <string>

#include "common/identity/certificate_manager.h"
#include "ztunnel/config/config.h"
#include "ztunnel/state/state.h"

namespace zt::app {

std::string config_dump_json(const std::shared_ptr<const state::State>& state,
                             const identity::CertificateManager& certs,
                             const config::Config& config);

}  // namespace zt::app
