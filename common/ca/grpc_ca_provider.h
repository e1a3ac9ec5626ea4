// GrpcCaProvider: the CertificateProvider that asks an Istio CA (istiod, or meshd) over gRPC:
// istio.v1.auth.IstioCertificateService/CreateCertificate (facts §3.2).
//
// Invariant: create_certificate() only returns a chain whose leaf certifies exactly the identity
// asked for and which ends with CA certificates (the roots); anything else is an error naming the
// CA address, so a confused or malicious CA cannot make this node present another identity.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/base/result.h"
#include "common/identity/certificate_provider.h"
#include "common/tls/spiffe.h"

namespace zt::ca {

struct GrpcCaOptions {
  // "http://host:port" (plaintext, for a simulated cluster) or "https://host:port" (TLS,
  // server verified against root_ca_path).
  std::string address;
  // PEM roots for https. Re-read per request: a rotated root file takes effect without restart.
  std::optional<std::string> root_ca_path;
  // Bearer token file (authorization: Bearer <token>), re-read per request (tokens are short-lived
  // and rotated by the kubelet). Unset: no authorization header is sent.
  std::optional<std::string> token_path;
  std::string cluster_id = "Kubernetes";  // "clusterid" header
  // Shared mode: ztunnel asks for the identities of the pods it proxies, so it names the one it
  // impersonates in the request metadata (ImpersonatedIdentity).
  bool impersonate = false;
  std::chrono::milliseconds timeout{10'000};  // per call
  // Kept for compatibility: every call now makes its own connection (common/grpc), so there is
  // no reconnect backoff at all and a CA that comes back is used by the certificate manager's
  // next retry.
  std::chrono::milliseconds max_reconnect_backoff{5'000};
};

class GrpcCaProvider : public identity::CertificateProvider {
 public:
  // Checks the address; for https also that the root file can be read. Connects lazily.
  static Result<std::shared_ptr<GrpcCaProvider>> create(GrpcCaOptions options);

  // Thread-safe; blocks for at most options.timeout.
  Result<std::vector<std::string>> create_certificate(const std::string& csr_pem,
                                                      const tls::SpiffeId& identity,
                                                      std::chrono::seconds validity) override;

  const GrpcCaOptions& options() const { return options_; }

 private:
  GrpcCaProvider(GrpcCaOptions options, std::string target, bool tls)
      : options_(std::move(options)), target_(std::move(target)), tls_(tls) {}

  // The root file's current contents (https; re-read per call so a rotated root applies).
  Result<std::optional<std::string>> roots() const;

  const GrpcCaOptions options_;
  const std::string target_;  // host:port
  const bool tls_;
};

// The checks create_certificate() applies to a CA answer, separately testable: non-empty chain,
// a parseable leaf whose SPIFFE URI SAN equals `asked`, and a last element made only of CA
// certificates. `ca` names the CA in the messages.
Status check_ca_response(const std::vector<std::string>& chain, const tls::SpiffeId& asked,
                         std::string_view ca);

}  // namespace zt::ca
