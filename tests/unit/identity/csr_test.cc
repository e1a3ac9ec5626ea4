#include "common/identity/csr.h"

#include <gtest/gtest.h>
#include <openssl/pem.h>

#include "common/tls/certs.h"

namespace zt::identity {
namespace {

bool contains(const std::string& s, std::string_view part) { return s.find(part) != std::string::npos; }

tls::X509ReqPtr read_req(const std::string& pem) {
  auto bio = tls::memory_bio(pem);
  return tls::X509ReqPtr(PEM_read_bio_X509_REQ(bio.get(), nullptr, nullptr, nullptr));
}

std::string req_to_pem(X509_REQ* req) {
  auto bio = tls::memory_bio();
  PEM_write_bio_X509_REQ(bio.get(), req);
  return tls::bio_contents(bio.get());
}

// A CSR signed by `key` carrying `sans` (any GENERAL_NAMEs) in one SAN extension, or none.
std::string custom_csr(EVP_PKEY* key, const std::vector<std::pair<int, std::string>>& sans,
                       int san_extensions = 1) {
  tls::X509ReqPtr req(X509_REQ_new());
  X509_REQ_set_pubkey(req.get(), key);
  tls::X509ExtensionStackPtr exts(sk_X509_EXTENSION_new_null());
  for (int n = 0; n < san_extensions; ++n) {
    tls::GeneralNamesPtr names(GENERAL_NAMES_new());
    for (const auto& [type, value] : sans) {
      GENERAL_NAME* gn = GENERAL_NAME_new();
      ASN1_IA5STRING* s = ASN1_IA5STRING_new();
      ASN1_STRING_set(s, value.data(), static_cast<int>(value.size()));
      GENERAL_NAME_set0_value(gn, type, s);
      sk_GENERAL_NAME_push(names.get(), gn);
    }
    sk_X509_EXTENSION_push(exts.get(), X509V3_EXT_i2d(NID_subject_alt_name, 1, names.get()));
  }
  if (san_extensions > 0) X509_REQ_add_extensions(req.get(), exts.get());
  X509_REQ_sign(req.get(), key, EVP_sha256());
  return req_to_pem(req.get());
}

class CsrTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto key = generate_p256_key();
    ASSERT_TRUE(key) << key.error().message;
    key_ = std::move(*key);
  }
  tls::EvpPkeyPtr key_;
  tls::SpiffeId id_{"cluster.local", "bookinfo", "ratings"};
};

TEST_F(CsrTest, GeneratesP256Keys) {
  EXPECT_EQ(EVP_PKEY_is_a(key_.get(), "EC"), 1);
  char group[64] = {};
  size_t len = 0;
  ASSERT_EQ(EVP_PKEY_get_group_name(key_.get(), group, sizeof(group), &len), 1);
  EXPECT_EQ(std::string(group, len), "prime256v1");
}

TEST_F(CsrTest, CsrHasEmptySubjectOneCriticalUriSanAndVerifies) {
  auto pem = make_csr_pem(key_.get(), id_);
  ASSERT_TRUE(pem) << pem.error().message;
  EXPECT_TRUE(pem->starts_with("-----BEGIN CERTIFICATE REQUEST-----"));

  auto req = read_req(*pem);
  ASSERT_TRUE(req);
  EXPECT_EQ(X509_NAME_entry_count(X509_REQ_get_subject_name(req.get())), 0);
  EXPECT_EQ(X509_REQ_get_signature_nid(req.get()), NID_ecdsa_with_SHA256);
  tls::EvpPkeyPtr pub(X509_REQ_get_pubkey(req.get()));
  EXPECT_EQ(X509_REQ_verify(req.get(), pub.get()), 1);
  EXPECT_EQ(EVP_PKEY_eq(pub.get(), key_.get()), 1);

  tls::X509ExtensionStackPtr exts(X509_REQ_get_extensions(req.get()));
  ASSERT_TRUE(exts);
  ASSERT_EQ(sk_X509_EXTENSION_num(exts.get()), 1);
  X509_EXTENSION* ext = sk_X509_EXTENSION_value(exts.get(), 0);
  EXPECT_EQ(OBJ_obj2nid(X509_EXTENSION_get_object(ext)), NID_subject_alt_name);
  EXPECT_EQ(X509_EXTENSION_get_critical(ext), 1);
  tls::GeneralNamesPtr names(static_cast<GENERAL_NAMES*>(X509V3_EXT_d2i(ext)));
  ASSERT_EQ(sk_GENERAL_NAME_num(names.get()), 1);
  const GENERAL_NAME* gn = sk_GENERAL_NAME_value(names.get(), 0);
  ASSERT_EQ(gn->type, GEN_URI);
  EXPECT_EQ(
      std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(gn->d.uniformResourceIdentifier))),
      id_.uri());

  auto parsed = parse_csr_pem(*pem);
  ASSERT_TRUE(parsed) << parsed.error().message;
  EXPECT_EQ(parsed->id, id_);
  EXPECT_EQ(parsed->uri, id_.uri());
  EXPECT_EQ(EVP_PKEY_eq(parsed->public_key.get(), key_.get()), 1);
}

TEST_F(CsrTest, RefusesNonP256KeysAndBadIds) {
  tls::EvpPkeyPtr p384(EVP_EC_gen("P-384"));
  auto r1 = make_csr_pem(p384.get(), id_);
  ASSERT_FALSE(r1);
  EXPECT_TRUE(contains(r1.error().message, "want P-256")) << r1.error().message;

  tls::EvpPkeyPtr ed(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"));
  auto r2 = make_csr_pem(ed.get(), id_);
  ASSERT_FALSE(r2);
  EXPECT_TRUE(contains(r2.error().message, "want EC P-256")) << r2.error().message;

  auto r3 = make_csr_pem(key_.get(), tls::SpiffeId{"cluster.local", "", "sa"});
  ASSERT_FALSE(r3);
  EXPECT_TRUE(contains(r3.error().message, "namespace is empty")) << r3.error().message;
  EXPECT_FALSE(make_csr_pem(nullptr, id_));
}

TEST_F(CsrTest, RejectsGarbage) {
  for (std::string_view bad : {std::string_view(""), std::string_view("garbage"),
                               std::string_view("-----BEGIN CERTIFICATE REQUEST-----\naGVsbG8=\n"
                                                "-----END CERTIFICATE REQUEST-----\n")}) {
    auto r = parse_csr_pem(bad);
    ASSERT_FALSE(r);
    EXPECT_TRUE(contains(r.error().message, "decoding PEM certificate request")) << r.error().message;
  }
}

TEST_F(CsrTest, RejectsTamperedSignature) {
  auto pem = make_csr_pem(key_.get(), id_);
  ASSERT_TRUE(pem);
  auto req = read_req(*pem);
  // Swap in another key after signing: the signature no longer matches the request.
  auto other = generate_p256_key();
  ASSERT_TRUE(other);
  X509_REQ_set_pubkey(req.get(), other->get());
  auto r = parse_csr_pem(req_to_pem(req.get()));
  ASSERT_FALSE(r);
  EXPECT_TRUE(contains(r.error().message, "signature does not verify")) << r.error().message;
}

TEST_F(CsrTest, RejectsZeroOrSeveralSans) {
  struct Case {
    std::vector<std::pair<int, std::string>> sans;
    int extensions;
    std::string error_contains;
  } cases[] = {
      {{}, 0, "no subjectAltName"},
      {{}, 1, "has 0 entries"},
      {{{GEN_URI, id_.uri()}, {GEN_URI, "spiffe://cluster.local/ns/x/sa/y"}}, 1, "has 2 entries"},
      {{{GEN_URI, id_.uri()}, {GEN_DNS, "example.com"}}, 1, "has 2 entries"},
      {{{GEN_URI, id_.uri()}}, 2, "more than one subjectAltName"},
      {{{GEN_DNS, "example.com"}}, 1, "not a URI"},
      {{{GEN_URI, "https://example.com/"}}, 1, "does not start with spiffe://"},
      {{{GEN_URI, "spiffe://cluster.local/ns/a"}}, 1, "want 5"},
  };
  for (const auto& c : cases) {
    auto r = parse_csr_pem(custom_csr(key_.get(), c.sans, c.extensions));
    ASSERT_FALSE(r) << c.error_contains;
    EXPECT_TRUE(contains(r.error().message, c.error_contains)) << r.error().message;
  }
}

TEST_F(CsrTest, RejectsWeakKeys) {
  tls::EvpPkeyPtr rsa(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{1024}));
  ASSERT_TRUE(rsa);
  auto r = parse_csr_pem(custom_csr(rsa.get(), {{GEN_URI, id_.uri()}}));
  ASSERT_FALSE(r);
  EXPECT_TRUE(contains(r.error().message, "too weak")) << r.error().message;
}

}  // namespace
}  // namespace zt::identity
