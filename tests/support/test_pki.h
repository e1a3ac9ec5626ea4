// TestPki: a CA generated when the test runs, and workload certificates from it, so no test
// depends on checked-in keys or on certificates that expire. Failures throw std::runtime_error
// (gtest reports it as the test's failure): a broken PKI means the test cannot run at all.
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>

#include "common/identity/certificate_authority.h"
#include "common/identity/credentials.h"
#include "common/tls/context.h"
#include "common/tls/spiffe.h"

namespace zt::testing {

class TestPki {
 public:
  explicit TestPki(std::string trust_domain = "cluster.local");

  // A TestPki whose CA is an intermediate signed by this one: its certificates carry the
  // intermediate in their chain and are trusted by this PKI's root.
  TestPki make_intermediate() const;

  const std::string& trust_domain() const { return trust_domain_; }
  const identity::CertificateAuthority& ca() const { return ca_; }
  std::string root_pem() const { return ca_.root_pem(); }

  // spiffe://<this trust domain>/ns/<ns>/sa/<sa>
  tls::SpiffeId id(std::string ns, std::string sa = "default") const;

  // A new key and a certificate for `id` (any trust domain: the CA signs whatever it is asked),
  // valid from now for `validity` (backdated by the CA's clock-skew allowance, like every
  // certificate the CA issues), or for exactly [not_before, not_after] (e.g. already expired).
  tls::WorkloadCertificate issue(const tls::SpiffeId& id,
                                 std::chrono::seconds validity = std::chrono::hours(1)) const;
  tls::WorkloadCertificate issue(const tls::SpiffeId& id,
                                 std::chrono::system_clock::time_point not_before,
                                 std::chrono::system_clock::time_point not_after) const;

  // issue() plus the HBONE server and client TLS contexts.
  std::shared_ptr<identity::WorkloadCredentials> credentials(
      const tls::SpiffeId& id, std::chrono::seconds validity = std::chrono::hours(1)) const;

  struct CaFiles {
    std::filesystem::path cert_path, key_path;
  };
  // Writes ca-cert.pem and ca-key.pem into `dir` (created if missing), for daemons started with
  // --ca-cert/--ca-key.
  CaFiles write_ca_files(const std::filesystem::path& dir) const;

 private:
  TestPki(std::string trust_domain, identity::CertificateAuthority ca)
      : trust_domain_(std::move(trust_domain)), ca_(std::move(ca)) {}

  std::string trust_domain_;
  identity::CertificateAuthority ca_;
};

// A TLS server certificate that is its own root (self-signed, CA:TRUE, serverAuth), for a test
// server the client verifies by host name: `san` is the subjectAltName list
// ("IP:127.0.0.1,DNS:localhost"), `cn` the subject's common name. Valid for an hour either side
// of now.
struct ServerCert {
  std::string cert_pem, key_pem;
};
ServerCert self_signed_server_cert(const char* san, const char* cn = "test server");

}  // namespace zt::testing
