// The real build/bin/meshd on a temporary manifest directory: it serves the manifests' workloads
// over Delta ADS, pushes only the change when a manifest is edited, keeps its last good state when
// a manifest is broken, signs node-scoped certificates and stops cleanly on SIGTERM.
#include <filesystem>
#include <fstream>
#include <random>
#include <regex>
#include <set>
#include <sstream>

#include <gtest/gtest.h>
#include <signal.h>

#include "common/identity/csr.h"
#include "common/net/address.h"
#include "istio/v1/auth/ca.grpc.pb.h"
#include "istio/workload/workload.pb.h"
#include "tests/integration/meshd/ads_test_client.h"
#include "tests/support/cluster_manifests.h"
#include "tests/support/daemon.h"
#include "tests/support/grpc_library.h"

namespace zt::meshd {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using testing::AdsTestClient;
using testing::kAddressUrl;
using testing::kAuthorizationUrl;

struct TempDir {
  fs::path path;
  TempDir() {
    std::random_device rd;
    path = fs::temp_directory_path() / fmt::format("meshd-test-{:x}", rd());
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

std::string read_text(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string extra_pod_yaml(const std::string& name, const std::string& ip,
                           const std::string& node = "node-0", const std::string& sa = "default") {
  return fmt::format(R"(apiVersion: v1
kind: Pod
metadata:
  name: {0}
  namespace: apps-0
  labels:
    app: {0}
spec:
  nodeName: {2}
  serviceAccountName: {3}
  containers:
  - name: main
    image: echo
status:
  phase: Running
  podIP: {1}
  podIPs:
  - ip: {1}
  conditions:
  - type: Ready
    status: "True"
)",
                     name, ip, node, sa);
}

struct Counted {
  size_t workloads = 0, services = 0;
};

Counted count(const envoy::service::discovery::v3::DeltaDiscoveryResponse& r) {
  Counted c;
  for (const auto& res : r.resources()) {
    istio::workload::Address a;
    if (!res.resource().UnpackTo(&a)) continue;
    if (a.has_workload()) c.workloads++;
    if (a.has_service()) c.services++;
  }
  return c;
}

class MeshdBinaryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    manifests_ = tmp_.path / "manifests";
    zt::testing::ClusterManifestOptions opts;
    opts.pods = 6;
    opts.ambient_namespaces = {"apps-0"};
    cluster_ = zt::testing::write_cluster_manifests(manifests_, opts);
    std::ofstream(tmp_.path / "tokens.yaml") << "token-0: node-0\ntoken-1: node-1\n";
    auto d = zt::testing::Daemon::start(
        zt::testing::bin_path("meshd"),
        {"--manifests", manifests_.string(), "--grpc-address", "127.0.0.1:0", "--ca-dir",
         (tmp_.path / "ca").string(), "--tokens", (tmp_.path / "tokens.yaml").string()});
    ASSERT_TRUE(d) << d.error().describe();
    meshd_ = std::move(*d);
    auto ready = meshd_->wait_for(std::regex("meshd ready: (\\d+) workloads"), 20s);
    ASSERT_TRUE(ready) << meshd_->output();
    EXPECT_EQ(*ready, "6");
    auto ep = meshd_->listening("grpc");
    ASSERT_TRUE(ep) << meshd_->output();
    target_ = net::format_endpoint(*ep);
  }

  TempDir tmp_;
  fs::path manifests_;
  zt::testing::ClusterManifests cluster_;
  std::unique_ptr<zt::testing::Daemon> meshd_;
  std::string target_;
};

TEST_F(MeshdBinaryTest, ServesManifestsAndPushesOnlyTheEditedObject) {
  AdsTestClient c(target_, "ztunnel~10.244.0.10~ztunnel-0.istio-system~istio-system.svc");
  ASSERT_TRUE(c.subscribe(kAddressUrl));
  auto full = c.next(10s);
  ASSERT_TRUE(full);
  auto n = count(*full);
  EXPECT_EQ(n.workloads, cluster_.pods.size());
  EXPECT_EQ(n.services, cluster_.services.size());
  c.apply(*full);
  ASSERT_TRUE(c.subscribe(kAuthorizationUrl));
  auto policies = c.next(10s);
  ASSERT_TRUE(policies);
  c.apply(*policies);

  // A new pod: exactly one workload arrives.
  zt::testing::write_manifest_file(manifests_ / "extra.yaml",
                                   extra_pod_yaml("extra", "10.244.9.9"));
  auto added = c.next(10s);
  ASSERT_TRUE(added) << meshd_->output();
  ASSERT_EQ(added->resources_size(), 1);
  istio::workload::Address a;
  ASSERT_TRUE(added->resources(0).resource().UnpackTo(&a));
  EXPECT_EQ(a.workload().name(), "extra");
  EXPECT_EQ(a.workload().tunnel_protocol(), istio::workload::HBONE);  // apps-0 is ambient
  EXPECT_EQ(added->removed_resources_size(), 0);
  c.apply(*added);
  EXPECT_TRUE(meshd_->wait_for(std::regex("published .*workloads=7"), 5s));

  // A broken edit is reported with its file and changes nothing.
  zt::testing::write_manifest_file(manifests_ / "broken.yaml",
                                   "apiVersion: v1\nkind: Pod\nmetadata:\n  name: bad\n"
                                   "  namespace: apps-0\nspec:\n  nodeName: [1, 2]\n");
  EXPECT_TRUE(meshd_->wait_for(std::regex("manifest rejected.*broken\\.yaml"), 5s))
      << meshd_->output();
  EXPECT_FALSE(c.next(500ms));

  // Deleting the file removes the pod.
  fs::remove(manifests_ / "extra.yaml");
  auto removed = c.next(10s);
  ASSERT_TRUE(removed) << meshd_->output();
  EXPECT_EQ(removed->resources_size(), 0);
  ASSERT_EQ(removed->removed_resources_size(), 1);
  EXPECT_NE(removed->removed_resources(0).find("extra"), std::string::npos);

  EXPECT_EQ(meshd_->stop(SIGTERM), 0);
}

// Rewrites the Namespace document at the top of <ns>/namespace.yaml with `labels`.
void relabel_namespace(const fs::path& manifests, const std::string& ns,
                       const std::map<std::string, std::string>& labels) {
  auto path = manifests / ns / "namespace.yaml";
  auto text = read_text(path);
  auto rest = text.find("---");
  ASSERT_NE(rest, std::string::npos) << text;
  zt::testing::write_manifest_file(path,
                                   zt::testing::namespace_manifest(ns, labels) + text.substr(rest));
}

TEST_F(MeshdBinaryTest, LabellingANamespaceAmbientFlipsOnlyItsPodsToHbone) {
  AdsTestClient c(target_, "ztunnel-label");
  ASSERT_TRUE(c.subscribe(kAddressUrl));
  auto full = c.next(10s);
  ASSERT_TRUE(full);
  c.apply(*full);
  size_t in_apps1 = 0;
  for (const auto& p : cluster_.pods) in_apps1 += p.namespace_ == "apps-1" ? 1 : 0;
  ASSERT_GT(in_apps1, 0u);

  auto flip = [&](istio::workload::TunnelProtocol want) {
    auto r = c.next(5s);
    ASSERT_TRUE(r) << meshd_->output();
    EXPECT_EQ(static_cast<size_t>(r->resources_size()), in_apps1);
    for (const auto& res : r->resources()) {
      istio::workload::Address a;
      ASSERT_TRUE(res.resource().UnpackTo(&a));
      EXPECT_EQ(a.workload().namespace_(), "apps-1");
      EXPECT_EQ(a.workload().tunnel_protocol(), want);
    }
    c.apply(*r);
  };
  relabel_namespace(manifests_, "apps-1", {{"istio.io/dataplane-mode", "ambient"}});
  flip(istio::workload::HBONE);
  relabel_namespace(manifests_, "apps-1", {});
  flip(istio::workload::NONE);
}

TEST_F(MeshdBinaryTest, CaSignsOnlyIdentitiesOfPodsOnTheCallersNode) {
  auto root = read_text(tmp_.path / "ca" / "root-cert.pem");
  ASSERT_FALSE(root.empty());
  EXPECT_TRUE(meshd_->saw(std::regex("root=.*root-cert\\.pem")));

  const zt::testing::GeneratedPod* on0 = nullptr;
  for (const auto& p : cluster_.pods) {
    if (p.node == "node-0" && !on0) on0 = &p;
  }
  ASSERT_TRUE(on0);
  auto identity_of = [](const zt::testing::GeneratedPod& p) {
    return fmt::format("spiffe://cluster.local/ns/{}/sa/{}", p.namespace_, p.service_account);
  };
  auto stub = istio::v1::auth::IstioCertificateService::NewStub(
      grpc::CreateChannel(target_, grpc::InsecureChannelCredentials()));
  auto request = [&](const std::string& token, const std::string& uri,
                     istio::v1::auth::IstioCertificateResponse* out) {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", fmt::format("Bearer {}", token));
    istio::v1::auth::IstioCertificateRequest req;
    auto key = identity::generate_p256_key();
    auto id = tls::SpiffeId::parse(uri);
    auto csr = identity::make_csr_pem(key->get(), *id);
    req.set_csr(*csr);
    (*req.mutable_metadata()->mutable_fields())["ImpersonatedIdentity"].set_string_value(uri);
    return stub->CreateCertificate(&ctx, req, out);
  };
  istio::v1::auth::IstioCertificateResponse ok;
  auto st = request("token-0", identity_of(*on0), &ok);
  ASSERT_TRUE(st.ok()) << st.error_message() << meshd_->output();
  ASSERT_GE(ok.cert_chain_size(), 1);
  EXPECT_EQ(ok.cert_chain(ok.cert_chain_size() - 1), root);

  // A pod whose service account runs only on node-1: node-0's token may not obtain it.
  zt::testing::write_manifest_file(manifests_ / "lonely.yaml",
                                   extra_pod_yaml("lonely", "10.244.9.8", "node-1", "lonely"));
  ASSERT_TRUE(meshd_->wait_for(std::regex("published .*workloads=7"), 10s)) << meshd_->output();
  const std::string lonely = "spiffe://cluster.local/ns/apps-0/sa/lonely";
  istio::v1::auth::IstioCertificateResponse denied;
  auto st2 = request("token-0", lonely, &denied);
  EXPECT_EQ(st2.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(st2.error_message(),
            fmt::format("node node-0 runs no workload with identity {}", lonely));
  istio::v1::auth::IstioCertificateResponse allowed;
  EXPECT_TRUE(request("token-1", lonely, &allowed).ok());
  istio::v1::auth::IstioCertificateResponse unauth;
  EXPECT_EQ(request("bogus", identity_of(*on0), &unauth).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(meshd_->stop(SIGTERM), 0);
}

}  // namespace
}  // namespace zt::meshd
