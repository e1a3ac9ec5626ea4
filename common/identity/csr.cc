#include "common/identity/csr.h"

#include <openssl/err.h>
#include <openssl/pem.h>

#include <climits>

namespace zt::identity {
namespace {

int no_password(char* /*buf*/, int /*size*/, int /*rwflag*/, void* /*u*/) { return -1; }

// Below 112 bits of security (RSA < 2048, EC < 224) a key is refused whatever its type.
constexpr int kMinSecurityBits = 112;

Status check_p256(EVP_PKEY* key) {
  if (key == nullptr) return fail("no key");
  if (EVP_PKEY_is_a(key, "EC") != 1) return failf("key is {}, want EC P-256", EVP_PKEY_get0_type_name(key));
  char group[64] = {};
  size_t len = 0;
  if (EVP_PKEY_get_group_name(key, group, sizeof(group), &len) != 1) {
    return tls::fail_openssl("reading the key's curve");
  }
  std::string_view g(group, len);
  if (g != "prime256v1" && g != "P-256") return failf("key is on curve {}, want P-256", g);
  return {};
}

}  // namespace

Result<tls::EvpPkeyPtr> generate_p256_key() {
  ERR_clear_error();
  tls::EvpPkeyPtr key(EVP_EC_gen("P-256"));
  if (!key) return tls::fail_openssl("generating an EC P-256 key");
  return key;
}

Result<tls::X509ExtensionPtr> make_uri_san_extension(std::string_view uri) {
  ERR_clear_error();
  if (uri.size() > static_cast<size_t>(INT_MAX)) return fail("URI too long");
  tls::GeneralNamesPtr names(GENERAL_NAMES_new());
  GENERAL_NAME* gn = GENERAL_NAME_new();
  ASN1_IA5STRING* ia5 = ASN1_IA5STRING_new();
  if (!names || gn == nullptr || ia5 == nullptr) {
    GENERAL_NAME_free(gn);
    ASN1_IA5STRING_free(ia5);
    return tls::fail_openssl("allocating a subjectAltName");
  }
  if (ASN1_STRING_set(ia5, uri.data(), static_cast<int>(uri.size())) != 1) {
    GENERAL_NAME_free(gn);
    ASN1_IA5STRING_free(ia5);
    return tls::fail_openssl("setting the URI SAN");
  }
  GENERAL_NAME_set0_value(gn, GEN_URI, ia5);  // gn owns ia5 now
  if (sk_GENERAL_NAME_push(names.get(), gn) == 0) {
    GENERAL_NAME_free(gn);
    return tls::fail_openssl("building the subjectAltName");
  }
  tls::X509ExtensionPtr ext(X509V3_EXT_i2d(NID_subject_alt_name, /*crit=*/1, names.get()));
  if (!ext) return tls::fail_openssl("encoding the subjectAltName extension");
  return ext;
}

Result<std::string> make_csr_pem(EVP_PKEY* key, const tls::SpiffeId& id) {
  if (auto s = check_p256(key); !s) return tl::unexpected(wrap(s.error(), "making a CSR"));
  // Refuse to put something into a SAN that we would refuse to read back.
  if (auto parsed = tls::SpiffeId::parse(id.uri()); !parsed) {
    return tl::unexpected(wrap(parsed.error(), "making a CSR"));
  }
  ERR_clear_error();
  tls::X509ReqPtr req(X509_REQ_new());
  if (!req) return tls::fail_openssl("allocating a CSR");
  // The subject stays the empty name X509_REQ_new() starts with: the identity is only in the SAN.
  if (X509_REQ_set_version(req.get(), 0) != 1) return tls::fail_openssl("setting the CSR version");
  if (X509_REQ_set_pubkey(req.get(), key) != 1) return tls::fail_openssl("setting the CSR public key");

  auto san = make_uri_san_extension(id.uri());
  if (!san) return tl::unexpected(wrap(san.error(), "making a CSR"));
  tls::X509ExtensionStackPtr exts(sk_X509_EXTENSION_new_null());
  if (!exts || sk_X509_EXTENSION_push(exts.get(), san->get()) == 0) {
    return tls::fail_openssl("building the CSR extension list");
  }
  san->release();  // owned by the stack now
  if (X509_REQ_add_extensions(req.get(), exts.get()) != 1) {
    return tls::fail_openssl("adding extensions to the CSR");
  }
  if (X509_REQ_sign(req.get(), key, EVP_sha256()) <= 0) return tls::fail_openssl("signing the CSR");

  auto bio = tls::memory_bio();
  if (!bio || PEM_write_bio_X509_REQ(bio.get(), req.get()) != 1) {
    return tls::fail_openssl("writing the CSR as PEM");
  }
  return tls::bio_contents(bio.get());
}

Result<ParsedCsr> parse_csr_pem(std::string_view pem) {
  ERR_clear_error();
  auto bio = tls::memory_bio(pem);
  if (!bio) return tls::fail_openssl("creating a memory BIO for a CSR");
  ParsedCsr out;
  out.req.reset(PEM_read_bio_X509_REQ(bio.get(), nullptr, no_password, nullptr));
  if (!out.req) return tls::fail_openssl("decoding PEM certificate request");

  out.public_key.reset(X509_REQ_get_pubkey(out.req.get()));
  if (!out.public_key) return tls::fail_openssl("reading the CSR public key");
  if (EVP_PKEY_get_security_bits(out.public_key.get()) < kMinSecurityBits) {
    return failf("CSR public key ({} {} bits) is too weak", EVP_PKEY_get0_type_name(out.public_key.get()),
                 EVP_PKEY_get_bits(out.public_key.get()));
  }
  if (X509_REQ_verify(out.req.get(), out.public_key.get()) != 1) {
    return tls::fail_openssl("CSR signature does not verify");
  }

  tls::X509ExtensionStackPtr exts(X509_REQ_get_extensions(out.req.get()));
  if (!exts) {
    // No extensionRequest attribute reads as "no extensions"; a malformed one leaves an error.
    std::string detail = ERR_peek_error() != 0 ? tls::openssl_errors() : "no extensions";
    return failf("CSR has no subjectAltName extension ({})", detail);
  }
  X509_EXTENSION* san = nullptr;
  for (int i = 0; i < sk_X509_EXTENSION_num(exts.get()); ++i) {
    X509_EXTENSION* ext = sk_X509_EXTENSION_value(exts.get(), i);
    if (OBJ_obj2nid(X509_EXTENSION_get_object(ext)) != NID_subject_alt_name) continue;
    if (san != nullptr) return fail("CSR has more than one subjectAltName extension");
    san = ext;
  }
  if (san == nullptr) return fail("CSR has no subjectAltName extension");

  tls::GeneralNamesPtr names(static_cast<GENERAL_NAMES*>(X509V3_EXT_d2i(san)));
  if (!names) return tls::fail_openssl("decoding the CSR subjectAltName");
  int n = sk_GENERAL_NAME_num(names.get());
  if (n != 1) return failf("CSR subjectAltName has {} entries, want exactly one SPIFFE URI", n);
  const GENERAL_NAME* gn = sk_GENERAL_NAME_value(names.get(), 0);
  if (gn->type != GEN_URI || gn->d.uniformResourceIdentifier == nullptr) {
    return failf("CSR subjectAltName entry is not a URI (GENERAL_NAME type {}), want a SPIFFE URI", gn->type);
  }
  const ASN1_IA5STRING* s = gn->d.uniformResourceIdentifier;
  out.uri.assign(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                 static_cast<size_t>(ASN1_STRING_length(s)));
  auto id = tls::SpiffeId::parse(out.uri);
  if (!id) return tl::unexpected(wrap(id.error(), "CSR subjectAltName"));
  out.id = std::move(*id);
  return out;
}

}  // namespace zt::identity
