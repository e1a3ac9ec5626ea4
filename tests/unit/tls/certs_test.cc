#include "common/tls/certs.h"

#include <gtest/gtest.h>
#include <openssl/pem.h>

#include <regex>

#include "tests/support/test_pki.h"

namespace zt::tls {
namespace {

using namespace std::chrono_literals;
using std::chrono::system_clock;

bool contains(const std::string& s, std::string_view part) { return s.find(part) != std::string::npos; }

class CertsTest : public ::testing::Test {
 protected:
  testing::TestPki pki_{"cluster.local"};
  SpiffeId id_ = pki_.id("bookinfo", "reviews");
};

TEST_F(CertsTest, ParsesEveryCertificateInAPemBundle) {
  auto cert = pki_.issue(id_);
  std::string bundle = cert.chain_pem() + pki_.root_pem();
  auto certs = parse_pem_certs(bundle);
  ASSERT_TRUE(certs) << certs.error().message;
  ASSERT_EQ(certs->size(), 2u);
  EXPECT_EQ(X509_cmp((*certs)[0].get(), cert.leaf()), 0);
  EXPECT_EQ(X509_cmp((*certs)[1].get(), cert.roots[0].get()), 0);
  EXPECT_EQ(certs_to_pem(*certs), bundle);
}

TEST_F(CertsTest, SkipsNonCertificateBlocks) {
  auto cert = pki_.issue(id_);
  auto certs = parse_pem_certs(cert.key_pem() + cert.chain_pem());
  ASSERT_TRUE(certs) << certs.error().message;
  EXPECT_EQ(certs->size(), 1u);
}

TEST_F(CertsTest, RejectsInputWithoutCertificates) {
  for (std::string_view bad :
       {std::string_view(""), std::string_view("hello"),
        std::string_view("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")}) {
    auto certs = parse_pem_certs(bad);
    ASSERT_FALSE(certs) << bad;
    EXPECT_TRUE(contains(certs.error().message, "no certificate")) << certs.error().message;
  }
}

TEST_F(CertsTest, RejectsCorruptCertificatesWithOpensslDetail) {
  std::string pem = pki_.root_pem();
  // Broken base64 inside a well-framed block.
  std::string bad_base64 = pem;
  bad_base64[40] = '!';
  auto r1 = parse_pem_certs(bad_base64);
  ASSERT_FALSE(r1);
  EXPECT_TRUE(contains(r1.error().message, "decoding PEM certificate #1")) << r1.error().message;
  EXPECT_TRUE(contains(r1.error().message, "error:")) << r1.error().message;

  // Valid base64 of garbage DER.
  auto r2 = parse_pem_certs("-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n");
  ASSERT_FALSE(r2);
  EXPECT_TRUE(contains(r2.error().message, "decoding PEM certificate #1")) << r2.error().message;

  // A good certificate followed by a truncated one.
  auto r3 = parse_pem_certs(pem + pem.substr(0, pem.size() / 2));
  ASSERT_FALSE(r3);
  EXPECT_TRUE(contains(r3.error().message, "decoding PEM certificate #2")) << r3.error().message;
}

TEST_F(CertsTest, KeyRoundTripsThroughPkcs8Pem) {
  auto cert = pki_.issue(id_);
  std::string pem = key_to_pem(cert.key.get());
  EXPECT_TRUE(pem.starts_with("-----BEGIN PRIVATE KEY-----")) << pem;
  auto key = parse_pem_key(pem);
  ASSERT_TRUE(key) << key.error().message;
  EXPECT_EQ(EVP_PKEY_eq(key->get(), cert.key.get()), 1);
}

TEST_F(CertsTest, RejectsBadAndEncryptedKeysWithoutPrompting) {
  auto none = parse_pem_key("not a key");
  ASSERT_FALSE(none);
  EXPECT_TRUE(contains(none.error().message, "no private key")) << none.error().message;

  auto garbage = parse_pem_key("-----BEGIN PRIVATE KEY-----\naGVsbG8=\n-----END PRIVATE KEY-----\n");
  ASSERT_FALSE(garbage);
  EXPECT_TRUE(contains(garbage.error().message, "decoding PEM private key: error:"))
      << garbage.error().message;

  // A certificate is not a key.
  auto cert_only = parse_pem_key(pki_.root_pem());
  ASSERT_FALSE(cert_only);
  EXPECT_TRUE(contains(cert_only.error().message, "no private key")) << cert_only.error().message;

  auto cert = pki_.issue(id_);
  auto bio = memory_bio();
  static const char kPassword[] = "secret";
  ASSERT_EQ(PEM_write_bio_PKCS8PrivateKey(bio.get(), cert.key.get(), EVP_aes_256_cbc(), kPassword,
                                          sizeof(kPassword) - 1, nullptr, nullptr),
            1);
  std::string encrypted = bio_contents(bio.get());
  ASSERT_TRUE(contains(encrypted, "ENCRYPTED PRIVATE KEY"));
  auto enc = parse_pem_key(encrypted);
  ASSERT_FALSE(enc);
  EXPECT_TRUE(contains(enc.error().message, "encrypted")) << enc.error().message;

  // The traditional format with an encryption header is refused the same way.
  auto legacy = parse_pem_key(
      "-----BEGIN EC PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n"
      "DEK-Info: AES-256-CBC,00112233445566778899AABBCCDDEEFF\n\nAAAA\n"
      "-----END EC PRIVATE KEY-----\n");
  ASSERT_FALSE(legacy);
  EXPECT_TRUE(contains(legacy.error().message, "encrypted")) << legacy.error().message;
}

TEST_F(CertsTest, ReadsSpiffeIdFromUriSan) {
  auto cert = pki_.issue(id_);
  EXPECT_EQ(uri_sans(cert.leaf()), std::vector<std::string>{id_.uri()});
  auto id = spiffe_id_of(cert.leaf());
  ASSERT_TRUE(id) << id.error().message;
  EXPECT_EQ(*id, id_);
}

TEST_F(CertsTest, CertificateWithoutUriSanHasNoSpiffeId) {
  X509* root = pki_.ca().certificate();
  EXPECT_TRUE(uri_sans(root).empty());
  auto id = spiffe_id_of(root);
  ASSERT_FALSE(id);
  EXPECT_TRUE(contains(id.error().message, "has no URI SAN")) << id.error().message;
  EXPECT_FALSE(spiffe_id_of(nullptr));
}

TEST_F(CertsTest, ReadsValidityToTheSecond) {
  auto nb = system_clock::from_time_t(1'700'000'000);
  auto na = nb + 36h + 17s;
  auto cert = pki_.issue(id_, nb, na);
  EXPECT_EQ(not_before(cert.leaf()), nb);
  EXPECT_EQ(not_after(cert.leaf()), na);
  EXPECT_EQ(cert.not_before, nb);
  EXPECT_EQ(cert.not_after, na);
  EXPECT_EQ(format_time(nb), "2023-11-14T22:13:20Z");
}

TEST_F(CertsTest, SerialIsLowerCaseHexOfAtMost128Bits) {
  auto a = pki_.issue(id_);
  auto b = pki_.issue(id_);
  std::string sa = serial_hex(a.leaf());
  EXPECT_TRUE(std::regex_match(sa, std::regex("[0-9a-f]{1,32}"))) << sa;
  EXPECT_NE(sa, serial_hex(b.leaf()));
  EXPECT_EQ(a.serial(), sa);
}

TEST_F(CertsTest, NamesAreReadable) {
  X509* root = pki_.ca().certificate();
  EXPECT_EQ(subject_of(root), "O=cluster.local");
  EXPECT_EQ(issuer_of(root), "O=cluster.local");
  auto cert = pki_.issue(id_);
  EXPECT_EQ(subject_of(cert.leaf()), "");
  EXPECT_EQ(issuer_of(cert.leaf()), "O=cluster.local");
}

}  // namespace
}  // namespace zt::tls
