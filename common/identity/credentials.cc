#include "common/identity/credentials.h"

namespace zt::identity {

Result<std::shared_ptr<WorkloadCredentials>> make_workload_credentials(tls::WorkloadCertificate cert) {
  auto server = tls::make_hbone_server_context(cert);
  if (!server) return tl::unexpected(wrap(server.error(), fmt::format("credentials for {}", cert.id)));
  auto client = tls::make_hbone_client_context(cert);
  if (!client) return tl::unexpected(wrap(client.error(), fmt::format("credentials for {}", cert.id)));
  auto creds = std::make_shared<WorkloadCredentials>();
  creds->refresh_at = cert.not_before + (cert.not_after - cert.not_before) / 2;
  creds->cert = std::move(cert);
  creds->server_ctx = std::move(*server);
  creds->client_ctx = std::move(*client);
  return creds;
}

}  // namespace zt::identity
