// WorkloadCertificate assembly and the HBONE TLS context settings, checked without sockets.
// Handshakes themselves are in tests/integration/tls.
#include "common/tls/context.h"

#include <gtest/gtest.h>

#include <set>

#include "common/identity/csr.h"
#include "common/tls/certs.h"
#include "tests/support/test_pki.h"

namespace zt::tls {
namespace {

using namespace std::chrono_literals;
using std::chrono::system_clock;

bool contains(const std::string& s, std::string_view part) { return s.find(part) != std::string::npos; }

class ContextTest : public ::testing::Test {
 protected:
  // A key and the chain the CA returns for it, as strings, like an IstioCertificateResponse.
  struct Issued {
    std::string key_pem;
    std::vector<std::string> chain;
  };
  Issued issue_pem(const testing::TestPki& pki, const SpiffeId& id) {
    auto key = identity::generate_p256_key();
    EXPECT_TRUE(key);
    auto csr = identity::make_csr_pem(key->get(), id);
    EXPECT_TRUE(csr);
    auto chain = pki.ca().sign_csr(*csr, 1h, id);
    EXPECT_TRUE(chain) << chain.error().message;
    return {key_to_pem(key->get()), *chain};
  }

  testing::TestPki pki_{"cluster.local"};
  SpiffeId id_ = pki_.id("default", "sleep");
};

TEST_F(ContextTest, BuildsWorkloadCertificateFromCaResponse) {
  auto issued = issue_pem(pki_, id_);
  ASSERT_EQ(issued.chain.size(), 2u);
  auto cert = make_workload_certificate(issued.key_pem, issued.chain);
  ASSERT_TRUE(cert) << cert.error().message;
  EXPECT_EQ(cert->id, id_);
  EXPECT_EQ(cert->chain.size(), 1u);
  ASSERT_EQ(cert->roots.size(), 1u);
  EXPECT_EQ(cert_to_pem(cert->roots[0].get()), pki_.root_pem());
  EXPECT_EQ(cert->chain_pem(), issued.chain[0]);
  EXPECT_EQ(cert->not_before, not_before(cert->leaf()));
  EXPECT_EQ(cert->not_after, not_after(cert->leaf()));
  EXPECT_LT(cert->not_before, cert->not_after);
}

TEST_F(ContextTest, AcceptsOneConcatenatedChainElement) {
  auto issued = issue_pem(pki_, id_);
  auto cert = make_workload_certificate(issued.key_pem, {issued.chain[0] + issued.chain[1]});
  ASSERT_TRUE(cert) << cert.error().message;
  EXPECT_EQ(cert->chain.size(), 1u);
  EXPECT_EQ(cert->roots.size(), 1u);
}

TEST_F(ContextTest, TrustsEveryRootInTheLastElement) {
  testing::TestPki other("cluster.local");
  auto issued = issue_pem(pki_, id_);
  // Root rotation: istiod sends old and new roots together in the last element.
  issued.chain.back() += other.root_pem();
  auto cert = make_workload_certificate(issued.key_pem, issued.chain);
  ASSERT_TRUE(cert) << cert.error().message;
  EXPECT_EQ(cert->roots.size(), 2u);
}

TEST_F(ContextTest, KeepsIntermediatesInTheChain) {
  auto inter = pki_.make_intermediate();
  auto issued = issue_pem(inter, id_);
  ASSERT_EQ(issued.chain.size(), 3u);  // leaf, intermediate, root
  auto cert = make_workload_certificate(issued.key_pem, issued.chain);
  ASSERT_TRUE(cert) << cert.error().message;
  EXPECT_EQ(cert->chain.size(), 2u);
  ASSERT_EQ(cert->roots.size(), 1u);
  EXPECT_EQ(cert_to_pem(cert->roots[0].get()), pki_.root_pem());
}

TEST_F(ContextTest, AcceptsExpiredCertificates) {
  auto now = system_clock::now();
  auto cert = pki_.issue(id_, now - 2h, now - 1h);
  EXPECT_EQ(cert.id, id_);
  EXPECT_LT(cert.not_after, now);
}

TEST_F(ContextTest, RejectsKeyThatDoesNotMatchTheLeaf) {
  auto a = issue_pem(pki_, id_);
  auto b = issue_pem(pki_, id_);
  auto cert = make_workload_certificate(a.key_pem, b.chain);
  ASSERT_FALSE(cert);
  EXPECT_TRUE(contains(cert.error().message, "does not match the leaf")) << cert.error().message;
}

TEST_F(ContextTest, RejectsChainThatDoesNotLeadToItsRoot) {
  testing::TestPki other("cluster.local");
  auto issued = issue_pem(pki_, id_);
  issued.chain.back() = other.root_pem();
  auto cert = make_workload_certificate(issued.key_pem, issued.chain);
  ASSERT_FALSE(cert);
  EXPECT_TRUE(contains(cert.error().message, "does not lead to its roots")) << cert.error().message;
}

TEST_F(ContextTest, RejectsMalformedResponses) {
  auto issued = issue_pem(pki_, id_);
  struct Case {
    std::string key;
    std::vector<std::string> chain;
    std::string error_contains;
  } cases[] = {
      {issued.key_pem, {}, "empty certificate chain"},
      {issued.key_pem, {issued.chain[0]}, "single certificate"},
      {issued.key_pem, {issued.chain[0], "garbage"}, "certificate chain element #2"},
      {issued.key_pem, {"", issued.chain[1]}, "certificate chain element #1"},
      {"garbage", issued.chain, "reading the workload private key"},
      // The root as leaf: the key does not match it.
      {issued.key_pem, {issued.chain[1], issued.chain[1]}, "does not match"},
  };
  for (const auto& c : cases) {
    auto cert = make_workload_certificate(c.key, c.chain);
    ASSERT_FALSE(cert) << c.error_contains;
    EXPECT_TRUE(contains(cert.error().message, c.error_contains)) << cert.error().message;
  }
}

std::set<std::string> supported_ciphers(SSL_CTX* ctx) {
  SslPtr ssl(SSL_new(ctx));
  std::set<std::string> names;
  STACK_OF(SSL_CIPHER)* ciphers = SSL_get1_supported_ciphers(ssl.get());
  for (int i = 0; i < sk_SSL_CIPHER_num(ciphers); ++i)
    names.insert(SSL_CIPHER_get_name(sk_SSL_CIPHER_value(ciphers, i)));
  sk_SSL_CIPHER_free(ciphers);
  return names;
}

void expect_hbone_settings(SSL_CTX* c) {
  EXPECT_EQ(SSL_CTX_get_min_proto_version(c), TLS1_3_VERSION);
  EXPECT_EQ(SSL_CTX_get_max_proto_version(c), TLS1_3_VERSION);
  EXPECT_EQ(supported_ciphers(c),
            (std::set<std::string>{"TLS_AES_256_GCM_SHA384", "TLS_AES_128_GCM_SHA256"}));
  EXPECT_NE(SSL_CTX_get_options(c) & SSL_OP_NO_TICKET, 0u);
  EXPECT_EQ(SSL_CTX_get_session_cache_mode(c), SSL_SESS_CACHE_OFF);
  EXPECT_EQ(SSL_CTX_get_num_tickets(c), 0u);
}

TEST_F(ContextTest, ServerContextIsTls13OnlyWithMandatoryClientCerts) {
  auto cert = pki_.issue(id_);
  auto ctx = make_hbone_server_context(cert);
  ASSERT_TRUE(ctx) << ctx.error().message;
  SSL_CTX* c = (*ctx)->native_handle();
  expect_hbone_settings(c);
  EXPECT_EQ(SSL_CTX_get_verify_mode(c), SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT);
}

TEST_F(ContextTest, ClientContextIsTls13OnlyOfferingH2) {
  auto cert = pki_.issue(id_);
  auto ctx = make_hbone_client_context(cert);
  ASSERT_TRUE(ctx) << ctx.error().message;
  SSL_CTX* c = (*ctx)->native_handle();
  expect_hbone_settings(c);
  EXPECT_EQ(SSL_CTX_get_verify_mode(c), SSL_VERIFY_PEER);
}

TEST_F(ContextTest, ContextNeedsKeyAndRoots) {
  auto cert = pki_.issue(id_);
  cert.roots.clear();
  auto ctx = make_hbone_server_context(cert);
  ASSERT_FALSE(ctx);
  EXPECT_TRUE(contains(ctx.error().message, "no trust roots")) << ctx.error().message;
  cert.key.reset();
  EXPECT_FALSE(make_hbone_client_context(cert));
}

TEST_F(ContextTest, PeerChecksRefuseAMissingConnection) {
  EXPECT_FALSE(peer_identity(nullptr));
  SpiffeId want[] = {id_};
  EXPECT_FALSE(verify_peer_identity(nullptr, want));
  EXPECT_EQ(negotiated_summary(nullptr), "no TLS connection");
}

}  // namespace
}  // namespace zt::tls
