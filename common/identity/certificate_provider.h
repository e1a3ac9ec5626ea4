// Where workload certificates come from. The certificate manager only knows this interface; the
// built-in CA implements it here, and common/ca/grpc_ca_provider.h implements it as a client of
// istio.v1.auth.IstioCertificateService/CreateCertificate (istiod or meshd).
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "common/base/result.h"
#include "common/identity/certificate_authority.h"
#include "common/tls/spiffe.h"

namespace zt::identity {

class CertificateProvider {
 public:
  virtual ~CertificateProvider() = default;

  // Returns the PEM chain for `csr_pem`, leaf first, root last. `identity` is the identity the
  // CSR asks for (sent to istiod as the impersonated identity). May block; must be thread-safe.
  virtual Result<std::vector<std::string>> create_certificate(const std::string& csr_pem,
                                                              const tls::SpiffeId& identity,
                                                              std::chrono::seconds validity) = 0;
};

using SystemClock = std::function<std::chrono::system_clock::time_point()>;

// Signs with a CertificateAuthority held in the process. Only issues the identity asked for
// (the CSR's SAN must equal `identity`). Certificates run from clock() - kClockSkewAllowance to
// clock() + validity; tests with a fake clock get certificates consistent with it.
class BuiltinCaProvider : public CertificateProvider {
 public:
  explicit BuiltinCaProvider(CertificateAuthority ca, SystemClock clock = &std::chrono::system_clock::now)
      : ca_(std::move(ca)), clock_(std::move(clock)) {}

  Result<std::vector<std::string>> create_certificate(const std::string& csr_pem,
                                                      const tls::SpiffeId& identity,
                                                      std::chrono::seconds validity) override;

  const CertificateAuthority& ca() const { return ca_; }

 private:
  const CertificateAuthority ca_;
  const SystemClock clock_;
};

}  // namespace zt::identity
