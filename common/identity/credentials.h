// Everything a connection needs to speak HBONE as one workload identity, built once per
// certificate and shared read-only by every connection using it (shared_ptr<const ...>).
#pragma once

#include <chrono>
#include <memory>

#include "common/async/asio.h"
#include "common/base/result.h"
#include "common/tls/context.h"

namespace zt::identity {

struct WorkloadCredentials {
  tls::WorkloadCertificate cert;
  std::shared_ptr<asio::ssl::context> server_ctx;  // inbound HBONE (port 15008)
  std::shared_ptr<asio::ssl::context> client_ctx;  // outbound HBONE
  // Half-life of the certificate: not_before + (not_after - not_before) / 2 (Istio's rule).
  std::chrono::system_clock::time_point refresh_at;
};

// Builds both TLS contexts for `cert`.
Result<std::shared_ptr<WorkloadCredentials>> make_workload_credentials(tls::WorkloadCertificate cert);

}  // namespace zt::identity
