#include "common/identity/certificate_authority.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "common/identity/csr.h"
#include "common/tls/certs.h"

namespace zt::identity {
namespace {

using namespace std::chrono_literals;
using std::chrono::system_clock;

bool contains(const std::string& s, std::string_view part) { return s.find(part) != std::string::npos; }

// Verifies `leaf` (with `untrusted` intermediates) against `root` at the current time.
std::string verify_chain(X509* leaf, const std::vector<tls::X509Ptr>& intermediates, X509* root) {
  tls::X509StorePtr store(X509_STORE_new());
  X509_STORE_add_cert(store.get(), root);
  tls::X509StackPtr untrusted(sk_X509_new_null());
  for (const auto& c : intermediates) sk_X509_push(untrusted.get(), tls::up_ref(c.get()).release());
  tls::X509StoreCtxPtr ctx(X509_STORE_CTX_new());
  X509_STORE_CTX_init(ctx.get(), store.get(), leaf, untrusted.get());
  if (X509_verify_cert(ctx.get()) == 1) return "ok";
  return X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx.get()));
}

tls::X509Ptr one_cert(const std::string& pem) {
  auto certs = tls::parse_pem_certs(pem);
  EXPECT_TRUE(certs) << certs.error().message;
  return std::move(certs->front());
}

class CertificateAuthorityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto ca = CertificateAuthority::generate("cluster.local");
    ASSERT_TRUE(ca) << ca.error().message;
    ca_.emplace(std::move(*ca));
    auto key = generate_p256_key();
    ASSERT_TRUE(key);
    key_ = std::move(*key);
    auto csr = make_csr_pem(key_.get(), id_);
    ASSERT_TRUE(csr);
    csr_ = *csr;
  }

  std::filesystem::path temp_dir() {
    if (dir_.empty()) {
      std::string tmpl = (std::filesystem::temp_directory_path() / "zt-ca-test-XXXXXX").string();
      EXPECT_NE(mkdtemp(tmpl.data()), nullptr);
      dir_ = tmpl;
    }
    return dir_;
  }

  void TearDown() override {
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  std::optional<CertificateAuthority> ca_;
  tls::EvpPkeyPtr key_;
  tls::SpiffeId id_{"cluster.local", "bookinfo", "productpage"};
  std::string csr_;
  std::filesystem::path dir_;
};

TEST_F(CertificateAuthorityTest, GeneratedRootIsSelfSignedP256CaForTenYears) {
  X509* root = ca_->certificate();
  EXPECT_EQ(X509_check_ca(root), 1);
  EXPECT_EQ(tls::subject_of(root), "O=cluster.local");
  EXPECT_EQ(tls::issuer_of(root), "O=cluster.local");
  EXPECT_EQ(X509_check_issued(root, root), X509_V_OK);
  EVP_PKEY* pub = X509_get0_pubkey(root);
  EXPECT_EQ(X509_verify(root, pub), 1);
  EXPECT_EQ(EVP_PKEY_is_a(pub, "EC"), 1);
  EXPECT_EQ(EVP_PKEY_get_bits(pub), 256);
  EXPECT_EQ(X509_get_signature_nid(root), NID_ecdsa_with_SHA256);
  auto lifetime = tls::not_after(root) - system_clock::now();
  EXPECT_GT(lifetime, std::chrono::days(3649));
  EXPECT_LT(lifetime, std::chrono::days(3651));
  EXPECT_LE(tls::not_before(root), system_clock::now());
  EXPECT_NE(X509_get0_subject_key_id(root), nullptr);
  EXPECT_EQ(ca_->root_pem(), tls::cert_to_pem(root));
}

TEST_F(CertificateAuthorityTest, RefusesInvalidTrustDomain) {
  auto ca = CertificateAuthority::generate("bad domain");
  ASSERT_FALSE(ca);
  EXPECT_TRUE(contains(ca.error().message, "trust domain")) << ca.error().message;
}

TEST_F(CertificateAuthorityTest, SignsLeafWithSanEkuKeyUsageAndValidity) {
  auto before = system_clock::now();
  auto chain = ca_->sign_csr(csr_, 2h, id_);
  auto after = system_clock::now();
  ASSERT_TRUE(chain) << chain.error().message;
  ASSERT_EQ(chain->size(), 2u);
  EXPECT_EQ((*chain)[1], ca_->root_pem());
  auto leaf = one_cert((*chain)[0]);
  X509* l = leaf.get();

  EXPECT_EQ(tls::uri_sans(l), std::vector<std::string>{id_.uri()});
  int crit = -1;
  tls::GeneralNamesPtr sans(
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(l, NID_subject_alt_name, &crit, nullptr)));
  EXPECT_EQ(crit, 1) << "SAN must be critical with an empty subject";
  EXPECT_EQ(sk_GENERAL_NAME_num(sans.get()), 1);
  EXPECT_EQ(X509_NAME_entry_count(X509_get_subject_name(l)), 0);
  EXPECT_EQ(tls::issuer_of(l), "O=cluster.local");

  EXPECT_EQ(X509_get_signature_nid(l), NID_ecdsa_with_SHA256);
  EXPECT_EQ(X509_get_version(l), 2);  // v3
  EXPECT_EQ(X509_check_ca(l), 0);
  EXPECT_NE(X509_get_extension_flags(l) & EXFLAG_BCONS, 0u) << "basicConstraints present (CA:FALSE)";
  EXPECT_EQ(X509_get_extended_key_usage(l), static_cast<uint32_t>(XKU_SSL_SERVER | XKU_SSL_CLIENT));
  EXPECT_EQ(X509_get_key_usage(l), static_cast<uint32_t>(KU_DIGITAL_SIGNATURE | KU_KEY_ENCIPHERMENT));
  ASSERT_NE(X509_get0_subject_key_id(l), nullptr);
  ASSERT_NE(X509_get0_authority_key_id(l), nullptr);
  EXPECT_EQ(
      ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(l), X509_get0_subject_key_id(ca_->certificate())), 0);
  EXPECT_EQ(EVP_PKEY_eq(X509_get0_pubkey(l), key_.get()), 1);

  tls::BignumPtr serial(ASN1_INTEGER_to_BN(X509_get0_serialNumber(l), nullptr));
  EXPECT_LE(BN_num_bits(serial.get()), 128);
  EXPECT_FALSE(BN_is_negative(serial.get()));
  EXPECT_FALSE(BN_is_zero(serial.get()));

  auto nb = tls::not_before(l);
  auto na = tls::not_after(l);
  EXPECT_GE(nb, std::chrono::floor<std::chrono::seconds>(before) - CertificateAuthority::kClockSkewAllowance);
  EXPECT_LE(nb, after - CertificateAuthority::kClockSkewAllowance);
  EXPECT_EQ(na - nb, 2h + CertificateAuthority::kClockSkewAllowance);

  EXPECT_EQ(verify_chain(l, {}, ca_->certificate()), "ok");
}

TEST_F(CertificateAuthorityTest, SerialsAreRandom) {
  auto a = ca_->sign_csr(csr_, 1h, id_);
  auto b = ca_->sign_csr(csr_, 1h, id_);
  ASSERT_TRUE(a && b);
  EXPECT_NE(tls::serial_hex(one_cert((*a)[0]).get()), tls::serial_hex(one_cert((*b)[0]).get()));
}

TEST_F(CertificateAuthorityTest, RejectsCsrForAnotherIdentity) {
  tls::SpiffeId other{"cluster.local", "bookinfo", "reviews"};
  auto chain = ca_->sign_csr(csr_, 1h, other);
  ASSERT_FALSE(chain);
  EXPECT_TRUE(contains(chain.error().message, "asks for " + id_.uri())) << chain.error().message;
  EXPECT_TRUE(contains(chain.error().message, other.uri())) << chain.error().message;
}

TEST_F(CertificateAuthorityTest, SignsWhateverIdentityWithoutARequirement) {
  tls::SpiffeId foreign{"other.domain", "ns", "sa"};
  auto csr = make_csr_pem(key_.get(), foreign);
  ASSERT_TRUE(csr);
  auto chain = ca_->sign_csr(*csr, 1h, std::nullopt);
  ASSERT_TRUE(chain) << chain.error().message;
  EXPECT_EQ(tls::uri_sans(one_cert((*chain)[0]).get()), std::vector<std::string>{foreign.uri()});
}

TEST_F(CertificateAuthorityTest, RejectsGarbageAndBadValidity) {
  auto garbage = ca_->sign_csr("not a csr", 1h, std::nullopt);
  ASSERT_FALSE(garbage);
  EXPECT_TRUE(contains(garbage.error().message, "rejecting CSR")) << garbage.error().message;

  auto zero = ca_->sign_csr(csr_, 0s, id_);
  ASSERT_FALSE(zero);
  EXPECT_TRUE(contains(zero.error().message, "validity must be positive")) << zero.error().message;

  auto now = system_clock::now();
  auto backwards = ca_->sign_csr_with_validity(csr_, now, now - 1h, id_);
  ASSERT_FALSE(backwards);
  EXPECT_TRUE(contains(backwards.error().message, "end before it starts")) << backwards.error().message;

  auto too_long = ca_->sign_csr(csr_, std::chrono::hours(24 * 365 * 20), id_);
  ASSERT_FALSE(too_long);
  EXPECT_TRUE(contains(too_long.error().message, "after the CA certificate expires"))
      << too_long.error().message;
}

TEST_F(CertificateAuthorityTest, IssuesExpiredCertificatesOnRequest) {
  auto now = system_clock::now();
  auto chain = ca_->sign_csr_with_validity(csr_, now - 2h, now - 1h, id_);
  ASSERT_TRUE(chain) << chain.error().message;
  auto leaf = one_cert((*chain)[0]);
  EXPECT_EQ(verify_chain(leaf.get(), {}, ca_->certificate()), "certificate has expired");
}

TEST_F(CertificateAuthorityTest, SaveAndLoadRoundTrip) {
  auto dir = temp_dir();
  std::string cert_path = (dir / "ca-cert.pem").string();
  std::string key_path = (dir / "ca-key.pem").string();
  auto saved = ca_->save(cert_path, key_path);
  ASSERT_TRUE(saved) << saved.error().message;

  struct stat st {};
  ASSERT_EQ(stat(key_path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_FALSE(std::filesystem::exists(key_path + ".tmp"));

  auto loaded = CertificateAuthority::load(cert_path, key_path);
  ASSERT_TRUE(loaded) << loaded.error().message;
  EXPECT_EQ(loaded->root_pem(), ca_->root_pem());
  auto chain = loaded->sign_csr(csr_, 1h, id_);
  ASSERT_TRUE(chain) << chain.error().message;
  EXPECT_EQ(verify_chain(one_cert((*chain)[0]).get(), {}, ca_->certificate()), "ok");

  // Saving again over existing files keeps the key private even if someone widened it.
  ASSERT_EQ(chmod(key_path.c_str(), 0644), 0);
  ASSERT_TRUE(loaded->save(cert_path, key_path));
  ASSERT_EQ(stat(key_path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(CertificateAuthorityTest, LoadReportsWhatIsWrong) {
  auto dir = temp_dir();
  std::string cert_path = (dir / "ca-cert.pem").string();
  std::string key_path = (dir / "ca-key.pem").string();
  ASSERT_TRUE(ca_->save(cert_path, key_path));

  auto missing = CertificateAuthority::load((dir / "nope.pem").string(), key_path);
  ASSERT_FALSE(missing);
  EXPECT_TRUE(contains(missing.error().message, "nope.pem")) << missing.error().message;
  EXPECT_TRUE(contains(missing.error().message, "No such file")) << missing.error().message;

  auto other = CertificateAuthority::generate("cluster.local");
  ASSERT_TRUE(other);
  std::string other_cert = (dir / "other-cert.pem").string();
  std::string other_key = (dir / "other-key.pem").string();
  ASSERT_TRUE(other->save(other_cert, other_key));
  auto mismatched = CertificateAuthority::load(cert_path, other_key);
  ASSERT_FALSE(mismatched);
  EXPECT_TRUE(contains(mismatched.error().message, "does not match")) << mismatched.error().message;

  // A workload certificate is not a CA.
  auto chain = ca_->sign_csr(csr_, 1h, id_);
  ASSERT_TRUE(chain);
  auto not_ca = CertificateAuthority::from_pem((*chain)[0], tls::key_to_pem(key_.get()));
  ASSERT_FALSE(not_ca);
  EXPECT_TRUE(contains(not_ca.error().message, "is not a CA")) << not_ca.error().message;

  auto garbage = CertificateAuthority::from_pem("garbage", "garbage");
  ASSERT_FALSE(garbage);
  EXPECT_TRUE(contains(garbage.error().message, "CA certificate")) << garbage.error().message;
}

TEST_F(CertificateAuthorityTest, IntermediateIssuesChainsUpToTheRoot) {
  auto inter = ca_->make_intermediate("cluster.local intermediate", 24h);
  ASSERT_TRUE(inter) << inter.error().message;
  EXPECT_EQ(inter->root_pem(), ca_->root_pem());
  auto chain = inter->sign_csr(csr_, 1h, id_);
  ASSERT_TRUE(chain) << chain.error().message;
  ASSERT_EQ(chain->size(), 3u);
  EXPECT_EQ((*chain)[2], ca_->root_pem());
  std::vector<tls::X509Ptr> intermediates;
  intermediates.push_back(one_cert((*chain)[1]));
  EXPECT_EQ(verify_chain(one_cert((*chain)[0]).get(), intermediates, ca_->certificate()), "ok");

  // It round-trips through files too (signing certificate first, then the root).
  auto dir = temp_dir();
  std::string cert_path = (dir / "i-cert.pem").string();
  std::string key_path = (dir / "i-key.pem").string();
  ASSERT_TRUE(inter->save(cert_path, key_path));
  auto loaded = CertificateAuthority::load(cert_path, key_path);
  ASSERT_TRUE(loaded) << loaded.error().message;
  auto chain2 = loaded->sign_csr(csr_, 1h, id_);
  ASSERT_TRUE(chain2);
  EXPECT_EQ(chain2->size(), 3u);
}

}  // namespace
}  // namespace zt::identity
