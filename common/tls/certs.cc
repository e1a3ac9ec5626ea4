#include "common/tls/certs.h"

#include <openssl/err.h>
#include <openssl/pem.h>

#include <cctype>
#include <ctime>

namespace zt::tls {
namespace {

// Refuses encrypted PEM instead of letting OpenSSL prompt on the terminal.
int no_password(char* /*buf*/, int /*size*/, int /*rwflag*/, void* /*u*/) { return -1; }

bool is_end_of_pem(unsigned long e) {
  return ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE;
}

std::chrono::system_clock::time_point to_time_point(const ASN1_TIME* t) {
  std::tm tm{};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) {
    // An unreadable time counts as the epoch: a certificate with an unreadable not_after is
    // treated as expired, never as valid forever.
    return std::chrono::system_clock::time_point{};
  }
  using namespace std::chrono;
  // Calendar arithmetic instead of timegm(): no dependence on the platform's time_t width.
  sys_days day = year{tm.tm_year + 1900} / month{static_cast<unsigned>(tm.tm_mon + 1)} /
                 std::chrono::day{static_cast<unsigned>(tm.tm_mday)};
  return time_point_cast<system_clock::duration>(day + hours{tm.tm_hour} + minutes{tm.tm_min} +
                                                 seconds{tm.tm_sec});
}

std::string name_to_string(const X509_NAME* name) {
  auto bio = memory_bio();
  if (!bio || name == nullptr) return {};
  if (X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253) < 0) {
    ERR_clear_error();
    return {};
  }
  return bio_contents(bio.get());
}

}  // namespace

Result<std::vector<X509Ptr>> parse_pem_certs(std::string_view pem) {
  ERR_clear_error();
  auto bio = memory_bio(pem);
  if (!bio) return fail_openssl("creating a memory BIO for PEM certificates");
  std::vector<X509Ptr> certs;
  while (true) {
    X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, no_password, nullptr));
    if (!cert) {
      if (is_end_of_pem(ERR_peek_last_error())) {
        ERR_clear_error();
        break;
      }
      return fail_openssl(fmt::format("decoding PEM certificate #{}", certs.size() + 1));
    }
    certs.push_back(std::move(cert));
  }
  if (certs.empty()) return fail("no certificate in PEM input (no '-----BEGIN CERTIFICATE-----' block)");
  return certs;
}

Result<EvpPkeyPtr> parse_pem_key(std::string_view pem) {
  // OpenSSL 3's decoders report "no key block" and "undecodable key" alike ("unsupported"), so
  // the two common mistakes are recognised from the text first for a clearer message.
  if (pem.find("PRIVATE KEY-----") == std::string_view::npos) {
    return fail("no private key in PEM input (no '-----BEGIN PRIVATE KEY-----' block)");
  }
  if (pem.find("ENCRYPTED PRIVATE KEY-----") != std::string_view::npos ||
      pem.find("Proc-Type: 4,ENCRYPTED") != std::string_view::npos) {
    return fail("the private key is encrypted; an unencrypted PEM key is required");
  }
  ERR_clear_error();
  auto bio = memory_bio(pem);
  if (!bio) return fail_openssl("creating a memory BIO for a PEM key");
  EvpPkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, no_password, nullptr));
  if (!key) return fail_openssl("decoding PEM private key");
  return key;
}

std::string cert_to_pem(X509* cert) {
  auto bio = memory_bio();
  if (!bio || cert == nullptr || PEM_write_bio_X509(bio.get(), cert) != 1) {
    ERR_clear_error();
    return {};
  }
  return bio_contents(bio.get());
}

std::string key_to_pem(EVP_PKEY* key) {
  auto bio = memory_bio();
  if (!bio || key == nullptr ||
      PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    ERR_clear_error();
    return {};
  }
  return bio_contents(bio.get());
}

std::string certs_to_pem(const std::vector<X509Ptr>& certs) {
  std::string out;
  for (const auto& c : certs) out += cert_to_pem(c.get());
  return out;
}

std::vector<std::string> uri_sans(X509* cert) {
  std::vector<std::string> out;
  if (cert == nullptr) return out;
  // With a null `crit` OpenSSL returns null both for "absent" and for "present twice"; a
  // certificate with two SAN extensions is ambiguous, so it has no usable SAN.
  GeneralNamesPtr names(
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr)));
  ERR_clear_error();
  if (!names) return out;
  for (int i = 0; i < sk_GENERAL_NAME_num(names.get()); ++i) {
    const GENERAL_NAME* gn = sk_GENERAL_NAME_value(names.get(), i);
    if (gn->type != GEN_URI || gn->d.uniformResourceIdentifier == nullptr) continue;
    const ASN1_IA5STRING* s = gn->d.uniformResourceIdentifier;
    out.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                     static_cast<size_t>(ASN1_STRING_length(s)));
  }
  return out;
}

Result<SpiffeId> spiffe_id_of(X509* cert) {
  if (cert == nullptr) return fail("no certificate");
  auto sans = uri_sans(cert);
  for (const auto& uri : sans) {
    if (auto id = SpiffeId::parse(uri)) return *id;
  }
  if (sans.empty()) return failf("certificate (serial {}) has no URI SAN", serial_hex(cert));
  return failf("certificate (serial {}) has no SPIFFE URI SAN among [{}]", serial_hex(cert),
               fmt::join(sans, ", "));
}

std::chrono::system_clock::time_point not_before(X509* cert) {
  return to_time_point(cert == nullptr ? nullptr : X509_get0_notBefore(cert));
}

std::chrono::system_clock::time_point not_after(X509* cert) {
  return to_time_point(cert == nullptr ? nullptr : X509_get0_notAfter(cert));
}

std::string format_time(std::chrono::system_clock::time_point t) {
  std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  if (gmtime_r(&tt, &tm) == nullptr) return "invalid-time";
  char buf[32];
  size_t n = std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return std::string(buf, n);
}

std::string serial_hex(X509* cert) {
  if (cert == nullptr) return {};
  BignumPtr bn(ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nullptr));
  if (!bn) {
    ERR_clear_error();
    return {};
  }
  OpensslStringPtr hex(BN_bn2hex(bn.get()));
  if (!hex) {
    ERR_clear_error();
    return {};
  }
  std::string_view s(hex.get());
  std::string out;
  if (s.starts_with('-')) {
    out += '-';
    s.remove_prefix(1);
  }
  while (s.size() > 1 && s.front() == '0') s.remove_prefix(1);
  for (char c : s) out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string subject_of(X509* cert) {
  return cert == nullptr ? std::string() : name_to_string(X509_get_subject_name(cert));
}

std::string issuer_of(X509* cert) {
  return cert == nullptr ? std::string() : name_to_string(X509_get_issuer_name(cert));
}

}  // namespace zt::tls
