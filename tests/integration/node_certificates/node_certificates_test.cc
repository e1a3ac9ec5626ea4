// The chain that gives a shared-mode ztunnel its certificates, with every part real except the
// transport of the workload API (resources go straight from meshd's computation into ztunnel's
// xDS cache): generated manifests -> ambient::compute -> XdsResourceCache -> StateStore ->
// NodeCertificates -> CertificateManager -> GrpcCaProvider (impersonating, with node-0's token)
// -> meshd's CaServer over gRPC on loopback.
//
// Proven: ztunnel on node-0 obtains exactly one certificate per identity of the HBONE pods on
// node-0 (not for plain pods, not for other nodes); a forged request for an identity that only
// runs on node-1 is refused by the CA; identities whose pods leave are forgotten.
#include "ztunnel/app/node_certificates.h"

#include <chrono>
#include <set>
#include <thread>

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "common/ca/grpc_ca_provider.h"
#include "common/identity/certificate_authority.h"
#include "common/identity/certificate_manager.h"
#include "meshd/ambient/compute.h"
#include "meshd/ca/ca_server.h"
#include "meshd/manifest/source.h"
#include "tests/support/cluster_manifests.h"
#include "tests/support/grpc_library.h"
#include "tests/support/mesh.h"
#include "ztunnel/state/store.h"
#include "ztunnel/xds/resource_cache.h"

namespace zt::testing {
namespace {

using namespace std::chrono_literals;

class NodeCertificatesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ClusterManifestOptions o;
    o.ambient_namespaces = {"apps-0", "apps-1"};  // apps-2 is plain: its pods get no certificate
    cluster_ = write_cluster_manifests(dir_.path() / "manifests", o);
    publish_from_manifests();

    auto authority = identity::CertificateAuthority::generate("cluster.local");
    ASSERT_TRUE(authority) << authority.error().message;
    auto tokens = meshd::ca::TokenTable::parse("token-node-0: node-0\ntoken-node-1: node-1\n");
    ASSERT_TRUE(tokens) << tokens.error().message;
    ca_ = std::make_unique<meshd::ca::CaServer>(std::move(*authority), meshd::ca::CaServerOptions{},
                                                std::move(*tokens));
    ca_->publish(mesh_);
    grpc::ServerBuilder b;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    b.RegisterService(ca_.get());
    server_ = b.BuildAndStart();
    ASSERT_TRUE(server_);

    write_file(dir_.path() / "token", "token-node-0\n");
    auto provider =
        ca::GrpcCaProvider::create({.address = fmt::format("http://127.0.0.1:{}", port_),
                                    .token_path = (dir_.path() / "token").string(),
                                    .impersonate = true});
    ASSERT_TRUE(provider) << provider.error().message;
    certs_ = std::make_unique<identity::CertificateManager>(*provider, std::chrono::hours(1));
  }

  void TearDown() override {
    certs_.reset();
    if (server_) server_->Shutdown();
  }

  // meshd's view of the manifests, then the resources as ztunnel's xDS cache applies them.
  void publish_from_manifests() {
    meshd::manifest::ManifestSource source(dir_.path() / "manifests");
    auto loaded = source.reload();
    ASSERT_TRUE(loaded.errors.empty());
    mesh_ = std::make_shared<const meshd::MeshSnapshot>(
        meshd::ambient::compute(*loaded.objects, meshd::ambient::Options{}));
    xds::DeltaUpdate update{.type_url = std::string(xds::kAddressType)};
    std::set<std::string> names;
    for (const auto& [name, address] : mesh_->addresses) {
      xds::Resource r{.name = name, .version = "1"};
      r.body.PackFrom(address);
      update.added.push_back(std::move(r));
      names.insert(name);
    }
    for (const auto& name : last_names_) {
      if (!names.contains(name)) update.removed.push_back(name);
    }
    last_names_ = names;
    auto rejected = cache_.apply(update);
    ASSERT_TRUE(rejected.empty()) << rejected.front().name << ": " << rejected.front().reason;
    store_.publish(cache_.snapshot());
  }

  std::set<std::string> expected_on(const std::string& node) const {
    std::set<std::string> out;
    for (const auto& p : cluster_.pods) {
      if (p.node == node && p.namespace_ != "apps-2") {
        out.insert(
            fmt::format("spiffe://cluster.local/ns/{}/sa/{}", p.namespace_, p.service_account));
      }
    }
    return out;
  }

  // identity -> state of every certificate the manager tracks, once none is still initializing.
  std::map<std::string, std::string> settled_certificates() {
    std::map<std::string, std::string> out;
    for (int i = 0; i < 500; ++i) {
      out.clear();
      bool busy = false;
      for (const auto& c : certs_->list()) {
        out[c.identity.uri()] = c.state;
        busy = busy || c.state == "Initializing";
      }
      if (!busy) return out;
      std::this_thread::sleep_for(10ms);
    }
    return out;
  }

  TempDir dir_;
  ClusterManifests cluster_;
  std::shared_ptr<const meshd::MeshSnapshot> mesh_;
  std::set<std::string> last_names_;
  xds::XdsResourceCache cache_;
  state::StateStore store_;
  std::unique_ptr<meshd::ca::CaServer> ca_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<identity::CertificateManager> certs_;
};

TEST_F(NodeCertificatesTest, OneCertificatePerIdentityOfTheHbonePodsOnThisNode) {
  auto want = expected_on("node-0");
  ASSERT_GE(want.size(), 2u);
  app::NodeCertificates node(*certs_, store_, "node-0");
  node.update();

  auto got = settled_certificates();
  std::set<std::string> ids;
  for (const auto& [id, st] : got) {
    ids.insert(id);
    EXPECT_EQ(st, "Available") << id;
  }
  EXPECT_EQ(ids, want);
  // Each is held and certifies exactly its identity (the provider checks the SAN as well).
  for (const auto& id : want) {
    auto creds = certs_->get(*tls::SpiffeId::parse(id));
    ASSERT_TRUE(creds) << creds.error().message;
    EXPECT_EQ((*creds)->cert.id.uri(), id);
  }
  EXPECT_EQ(ca_->stats().issued, want.size());
}

TEST_F(NodeCertificatesTest, TheCaRefusesAnIdentityThatRunsOnlyOnAnotherNode) {
  std::string foreign;
  auto mine = expected_on("node-0");
  for (const auto& id : expected_on("node-1")) {
    if (!mine.contains(id)) foreign = id;
  }
  ASSERT_FALSE(foreign.empty());
  auto r = certs_->get(*tls::SpiffeId::parse(foreign));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("PERMISSION_DENIED"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("node-0"), std::string::npos) << r.error().message;
  EXPECT_EQ(ca_->stats().issued, 0u);
  EXPECT_GE(ca_->stats().denied, 1u);
}

TEST_F(NodeCertificatesTest, IdentitiesWhosePodsLeaveTheMeshAreForgotten) {
  app::NodeCertificates node(*certs_, store_, "node-0");
  node.update();
  settled_certificates();
  // apps-1 leaves ambient mode: its pods become TCP workloads and need no certificate.
  write_manifest_file(dir_.path() / "manifests" / "apps-1" / "namespace.yaml",
                      namespace_manifest("apps-1") +
                          "---\napiVersion: v1\nkind: ServiceAccount\n"
                          "metadata:\n  name: app-0\n  namespace: apps-1\n"
                          "---\napiVersion: v1\nkind: ServiceAccount\n"
                          "metadata:\n  name: app-1\n  namespace: apps-1\n");
  ASSERT_NO_FATAL_FAILURE(publish_from_manifests());
  node.update();
  std::set<std::string> want;
  for (const auto& id : expected_on("node-0")) {
    if (id.find("/ns/apps-1/") == std::string::npos) want.insert(id);
  }
  std::set<std::string> ids;
  for (const auto& [id, st] : settled_certificates()) ids.insert(id);
  EXPECT_EQ(ids, want);
}

}  // namespace
}  // namespace zt::testing
