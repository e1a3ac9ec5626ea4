#include "tests/support/test_pki.h"

#include <stdexcept>

#include "common/identity/csr.h"
#include "common/tls/certs.h"

namespace zt::testing {
namespace {

template <class T>
T value_or_throw(Result<T> r, std::string_view what) {
  if (!r) throw std::runtime_error(fmt::format("TestPki: {}: {}", what, r.error().describe()));
  return std::move(*r);
}

identity::CertificateAuthority generate_ca(const std::string& trust_domain) {
  return value_or_throw(identity::CertificateAuthority::generate(trust_domain), "generating the CA");
}

}  // namespace

TestPki::TestPki(std::string trust_domain)
    : trust_domain_(std::move(trust_domain)), ca_(generate_ca(trust_domain_)) {}

TestPki TestPki::make_intermediate() const {
  return TestPki(trust_domain_, value_or_throw(ca_.make_intermediate(trust_domain_ + " intermediate",
                                                                     std::chrono::hours(24)),
                                               "making an intermediate CA"));
}

tls::SpiffeId TestPki::id(std::string ns, std::string sa) const {
  return tls::SpiffeId{trust_domain_, std::move(ns), std::move(sa)};
}

tls::WorkloadCertificate TestPki::issue(const tls::SpiffeId& id, std::chrono::seconds validity) const {
  auto now = std::chrono::system_clock::now();
  return issue(id, now - identity::CertificateAuthority::kClockSkewAllowance, now + validity);
}

tls::WorkloadCertificate TestPki::issue(const tls::SpiffeId& id,
                                        std::chrono::system_clock::time_point not_before,
                                        std::chrono::system_clock::time_point not_after) const {
  auto key = value_or_throw(identity::generate_p256_key(), "generating a key");
  auto csr = value_or_throw(identity::make_csr_pem(key.get(), id), "making a CSR");
  auto chain = value_or_throw(ca_.sign_csr_with_validity(csr, not_before, not_after, id), "signing");
  return value_or_throw(tls::make_workload_certificate(std::move(key), chain), "building the certificate");
}

std::shared_ptr<identity::WorkloadCredentials> TestPki::credentials(const tls::SpiffeId& id,
                                                                    std::chrono::seconds validity) const {
  return value_or_throw(identity::make_workload_credentials(issue(id, validity)), "building credentials");
}

TestPki::CaFiles TestPki::write_ca_files(const std::filesystem::path& dir) const {
  std::filesystem::create_directories(dir);
  CaFiles files{dir / "ca-cert.pem", dir / "ca-key.pem"};
  auto saved = ca_.save(files.cert_path.string(), files.key_path.string());
  if (!saved) throw std::runtime_error("TestPki: writing CA files: " + saved.error().describe());
  return files;
}

}  // namespace zt::testing
