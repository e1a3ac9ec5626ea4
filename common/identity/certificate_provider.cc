#include "common/identity/certificate_provider.h"

namespace zt::identity {

Result<std::vector<std::string>> BuiltinCaProvider::create_certificate(const std::string& csr_pem,
                                                                       const tls::SpiffeId& identity,
                                                                       std::chrono::seconds validity) {
  if (validity <= std::chrono::seconds::zero()) {
    return failf("built-in CA: validity must be positive, got {}s", validity.count());
  }
  auto now = clock_();
  auto chain = ca_.sign_csr_with_validity(csr_pem, now - CertificateAuthority::kClockSkewAllowance,
                                          now + validity, identity);
  if (!chain) return tl::unexpected(wrap(chain.error(), "built-in CA"));
  return chain;
}

}  // namespace zt::identity
