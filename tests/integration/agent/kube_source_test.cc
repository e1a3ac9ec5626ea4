// The agent's Kubernetes API source (make_kube_api_source) against the in-test API server
// (tests/integration/kube/fake_api_server.h): it asks for this node's pods only (fieldSelector
// spec.nodeName=<node> on every pod LIST/WATCH, nothing on namespaces), gets only them, and
// yields the same desired set as the manifest directory with the same objects, first from
// load() and then through watch(). load() waits out a failing server and gives up on stop().
// Finally the source drives the real Reconciler (capture replaced at its interface by a
// recorder, the pod cgroup simulated by a directory that names this process, as in
// reconciler_test.cc), so no privileges are needed.
#include <chrono>
#include <fstream>
#include <set>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include "agent/enroll/enroll.h"
#include "agent/reconcile/reconciler.h"
#include "agent/source/source.h"
#include "meshd/kube/config.h"
#include "tests/integration/kube/fake_api_server.h"
#include "tests/support/mesh.h"

namespace zt::agent {
namespace {

namespace fs = std::filesystem;
namespace kube = meshd::kube;
using namespace std::chrono_literals;

constexpr const char* kNode = "node-a";

std::string namespace_yaml(const std::string& name, const std::string& mode) {
  std::string labels =
      mode.empty() ? "" : fmt::format("\n  labels:\n    istio.io/dataplane-mode: {}", mode);
  return fmt::format("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {}{}\n", name, labels);
}

std::string pod_yaml(const std::string& ns, const std::string& name, const std::string& node,
                     const std::string& ip) {
  return fmt::format(R"(apiVersion: v1
kind: Pod
metadata:
  name: {1}
  namespace: {0}
  uid: uid-{0}-{1}
  labels:
    app: {1}
spec:
  nodeName: {2}
  serviceAccountName: sa-{1}
status:
  phase: Running
  podIP: {3}
  podIPs:
  - ip: {3}
)",
                     ns, name, node, ip);
}

// Names of the desired pods, "ns/name".
std::set<std::string> names(const std::map<std::string, DesiredPod>& desired) {
  std::set<std::string> out;
  for (const auto& [uid, pod] : desired) out.insert(pod.describe());
  return out;
}

class RecordingCapture final : public bpf::CaptureProgram {
 public:
  Status enroll(std::string_view key, int cgroup_fd, int netns_fd,
                const bpf::PodNetwork&) override {
    if (cgroup_fd < 0 || netns_fd < 0) return fail("bad fds");
    pinned_.insert(std::string(key));
    return {};
  }
  Status release(std::string_view key) override {
    pinned_.erase(std::string(key));
    return {};
  }
  std::vector<std::string> enrolled() const override { return {pinned_.begin(), pinned_.end()}; }
  Status attach_proxy_cgroup(int) override { return {}; }
  bpf::Counters counters() const override { return {}; }
  const std::string& pin_root() const override { return root_; }

  std::set<std::string> pinned_;

 private:
  std::string root_ = "/nonexistent";
};

class AgentKubeSourceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::create_directories(manifests());
    write_both("ns.yaml", namespace_yaml("shop", "ambient") + "---\n" +
                              namespace_yaml("plain", "") + "---\n" +
                              namespace_yaml("other", "ambient"));
    write_both("web.yaml", pod_yaml("shop", "web", kNode, "10.9.0.5"));
    write_both("db.yaml", pod_yaml("shop", "db", "node-b", "10.9.1.5"));     // another node
    write_both("plain.yaml", pod_yaml("plain", "tool", kNode, "10.9.0.6"));  // not ambient
    write_both("api.yaml", pod_yaml("shop", "api", kNode, "10.9.0.7"));
  }
  void TearDown() override {
    if (source_) source_->stop();
  }

  fs::path manifests() const { return dir_.path() / "manifests"; }

  // The same objects in the manifest directory and on the API server.
  void write_both(const std::string& file, const std::string& yaml) {
    testing::write_file(manifests() / file, yaml);
    server_.put_yaml(yaml);
  }

  kube::KubeConfig config() {
    kube::KubeConfig c;
    c.server = *kube::parse_server_url(server_.url());
    c.kinds = {"Namespace", "Pod"};  // as the app sets them
    c.pod_field_selector = std::string("spec.nodeName=") + kNode;
    c.page_size = 2;
    c.debounce = 20ms;
    c.backoff_initial = 20ms;
    c.backoff_max = 100ms;
    return c;
  }

  // What the manifest directory source yields for the same objects.
  std::map<std::string, DesiredPod> desired_from_manifests() {
    auto source = make_manifest_dir_source(manifests());
    auto loaded = source->load();
    EXPECT_TRUE(loaded) << loaded.error().describe();
    if (!loaded) return {};
    return desired_pods(**loaded, kNode);
  }

  // Runs the io_context on this thread (as the app does) until `pred` or the timeout.
  bool run_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout = 10s) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!pred()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      io_.restart();
      io_.run_for(10ms);
    }
    return true;
  }

  testing::TempDir dir_;
  testing::FakeApiServer server_;
  asio::io_context io_;
  std::unique_ptr<ObjectSource> source_;
};

TEST_F(AgentKubeSourceTest, LoadsOnlyThisNodesPodsAndMatchesTheManifestSource) {
  source_ = make_kube_api_source(io_, config());
  auto loaded = source_->load();
  ASSERT_TRUE(loaded) << loaded.error().describe();
  const auto& objects = **loaded;

  std::set<std::string> pods;
  for (const auto& [key, pod] : objects.pods) pods.insert(key);
  EXPECT_EQ(pods, (std::set<std::string>{"plain/tool", "shop/api", "shop/web"}))
      << "node-b's pod is not even received";
  EXPECT_EQ(objects.namespaces.size(), 3u) << "namespaces are not filtered";

  auto want = desired_from_manifests();
  EXPECT_EQ(names(want), (std::set<std::string>{"shop/api", "shop/web"}));
  EXPECT_EQ(desired_pods(objects, kNode), want);

  // On the wire: the field selector on every pod request and on nothing else.
  size_t pod_requests = 0;
  for (const auto& r : server_.requests()) {
    bool is_pods = r.target.starts_with("/api/v1/pods?");
    pod_requests += is_pods ? 1 : 0;
    EXPECT_EQ(r.target.find("fieldSelector=spec.nodeName%3Dnode-a") != std::string::npos, is_pods)
        << r.target;
  }
  EXPECT_GT(pod_requests, 0u);
  // Only namespaces and pods are asked for (the node agent's RBAC allows nothing else).
  std::set<std::string> paths;
  for (const auto& r : server_.requests()) paths.insert(r.target.substr(0, r.target.find('?')));
  EXPECT_EQ(paths, (std::set<std::string>{"/api/v1/namespaces", "/api/v1/pods"}));
}

TEST_F(AgentKubeSourceTest, WatchForwardsChangesAndConvergesWithTheManifestSource) {
  source_ = make_kube_api_source(io_, config());
  auto loaded = source_->load();
  ASSERT_TRUE(loaded) << loaded.error().describe();
  ObjectsPtr latest = *loaded;
  size_t updates = 0;
  ASSERT_TRUE(source_->watch(io_.get_executor(), [&](ObjectsPtr objects) {
    latest = std::move(objects);
    ++updates;
  }));

  // A pod added on this node, one on another node, one removed, a namespace opting in.
  write_both("cart.yaml", pod_yaml("shop", "cart", kNode, "10.9.0.8"));
  write_both("far.yaml", pod_yaml("shop", "far", "node-b", "10.9.1.8"));
  fs::remove(manifests() / "api.yaml");
  server_.remove("Pod", "shop", "api");
  write_both("ns.yaml", namespace_yaml("shop", "ambient") + "---\n" +
                            namespace_yaml("plain", "ambient") + "---\n" +
                            namespace_yaml("other", "ambient"));

  auto want = desired_from_manifests();
  ASSERT_EQ(names(want), (std::set<std::string>{"plain/tool", "shop/cart", "shop/web"}));
  ASSERT_TRUE(run_until([&] { return desired_pods(*latest, kNode) == want; }))
      << "desired: " << fmt::format("{}", fmt::join(names(desired_pods(*latest, kNode)), ","));
  EXPECT_GT(updates, 0u);
  EXPECT_EQ(latest->pods.count("shop/far"), 0u);

  // Bookmarks and unchanged relists are not forwarded as updates.
  auto before = updates;
  server_.drop_watches(false);
  run_until([] { return false; }, 500ms);
  EXPECT_EQ(updates, before);
}

TEST_F(AgentKubeSourceTest, LoadWaitsOutAFailingServer) {
  server_.fail_next_requests(4, 500);
  source_ = make_kube_api_source(io_, config());
  auto loaded = source_->load();
  ASSERT_TRUE(loaded) << loaded.error().describe();
  EXPECT_EQ(desired_pods(**loaded, kNode), desired_from_manifests());
}

TEST_F(AgentKubeSourceTest, LoadGivesUpWhenStopped) {
  server_.fail_next_requests(1'000'000, 503);
  source_ = make_kube_api_source(io_, config());
  // What the app's signal handler does while load() runs the io_context.
  asio::steady_timer timer(io_, 300ms);
  timer.async_wait([this](const error_code& ec) {
    if (!ec) source_->stop();
  });
  auto start = std::chrono::steady_clock::now();
  auto loaded = source_->load();
  ASSERT_FALSE(loaded);
  EXPECT_NE(loaded.error().describe().find("stopped"), std::string::npos)
      << loaded.error().describe();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
}

TEST_F(AgentKubeSourceTest, DrivesTheReconcilerForThisNodesPodsOnly) {
  for (const char* uid : {"uid-shop-web", "uid-shop-api", "uid-shop-db", "uid-shop-cart"}) {
    auto dir = dir_.path() / "cgroup" / "kubepods" / (std::string("pod") + uid) / "ctr";
    fs::create_directories(dir);
    std::ofstream(dir / "cgroup.procs") << getpid() << "\n";
  }
  RecordingCapture capture;
  Reconciler reconciler(
      capture,
      ReconcilerOptions{.node_name = kNode,
                        .cgroup_root = dir_.path() / "cgroup",
                        .probe_sources = {asio::ip::make_address("192.0.2.1")},
                        .prepare_netns = [](const netns::Netns&) -> Status { return {}; }});
  source_ = make_kube_api_source(io_, config());
  auto loaded = source_->load();
  ASSERT_TRUE(loaded) << loaded.error().describe();
  reconciler.reconcile(*loaded);
  EXPECT_EQ(capture.pinned_, (std::set<std::string>{"uid-shop-api", "uid-shop-web"}));
  ASSERT_TRUE(source_->watch(
      io_.get_executor(), [&](ObjectsPtr objects) { reconciler.reconcile(std::move(objects)); }));

  server_.put_yaml(pod_yaml("shop", "cart", kNode, "10.9.0.8"));
  server_.remove("Pod", "shop", "api");
  server_.put_yaml(pod_yaml("shop", "db2", "node-b", "10.9.1.9"));
  std::set<std::string> want{"uid-shop-cart", "uid-shop-web"};
  EXPECT_TRUE(run_until([&] { return capture.pinned_ == want; }))
      << fmt::format("{}", fmt::join(capture.pinned_, ","));
}

}  // namespace
}  // namespace zt::agent
