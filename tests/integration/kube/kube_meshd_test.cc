// The real meshd binary with --kube-server pointing at FakeApiServer publishes the same workload
// API as meshd --manifests on the same objects, follows a change made through the API, and
// waits for the API server (500s) before serving.
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <regex>
#include <sstream>

#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>
#include <signal.h>

#include "common/net/address.h"
#include "istio/security/authorization.pb.h"
#include "istio/workload/workload.pb.h"
#include "tests/integration/kube/fake_api_server.h"
#include "tests/integration/meshd/ads_test_client.h"
#include "tests/support/cluster_manifests.h"
#include "tests/support/daemon.h"

namespace zt::meshd {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using testing::AdsTestClient;
using testing::kAddressUrl;
using testing::kAuthorizationUrl;

std::string read_text(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

struct Meshd {
  std::unique_ptr<zt::testing::Daemon> daemon;
  std::string target;
};

Meshd start_meshd(const std::vector<std::string>& source_args, const fs::path& ca_dir) {
  std::vector<std::string> args = source_args;
  for (const auto& a : {std::string("--grpc-address"), std::string("127.0.0.1:0"),
                        std::string("--ca-dir"), ca_dir.string()}) {
    args.push_back(a);
  }
  auto d = zt::testing::Daemon::start(zt::testing::bin_path("meshd"), args);
  if (!d) throw std::runtime_error(d.error().describe());
  Meshd m{std::move(*d), {}};
  if (!m.daemon->wait_for(std::regex("meshd ready: (\\d+) workloads"), 30s)) {
    throw std::runtime_error("meshd not ready:\n" + m.daemon->output());
  }
  auto ep = m.daemon->listening("grpc");
  if (!ep) throw std::runtime_error("no grpc address:\n" + m.daemon->output());
  m.target = net::format_endpoint(*ep);
  return m;
}

// name -> resource of a full push of `type_url`.
template <class T>
std::map<std::string, T> full_state(const std::string& target, const std::string& type_url) {
  AdsTestClient c(target, "ztunnel~10.244.0.10~ztunnel-0.istio-system~istio-system.svc");
  std::map<std::string, T> out;
  if (!c.subscribe(type_url)) return out;
  auto r = c.next(10s);
  if (!r) return out;
  for (const auto& res : r->resources()) {
    T message;
    if (res.resource().UnpackTo(&message)) out[res.name()] = message;
  }
  return out;
}

template <class T>
void expect_same(const std::map<std::string, T>& a, const std::map<std::string, T>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [name, message] : a) {
    auto it = b.find(name);
    ASSERT_NE(it, b.end()) << name;
    EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(message, it->second))
        << name << "\n"
        << message.DebugString() << "\nvs\n"
        << it->second.DebugString();
  }
}

class KubeMeshdTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::random_device rd;
    dir_ = fs::temp_directory_path() / fmt::format("kube-meshd-{:x}", rd());
    zt::testing::ClusterManifestOptions opts;
    opts.pods = 8;
    opts.ambient_namespaces = {"apps-0", "apps-2"};
    cluster_ = zt::testing::write_cluster_manifests(dir_ / "manifests", opts);
    zt::testing::write_manifest_file(dir_ / "manifests" / "policy.yaml", kPolicy);
    server_.put_yaml(kPolicy);
    for (const auto& f : cluster_.files) server_.put_yaml(read_text(f));
    std::ofstream(dir_ / "token") << "meshd-token\n";
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  static constexpr const char* kPolicy = R"(apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: deny-app-1
  namespace: apps-0
spec:
  selector:
    matchLabels:
      app: app-1
  action: DENY
  rules:
  - from:
    - source:
        namespaces: ["apps-2"]
)";

  fs::path dir_;
  zt::testing::ClusterManifests cluster_;
  zt::testing::FakeApiServer server_;
};

TEST_F(KubeMeshdTest, PublishesTheSameWorkloadsAsFromManifestsAndFollowsTheApi) {
  auto from_files = start_meshd({"--manifests", (dir_ / "manifests").string()}, dir_ / "ca");
  // The API server fails at first: meshd retries and only serves once every kind is listed.
  server_.fail_next_requests(5, 500);
  auto from_api =
      start_meshd({"--kube-server", server_.url(), "--kube-token-file", (dir_ / "token").string()},
                  dir_ / "ca");
  EXPECT_TRUE(from_api.daemon->saw(std::regex("synced component=kube")));
  EXPECT_TRUE(from_api.daemon->saw(std::regex("meshd ready: 8 workloads")))
      << from_api.daemon->output();

  auto addresses_files = full_state<istio::workload::Address>(from_files.target, kAddressUrl);
  auto addresses_api = full_state<istio::workload::Address>(from_api.target, kAddressUrl);
  EXPECT_EQ(addresses_files.size(), cluster_.pods.size() + cluster_.services.size());
  expect_same(addresses_files, addresses_api);
  auto policies_files =
      full_state<istio::security::Authorization>(from_files.target, kAuthorizationUrl);
  auto policies_api =
      full_state<istio::security::Authorization>(from_api.target, kAuthorizationUrl);
  EXPECT_EQ(policies_files.size(), 1u);
  expect_same(policies_files, policies_api);

  for (const auto& r : server_.requests()) EXPECT_EQ(r.authorization, "Bearer meshd-token");

  // A pod created through the API reaches a connected ztunnel as one new workload.
  AdsTestClient c(from_api.target, "ztunnel-watch");
  ASSERT_TRUE(c.subscribe(kAddressUrl));
  auto full = c.next(10s);
  ASSERT_TRUE(full);
  c.apply(*full);
  server_.put_yaml(R"(apiVersion: v1
kind: Pod
metadata:
  name: extra
  namespace: apps-0
  uid: 1b4e28ba-2fa1-11d2-883f-0016d3cca427
spec:
  nodeName: node-0
  containers:
  - name: main
status:
  phase: Running
  podIP: 10.244.9.9
  conditions:
  - type: Ready
    status: "True"
)");
  auto added = c.next(10s);
  ASSERT_TRUE(added) << from_api.daemon->output();
  ASSERT_EQ(added->resources_size(), 1);
  istio::workload::Address a;
  ASSERT_TRUE(added->resources(0).resource().UnpackTo(&a));
  EXPECT_EQ(a.workload().name(), "extra");
  EXPECT_EQ(a.workload().uid(), "Kubernetes//Pod/apps-0/extra");
  EXPECT_EQ(a.workload().tunnel_protocol(), istio::workload::HBONE);
  c.apply(*added);

  // Deleting it through the API removes it.
  server_.remove("Pod", "apps-0", "extra");
  auto removed = c.next(10s);
  ASSERT_TRUE(removed) << from_api.daemon->output();
  ASSERT_EQ(removed->removed_resources_size(), 1);

  EXPECT_EQ(from_api.daemon->stop(SIGTERM), 0);
  EXPECT_EQ(from_files.daemon->stop(SIGTERM), 0);
}

TEST_F(KubeMeshdTest, FlagsNameTheProblem) {
  auto run = [](const std::vector<std::string>& args) {
    auto d = zt::testing::Daemon::start(zt::testing::bin_path("meshd"), args);
    if (!d) throw std::runtime_error(d.error().describe());
    auto code = (*d)->stop(0, 10s);  // signal 0: just wait for the exit
    return std::pair{code, (*d)->output()};
  };
  auto [c1, o1] = run({"--grpc-address", "127.0.0.1:0"});
  EXPECT_EQ(c1, 2);
  EXPECT_NE(o1.find("--manifests DIR, --kube-api or --kube-server URL is required"),
            std::string::npos)
      << o1;
  auto [c2, o2] = run({"--manifests", "/tmp", "--kube-server", "http://127.0.0.1:1"});
  EXPECT_EQ(c2, 2);
  EXPECT_NE(o2.find("only one of"), std::string::npos) << o2;
  auto [c3, o3] = run({"--kube-server", "ftp://x"});
  EXPECT_EQ(c3, 1);
  EXPECT_NE(o3.find("--kube-server: server URL \"ftp://x\" must start with"), std::string::npos)
      << o3;
  for (const char* bad : {"soon", "0s"}) {
    auto [c4, o4] = run({"--manifests", "/tmp", "--jwks-refresh-interval", bad});
    EXPECT_EQ(c4, 2);
    EXPECT_NE(o4.find("--jwks-refresh-interval"), std::string::npos) << o4;
  }
}

}  // namespace
}  // namespace zt::meshd
