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
  return value_or_throw(identity::CertificateAuthority::generate(trust_domain),
                        "generating the CA");
}

}  // namespace

TestPki::TestPki(std::string trust_domain)
    : trust_domain_(std::move(trust_domain)), ca_(generate_ca(trust_domain_)) {}

TestPki TestPki::make_intermediate() const {
  return TestPki(
      trust_domain_,
      value_or_throw(ca_.make_intermediate(trust_domain_ + " intermediate", std::chrono::hours(24)),
                     "making an intermediate CA"));
}

tls::SpiffeId TestPki::id(std::string ns, std::string sa) const {
  return tls::SpiffeId{trust_domain_, std::move(ns), std::move(sa)};
}

tls::WorkloadCertificate TestPki::issue(const tls::SpiffeId& id,
                                        std::chrono::seconds validity) const {
  auto now = std::chrono::system_clock::now();
  return issue(id, now - identity::CertificateAuthority::kClockSkewAllowance, now + validity);
}

tls::WorkloadCertificate TestPki::issue(const tls::SpiffeId& id,
                                        std::chrono::system_clock::time_point not_before,
                                        std::chrono::system_clock::time_point not_after) const {
  auto key = value_or_throw(identity::generate_p256_key(), "generating a key");
  auto csr = value_or_throw(identity::make_csr_pem(key.get(), id), "making a CSR");
  auto chain =
      value_or_throw(ca_.sign_csr_with_validity(csr, not_before, not_after, id), "signing");
  return value_or_throw(tls::make_workload_certificate(std::move(key), chain),
                        "building the certificate");
}

std::shared_ptr<identity::WorkloadCredentials> TestPki::credentials(
    const tls::SpiffeId& id, std::chrono::seconds validity) const {
  return value_or_throw(identity::make_workload_credentials(issue(id, validity)),
                        "building credentials");
}

TestPki::CaFiles TestPki::write_ca_files(const std::filesystem::path& dir) const {
  std::filesystem::create_directories(dir);
  CaFiles files{dir / "ca-cert.pem", dir / "ca-key.pem"};
  auto saved = ca_.save(files.cert_path.string(), files.key_path.string());
  if (!saved) throw std::runtime_error("TestPki: writing CA files: " + saved.error().describe());
  return files;
}

ServerCert self_signed_server_cert(const char* san, const char* cn) {
  auto key = identity::generate_p256_key();
  if (!key) throw std::runtime_error(key.error().message);
  tls::X509Ptr cert(X509_new());
  X509_set_version(cert.get(), 2);
  auto serial = std::chrono::system_clock::now().time_since_epoch().count() & 0x7fffffff;
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), static_cast<long>(serial));
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 3600);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn),
                             -1, -1, 0);
  X509_set_issuer_name(cert.get(), name);
  X509_set_pubkey(cert.get(), key->get());
  X509V3_CTX v3;
  X509V3_set_ctx(&v3, cert.get(), cert.get(), nullptr, nullptr, 0);
  for (auto [nid, value] :
       {std::pair{NID_subject_alt_name, san}, std::pair{NID_basic_constraints, "critical,CA:TRUE"},
        std::pair{NID_key_usage, "critical,digitalSignature,keyCertSign"},
        std::pair{NID_ext_key_usage, "serverAuth"}}) {
    tls::X509ExtensionPtr ext(X509V3_EXT_conf_nid(nullptr, &v3, nid, value));
    if (!ext || X509_add_ext(cert.get(), ext.get(), -1) != 1) {
      throw std::runtime_error("cannot add a certificate extension");
    }
  }
  if (X509_sign(cert.get(), key->get(), EVP_sha256()) == 0) throw std::runtime_error("X509_sign");
  return {tls::cert_to_pem(cert.get()), tls::key_to_pem(key->get())};
}

}  // namespace zt::testing
