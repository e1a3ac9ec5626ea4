// The built-in CA: a signing certificate and key (from disk or generated) that turns workload
// CSRs into certificates shaped like those istiod issues. It serves tests, the simulator and
// clusters run without istiod; a real cluster uses istiod through a CertificateProvider.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/base/result.h"
#include "common/tls/openssl.h"
#include "common/tls/spiffe.h"

namespace zt::identity {

class CertificateAuthority {
 public:
  // `cert_path` holds the signing certificate first, then (optionally) the certificates above it
  // up to the root; `key_path` holds the signing key. The key must match the certificate and the
  // certificate must be a CA.
  static Result<CertificateAuthority> load(const std::string& cert_path, const std::string& key_path);
  static Result<CertificateAuthority> from_pem(std::string_view cert_pem, std::string_view key_pem);

  // A fresh self-signed root: EC P-256, CA:TRUE, valid for 10 years from now, subject
  // O=<trust domain>.
  static Result<CertificateAuthority> generate(std::string_view trust_domain);

  // An intermediate CA (EC P-256, CA:TRUE with pathlen 0, subject O=<organization>) signed by
  // this one, valid for `validity` but not beyond this CA. Its chain is the new certificate
  // followed by this CA's chain, so what it issues chains up to the same root.
  Result<CertificateAuthority> make_intermediate(std::string_view organization,
                                                 std::chrono::seconds validity) const;

  CertificateAuthority(CertificateAuthority&&) noexcept = default;
  CertificateAuthority& operator=(CertificateAuthority&&) noexcept = default;
  CertificateAuthority(const CertificateAuthority&) = delete;
  CertificateAuthority& operator=(const CertificateAuthority&) = delete;

  // Writes the certificates (PEM) and the key (PKCS#8 PEM, mode 0600). Each file is written to a
  // temporary name and renamed, so a reader never sees half a key.
  Status save(const std::string& cert_path, const std::string& key_path) const;

  // Leaves from sign_csr() start this long before "now". X.509 times have one-second
  // granularity and verifiers read clocks that differ from ours (other nodes, or just the
  // coarse clock behind time(): a certificate dated to the current second can be "not yet
  // valid" for a verifier a few milliseconds behind).
  static constexpr std::chrono::seconds kClockSkewAllowance{60};

  // Issues a certificate for the CSR's URI SAN, valid from now - kClockSkewAllowance until now +
  // `validity`. Returns PEM
  // certificates, leaf first, root last (as IstioCertificateService does). When
  // `required_identity` is given the CSR must ask for exactly that identity.
  // Leaf: empty subject, the CSR's URI SAN (critical), ECDSA-SHA256 (for an EC CA key), EKU
  // serverAuth+clientAuth, keyUsage digitalSignature+keyEncipherment, random 128-bit serial,
  // SKI/AKI, basicConstraints CA:FALSE.
  Result<std::vector<std::string>> sign_csr(std::string_view csr_pem, std::chrono::seconds validity,
                                            const std::optional<tls::SpiffeId>& required_identity) const;

  // The same with explicit dates, for certificates from the past or future (tests) and for
  // callers with their own clock.
  Result<std::vector<std::string>> sign_csr_with_validity(
      std::string_view csr_pem, std::chrono::system_clock::time_point not_before,
      std::chrono::system_clock::time_point not_after,
      const std::optional<tls::SpiffeId>& required_identity) const;

  // Issues a leaf for `public_key` and `id` directly, without a CSR (the CSR paths above end
  // here after checking the CSR). Same certificate profile as sign_csr.
  Result<std::vector<std::string>> issue(EVP_PKEY* public_key, const tls::SpiffeId& id,
                                         std::chrono::system_clock::time_point not_before,
                                         std::chrono::system_clock::time_point not_after) const;

  // The last certificate of the CA's chain (the root peers must trust).
  std::string root_pem() const;
  // The signing certificate and the ones above it, as loaded or generated.
  std::string chain_pem() const;
  X509* certificate() const { return chain_.front().get(); }

 private:
  CertificateAuthority(std::vector<tls::X509Ptr> chain, tls::EvpPkeyPtr key)
      : chain_(std::move(chain)), key_(std::move(key)) {}

  std::vector<tls::X509Ptr> chain_;  // signing certificate first, root last; never empty
  tls::EvpPkeyPtr key_;
};

}  // namespace zt::identity
