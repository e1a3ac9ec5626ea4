// meshd's IstioCertificateService over real gRPC on loopback: node-scoped impersonation with
// bearer tokens, and the refusals (unknown token, another node's identity, SAN mismatch).
#include "meshd/ca/ca_server.h"

#include <google/protobuf/struct.pb.h>
#include <gtest/gtest.h>

#include "common/identity/csr.h"
#include "common/tls/certs.h"

namespace zt::meshd {
namespace {

using namespace std::chrono_literals;
using istio::v1::auth::IstioCertificateRequest;
using istio::v1::auth::IstioCertificateResponse;
using istio::v1::auth::IstioCertificateService;

constexpr const char* kAlpha = "spiffe://cluster.local/ns/default/sa/alpha";  // runs on node-a
constexpr const char* kBeta = "spiffe://cluster.local/ns/default/sa/beta";    // runs on node-b

std::shared_ptr<const MeshSnapshot> nodes_snapshot() {
  MeshSnapshot s;
  s.identities_by_node["node-a"] = {kAlpha};
  s.identities_by_node["node-b"] = {kBeta};
  return std::make_shared<const MeshSnapshot>(std::move(s));
}

std::string csr_for(const std::string& uri) {
  auto key = identity::generate_p256_key();
  if (!key) throw std::runtime_error(key.error().describe());
  auto id = tls::SpiffeId::parse(uri);
  if (!id) throw std::runtime_error(id.error().describe());
  auto csr = identity::make_csr_pem(key->get(), *id);
  if (!csr) throw std::runtime_error(csr.error().describe());
  return *csr;
}

class CaServerTest : public ::testing::Test {
 protected:
  void start(std::optional<ca::TokenTable> tokens) {
    auto authority = identity::CertificateAuthority::generate("cluster.local");
    ASSERT_TRUE(authority) << authority.error().describe();
    root_pem_ = authority->root_pem();
    ca_ = std::make_unique<ca::CaServer>(std::move(*authority),
                                         ca::CaServerOptions{.trust_domain = "cluster.local"},
                                         std::move(tokens));
    ca_->publish(nodes_snapshot());
    grpc::ServerBuilder b;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    b.RegisterService(ca_.get());
    server_ = b.BuildAndStart();
    ASSERT_TRUE(server_);
    stub_ = IstioCertificateService::NewStub(grpc::CreateChannel(
        fmt::format("127.0.0.1:{}", port_), grpc::InsecureChannelCredentials()));
  }

  void start_with_tokens() {
    auto t = ca::TokenTable::parse("# node tokens\ntok-a: node-a\n\"tok-b\": 'node-b'\n");
    ASSERT_TRUE(t) << t.error().describe();
    start(std::move(*t));
  }

  void TearDown() override {
    if (server_) {
      server_->Shutdown(std::chrono::system_clock::now() + 2s);
      server_->Wait();
    }
  }

  grpc::Status call(std::optional<std::string> token, const std::string& csr_uri,
                    std::optional<std::string> impersonated, IstioCertificateResponse* out,
                    int64_t validity = 3600) {
    grpc::ClientContext ctx;
    if (token) ctx.AddMetadata("authorization", fmt::format("Bearer {}", *token));
    ctx.AddMetadata("clusterid", "Kubernetes");
    IstioCertificateRequest req;
    req.set_csr(csr_for(csr_uri));
    req.set_validity_duration(validity);
    if (impersonated) {
      (*req.mutable_metadata()->mutable_fields())["ImpersonatedIdentity"].set_string_value(
          *impersonated);
    }
    return stub_->CreateCertificate(&ctx, req, out);
  }

  std::unique_ptr<ca::CaServer> ca_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<IstioCertificateService::Stub> stub_;
  std::string root_pem_;
  int port_ = 0;
};

TEST_F(CaServerTest, NodeTokenObtainsTheIdentityOfAPodOnThatNode) {
  start_with_tokens();
  IstioCertificateResponse resp;
  auto st = call("tok-a", kAlpha, kAlpha, &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  ASSERT_GE(resp.cert_chain_size(), 2);
  EXPECT_EQ(resp.cert_chain(resp.cert_chain_size() - 1), root_pem_);
  auto leaf = tls::parse_pem_certs(resp.cert_chain(0));
  ASSERT_TRUE(leaf);
  EXPECT_EQ(tls::uri_sans(leaf->front().get()), std::vector<std::string>{kAlpha});
  auto lifetime = tls::not_after(leaf->front().get()) - std::chrono::system_clock::now();
  EXPECT_LE(lifetime, 3601s);
  EXPECT_GE(lifetime, 3500s);
  // Without ImpersonatedIdentity the CSR's SAN is what is checked.
  IstioCertificateResponse resp2;
  EXPECT_TRUE(call("tok-b", kBeta, std::nullopt, &resp2).ok());
  EXPECT_EQ(ca_->stats().issued, 2u);
}

TEST_F(CaServerTest, IdentityOfAPodOnAnotherNodeIsPermissionDenied) {
  start_with_tokens();
  IstioCertificateResponse resp;
  auto st = call("tok-a", kBeta, kBeta, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(st.error_message(), std::string("node node-a runs no workload with identity ") + kBeta);
  EXPECT_EQ(resp.cert_chain_size(), 0);
}

TEST_F(CaServerTest, MissingOrUnknownTokenIsUnauthenticated) {
  start_with_tokens();
  IstioCertificateResponse resp;
  EXPECT_EQ(call(std::nullopt, kAlpha, kAlpha, &resp).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(call("not-a-token", kAlpha, kAlpha, &resp).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(ca_->stats().unauthenticated, 2u);
}

TEST_F(CaServerTest, CsrSanDifferentFromImpersonatedIdentityIsRefused) {
  start_with_tokens();
  IstioCertificateResponse resp;
  // node-b may have beta, but the CSR asks for alpha.
  auto st = call("tok-b", kAlpha, kBeta, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_NE(st.error_message().find("ImpersonatedIdentity"), std::string::npos);
}

TEST_F(CaServerTest, NewSnapshotChangesWhatANodeMayObtain) {
  start_with_tokens();
  IstioCertificateResponse resp;
  EXPECT_EQ(call("tok-a", kBeta, kBeta, &resp).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  MeshSnapshot moved;
  moved.identities_by_node["node-a"] = {kAlpha, kBeta};
  ca_->publish(std::make_shared<const MeshSnapshot>(std::move(moved)));
  EXPECT_TRUE(call("tok-a", kBeta, kBeta, &resp).ok());
}

TEST_F(CaServerTest, WithoutTokensAnyIdentityInTheTrustDomainIsSignedButNoOther) {
  start(std::nullopt);
  IstioCertificateResponse resp;
  EXPECT_TRUE(call(std::nullopt, "spiffe://cluster.local/ns/x/sa/y", std::nullopt, &resp).ok());
  auto st = call(std::nullopt, "spiffe://other.domain/ns/x/sa/y", std::nullopt, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_NE(st.error_message().find("trust domain"), std::string::npos);
}

TEST_F(CaServerTest, ValidityDefaultsAndIsCapped) {
  start(std::nullopt);
  IstioCertificateResponse resp;
  ASSERT_TRUE(call(std::nullopt, kAlpha, std::nullopt, &resp, 0).ok());
  auto leaf = tls::parse_pem_certs(resp.cert_chain(0));
  ASSERT_TRUE(leaf);
  auto lifetime = tls::not_after(leaf->front().get()) - std::chrono::system_clock::now();
  EXPECT_GE(lifetime, 86300s);
  EXPECT_LE(lifetime, 86401s);
  IstioCertificateResponse resp2;
  ASSERT_TRUE(call(std::nullopt, kAlpha, std::nullopt, &resp2, 365 * 86400).ok());
  auto leaf2 = tls::parse_pem_certs(resp2.cert_chain(0));
  ASSERT_TRUE(leaf2);
  EXPECT_LE(tls::not_after(leaf2->front().get()) - std::chrono::system_clock::now(),
            std::chrono::seconds(7 * 86400 + 1));
}

TEST_F(CaServerTest, GarbageCsrIsInvalidArgument) {
  start(std::nullopt);
  grpc::ClientContext ctx;
  IstioCertificateRequest req;
  req.set_csr("-----BEGIN CERTIFICATE REQUEST-----\nnope\n-----END CERTIFICATE REQUEST-----\n");
  IstioCertificateResponse resp;
  auto st = stub_->CreateCertificate(&ctx, req, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(st.error_message().find("CSR"), std::string::npos);
}

TEST(TokenTableTest, ParsesLinesAndRejectsMalformedOnes) {
  auto t = ca::TokenTable::parse("a: node-1\n\n# c\nb : node-2  # trailing\n");
  ASSERT_TRUE(t) << t.error().describe();
  EXPECT_EQ(t->size(), 2u);
  EXPECT_EQ(t->node_for("b"), "node-2");
  EXPECT_FALSE(t->node_for("c"));
  auto bad = ca::TokenTable::parse("a: n\njustatoken\n", "tokens.yaml");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("tokens.yaml:2"), std::string::npos);
  EXPECT_FALSE(ca::TokenTable::parse("a: n\na: m\n"));
}

}  // namespace
}  // namespace zt::meshd
