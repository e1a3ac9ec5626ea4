#include "common/identity/certificate_authority.h"

#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "common/identity/csr.h"
#include "common/tls/certs.h"

namespace zt::identity {
namespace {

using std::chrono::system_clock;

constexpr auto kRootValidity = std::chrono::days(3650);
// Clock skew between the node that makes the root and the nodes that check it must not make a
// fresh root look "not yet valid"; leaves are not backdated (their dates are the caller's choice).
constexpr auto kRootBackdate = std::chrono::hours(1);

Result<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return failf("cannot open {}: {}", path, std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return failf("cannot read {}: {}", path, std::strerror(errno));
  return ss.str();
}

// Writes to "<path>.tmp" and renames over `path`, so readers see the old file or the new one.
Status write_file_atomic(const std::string& path, std::string_view content, mode_t mode) {
  std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return failf("cannot create {}: {}", tmp, std::strerror(errno));
  auto fail_and_clean = [&](std::string_view what) {
    int err = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    return failf("cannot {} {}: {}", what, tmp, std::strerror(err));
  };
  // open() applies the umask and keeps the mode of a file that already existed; set it exactly.
  if (::fchmod(fd, mode) != 0) return fail_and_clean("chmod");
  size_t done = 0;
  while (done < content.size()) {
    ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail_and_clean("write");
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) return fail_and_clean("fsync");
  if (::close(fd) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return failf("cannot close {}: {}", tmp, std::strerror(err));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return failf("cannot rename {} to {}: {}", tmp, path, std::strerror(err));
  }
  return {};
}

// 128 random bits, never zero; positive as RFC 5280 requires.
Result<tls::Asn1IntegerPtr> random_serial() {
  tls::BignumPtr bn(BN_new());
  if (!bn) return tls::fail_openssl("allocating a serial number");
  do {
    if (BN_rand(bn.get(), 128, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) != 1) {
      return tls::fail_openssl("generating a random serial number");
    }
  } while (BN_is_zero(bn.get()));
  tls::Asn1IntegerPtr serial(BN_to_ASN1_INTEGER(bn.get(), nullptr));
  if (!serial) return tls::fail_openssl("encoding the serial number");
  return serial;
}

Status set_time(ASN1_TIME* t, system_clock::time_point tp, std::string_view what) {
  if (ASN1_TIME_set(t, system_clock::to_time_t(tp)) == nullptr) {
    return tls::fail_openssl(fmt::format("setting {}", what));
  }
  return {};
}

// Adds one extension written in OpenSSL's config syntax (only for fixed strings from this file;
// anything derived from input, such as the SAN, is built structurally instead).
Status add_extension(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  tls::X509ExtensionPtr ext(X509V3_EXT_nconf_nid(nullptr, &ctx, nid, value));
  if (!ext) return tls::fail_openssl(fmt::format("making extension {}={}", OBJ_nid2sn(nid), value));
  if (X509_add_ext(cert, ext.get(), -1) != 1) {
    return tls::fail_openssl(fmt::format("adding extension {}", OBJ_nid2sn(nid)));
  }
  return {};
}

// Returns early with the error of a failed Result or Status. Certificate building is a long run
// of OpenSSL calls each of which can fail; this keeps every one of them checked and readable.
#define ZT_TRY(expr)                                     \
  do {                                                   \
    if (auto&& zt_try_status = (expr); !zt_try_status) { \
      return tl::unexpected(zt_try_status.error());      \
    }                                                    \
  } while (0)

// A CA certificate for `key` named O=<organization>, signed by `issuer`/`issuer_key`, or
// self-signed when `issuer` is null.
Result<tls::X509Ptr> make_ca_certificate(std::string_view organization, EVP_PKEY* key, X509* issuer,
                                         EVP_PKEY* issuer_key, system_clock::time_point not_before,
                                         system_clock::time_point not_after, bool leaf_ca_only) {
  ERR_clear_error();
  tls::X509Ptr cert(X509_new());
  if (!cert) return tls::fail_openssl("allocating the CA certificate");
  X509* c = cert.get();
  ZT_TRY(X509_set_version(c, 2) == 1 ? Status{} : tls::fail_openssl("setting the version"));
  auto serial = random_serial();
  ZT_TRY(serial);
  ZT_TRY(X509_set_serialNumber(c, serial->get()) == 1 ? Status{} : tls::fail_openssl("setting the serial"));

  X509_NAME* name = X509_get_subject_name(c);
  std::string org(organization);
  if (X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8,
                                 reinterpret_cast<const unsigned char*>(org.c_str()), -1, -1, 0) != 1) {
    return tls::fail_openssl("setting the CA subject");
  }
  X509_NAME* issuer_name = issuer != nullptr ? X509_get_subject_name(issuer) : name;
  ZT_TRY(X509_set_issuer_name(c, issuer_name) == 1 ? Status{} : tls::fail_openssl("setting the CA issuer"));
  ZT_TRY(set_time(X509_getm_notBefore(c), not_before, "notBefore"));
  ZT_TRY(set_time(X509_getm_notAfter(c), not_after, "notAfter"));
  ZT_TRY(X509_set_pubkey(c, key) == 1 ? Status{} : tls::fail_openssl("setting the CA public key"));

  X509* signer = issuer != nullptr ? issuer : c;
  // An intermediate made here only signs workload certificates, never further CAs.
  ZT_TRY(add_extension(c, signer, NID_basic_constraints,
                       leaf_ca_only ? "critical,CA:TRUE,pathlen:0" : "critical,CA:TRUE"));
  ZT_TRY(add_extension(c, signer, NID_key_usage, "critical,keyCertSign,cRLSign,digitalSignature"));
  ZT_TRY(add_extension(c, signer, NID_subject_key_identifier, "hash"));
  ZT_TRY(add_extension(c, signer, NID_authority_key_identifier, "keyid:always"));
  if (X509_sign(c, issuer_key != nullptr ? issuer_key : key, EVP_sha256()) <= 0) {
    return tls::fail_openssl("signing the CA certificate");
  }
  return cert;
}

}  // namespace

Result<CertificateAuthority> CertificateAuthority::load(const std::string& cert_path,
                                                        const std::string& key_path) {
  auto cert_pem = read_file(cert_path);
  if (!cert_pem) return tl::unexpected(wrap(cert_pem.error(), "loading the CA certificate"));
  auto key_pem = read_file(key_path);
  if (!key_pem) return tl::unexpected(wrap(key_pem.error(), "loading the CA key"));
  auto ca = from_pem(*cert_pem, *key_pem);
  if (!ca)
    return tl::unexpected(
        wrap(ca.error(), fmt::format("loading the CA from {} and {}", cert_path, key_path)));
  return ca;
}

Result<CertificateAuthority> CertificateAuthority::from_pem(std::string_view cert_pem,
                                                            std::string_view key_pem) {
  auto certs = tls::parse_pem_certs(cert_pem);
  if (!certs) return tl::unexpected(wrap(certs.error(), "CA certificate"));
  auto key = tls::parse_pem_key(key_pem);
  if (!key) return tl::unexpected(wrap(key.error(), "CA key"));
  X509* signer = certs->front().get();
  ERR_clear_error();
  if (X509_check_private_key(signer, key->get()) != 1) {
    return tls::fail_openssl("the CA key does not match the CA certificate");
  }
  if (X509_check_ca(signer) != 1) {
    return failf("certificate '{}' is not a CA (no basicConstraints CA:TRUE)", tls::subject_of(signer));
  }
  return CertificateAuthority(std::move(*certs), std::move(*key));
}

Result<CertificateAuthority> CertificateAuthority::generate(std::string_view trust_domain) {
  if (auto s = tls::SpiffeId::check_trust_domain(trust_domain); !s) {
    return tl::unexpected(wrap(s.error(), "generating a CA"));
  }
  auto key = generate_p256_key();
  if (!key) return tl::unexpected(wrap(key.error(), "generating a CA"));
  auto now = system_clock::now();
  auto cert = make_ca_certificate(trust_domain, key->get(), nullptr, nullptr, now - kRootBackdate,
                                  now + kRootValidity, false);
  if (!cert) return tl::unexpected(wrap(cert.error(), "generating a CA"));
  std::vector<tls::X509Ptr> chain;
  chain.push_back(std::move(*cert));
  return CertificateAuthority(std::move(chain), std::move(*key));
}

Result<CertificateAuthority> CertificateAuthority::make_intermediate(std::string_view organization,
                                                                     std::chrono::seconds validity) const {
  if (organization.empty()) return fail("making an intermediate CA: empty organization");
  auto key = generate_p256_key();
  if (!key) return tl::unexpected(wrap(key.error(), "making an intermediate CA"));
  auto now = system_clock::now();
  auto not_after = std::min(now + validity, tls::not_after(certificate()));
  auto cert = make_ca_certificate(organization, key->get(), certificate(), key_.get(), now - kRootBackdate,
                                  not_after, true);
  if (!cert) return tl::unexpected(wrap(cert.error(), "making an intermediate CA"));
  std::vector<tls::X509Ptr> chain;
  chain.push_back(std::move(*cert));
  for (const auto& c : chain_) chain.push_back(tls::up_ref(c.get()));
  return CertificateAuthority(std::move(chain), std::move(*key));
}

Status CertificateAuthority::save(const std::string& cert_path, const std::string& key_path) const {
  std::string key_pem = tls::key_to_pem(key_.get());
  if (key_pem.empty()) return tls::fail_openssl("encoding the CA key");
  if (auto s = write_file_atomic(key_path, key_pem, 0600); !s)
    return tl::unexpected(wrap(s.error(), "saving the CA key"));
  if (auto s = write_file_atomic(cert_path, chain_pem(), 0644); !s) {
    return tl::unexpected(wrap(s.error(), "saving the CA certificate"));
  }
  return {};
}

Result<std::vector<std::string>> CertificateAuthority::sign_csr(
    std::string_view csr_pem, std::chrono::seconds validity,
    const std::optional<tls::SpiffeId>& required_identity) const {
  if (validity <= std::chrono::seconds::zero())
    return failf("validity must be positive, got {}s", validity.count());
  auto now = system_clock::now();
  return sign_csr_with_validity(csr_pem, now - kClockSkewAllowance, now + validity, required_identity);
}

Result<std::vector<std::string>> CertificateAuthority::sign_csr_with_validity(
    std::string_view csr_pem, system_clock::time_point not_before, system_clock::time_point not_after,
    const std::optional<tls::SpiffeId>& required_identity) const {
  auto csr = parse_csr_pem(csr_pem);
  if (!csr) return tl::unexpected(wrap(csr.error(), "rejecting CSR"));
  if (required_identity && csr->id != *required_identity) {
    return failf("rejecting CSR: it asks for {} but the request is for {}", csr->id, *required_identity);
  }
  return issue(csr->public_key.get(), csr->id, not_before, not_after);
}

Result<std::vector<std::string>> CertificateAuthority::issue(EVP_PKEY* public_key, const tls::SpiffeId& id,
                                                             system_clock::time_point not_before,
                                                             system_clock::time_point not_after) const {
  if (public_key == nullptr) return fail("no public key to certify");
  if (auto valid = tls::SpiffeId::parse(id.uri()); !valid) return tl::unexpected(valid.error());
  if (not_after <= not_before)
    return fail("certificate would end before it starts (not_after <= not_before)");
  if (not_after > tls::not_after(certificate())) {
    return fail("requested validity ends after the CA certificate expires");
  }
  ERR_clear_error();
  X509* issuer = certificate();
  tls::X509Ptr cert(X509_new());
  if (!cert) return tls::fail_openssl("allocating a certificate");
  X509* c = cert.get();
  ZT_TRY(X509_set_version(c, 2) == 1 ? Status{} : tls::fail_openssl("setting the version"));
  auto serial = random_serial();
  ZT_TRY(serial);
  ZT_TRY(X509_set_serialNumber(c, serial->get()) == 1 ? Status{} : tls::fail_openssl("setting the serial"));
  // The subject stays empty, as istiod's: the identity lives only in the (critical) SAN.
  ZT_TRY(X509_set_issuer_name(c, X509_get_subject_name(issuer)) == 1
             ? Status{}
             : tls::fail_openssl("setting the issuer"));
  ZT_TRY(set_time(X509_getm_notBefore(c), not_before, "notBefore"));
  ZT_TRY(set_time(X509_getm_notAfter(c), not_after, "notAfter"));
  ZT_TRY(X509_set_pubkey(c, public_key) == 1 ? Status{} : tls::fail_openssl("setting the public key"));

  ZT_TRY(add_extension(c, issuer, NID_basic_constraints, "critical,CA:FALSE"));
  ZT_TRY(add_extension(c, issuer, NID_key_usage, "critical,digitalSignature,keyEncipherment"));
  ZT_TRY(add_extension(c, issuer, NID_ext_key_usage, "serverAuth,clientAuth"));
  ZT_TRY(add_extension(c, issuer, NID_subject_key_identifier, "hash"));
  ZT_TRY(add_extension(c, issuer, NID_authority_key_identifier, "keyid:always"));
  // Rebuilt from the parsed id rather than copied from the CSR, so the certificate carries
  // exactly one URI whatever else the CSR's extension held.
  auto san = make_uri_san_extension(id.uri());
  ZT_TRY(san);
  ZT_TRY(X509_add_ext(c, san->get(), -1) == 1 ? Status{} : tls::fail_openssl("adding the subjectAltName"));

  if (X509_sign(c, key_.get(), EVP_sha256()) <= 0) return tls::fail_openssl("signing the certificate");

  std::vector<std::string> out;
  out.reserve(1 + chain_.size());
  out.push_back(tls::cert_to_pem(c));
  for (const auto& ca : chain_) out.push_back(tls::cert_to_pem(ca.get()));
  for (const auto& pem : out) {
    if (pem.empty()) return tls::fail_openssl("encoding the certificate chain");
  }
  return out;
}

std::string CertificateAuthority::root_pem() const { return tls::cert_to_pem(chain_.back().get()); }

std::string CertificateAuthority::chain_pem() const { return tls::certs_to_pem(chain_); }

}  // namespace zt::identity
