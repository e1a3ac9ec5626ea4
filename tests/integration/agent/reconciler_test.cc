#include "agent/reconcile/reconciler.h"

#include <chrono>
#include <condition_variable>
#include <fstream>
#include <mutex>
#include <thread>

#include <gtest/gtest.h>
#include <unistd.h>

#include "tests/support/mesh.h"

namespace zt::agent {
namespace {

namespace fs = std::filesystem;
namespace manifest = meshd::manifest;
using namespace std::chrono_literals;

// One ordered log shared by the capture recorder and the ZDS client ("ztunnel"), so a test can
// check what happened before what.
class EventLog {
 public:
  void add(std::string e) {
    std::lock_guard lock(mu_);
    events_.push_back(std::move(e));
    cv_.notify_all();
  }
  bool wait_for(const std::string& e, std::chrono::milliseconds timeout = 5s) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] {
      return std::find(events_.begin(), events_.end(), e) != events_.end();
    });
  }
  std::vector<std::string> events() const {
    std::lock_guard lock(mu_);
    return events_;
  }
  // Index of the first `e`, or -1.
  int index_of(const std::string& e) const {
    std::lock_guard lock(mu_);
    auto it = std::find(events_.begin(), events_.end(), e);
    return it == events_.end() ? -1 : static_cast<int>(it - events_.begin());
  }
  size_t count(const std::string& e) const {
    std::lock_guard lock(mu_);
    return static_cast<size_t>(std::count(events_.begin(), events_.end(), e));
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> events_;
};

// The seam: records what the agent asks of the eBPF capture.
class RecordingCapture final : public bpf::CaptureProgram {
 public:
  RecordingCapture(EventLog& log, std::set<std::string> pinned)
      : log_(log), pinned_(std::move(pinned)) {}
  Status enroll(std::string_view key, int cgroup_fd, int netns_fd,
                const bpf::PodNetwork& net) override {
    if (cgroup_fd < 0 || netns_fd < 0) return fail("bad fds");
    nets_[std::string(key)] = net;
    pinned_.insert(std::string(key));
    log_.add("capture enroll " + std::string(key));
    return {};
  }
  Status release(std::string_view key) override {
    pinned_.erase(std::string(key));
    log_.add("capture release " + std::string(key));
    return {};
  }
  std::vector<std::string> enrolled() const override { return {pinned_.begin(), pinned_.end()}; }
  Status attach_proxy_cgroup(int) override { return {}; }
  bpf::Counters counters() const override { return {}; }
  const std::string& pin_root() const override { return root_; }

  std::map<std::string, bpf::PodNetwork> nets_;

 private:
  EventLog& log_;
  std::set<std::string> pinned_;
  std::string root_ = "/nonexistent";
};

manifest::Namespace make_ns(const std::string& name, const std::string& mode) {
  manifest::Namespace n;
  n.meta.name = name;
  if (!mode.empty()) n.meta.labels["istio.io/dataplane-mode"] = mode;
  return n;
}

manifest::Pod make_pod(const std::string& ns, const std::string& name, const std::string& uid) {
  manifest::Pod p;
  p.meta.name = name;
  p.meta.namespace_ = ns;
  p.meta.uid = uid;
  p.node_name = "node-a";
  p.service_account_name = "sa-" + name;
  p.ips = {"10.9.0.5"};
  p.phase = "Running";
  return p;
}

class ReconcilerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto self = netns::Netns::open("/proc/self/ns/net");
    ASSERT_TRUE(self) << self.error().describe();
    self_inode_ = self->inode();
    auto server = zds::Server::start((dir_.path() / "zds.sock").string());
    ASSERT_TRUE(server) << server.error().describe();
    server_ = std::move(*server);
    objects_.put(make_ns("shop", "ambient"));
  }
  void TearDown() override {
    if (client_) client_->stop();
    if (server_) server_->stop();
  }

  // A pod cgroup whose only process is this test.
  fs::path make_pod_cgroup(const std::string& uid) {
    auto dir = dir_.path() / "cgroup" / "kubepods" / ("pod" + uid) / "ctr";
    fs::create_directories(dir);
    std::ofstream(dir / "cgroup.procs") << getpid() << "\n";
    return dir.parent_path();
  }

  void start_client() {
    zds::ClientHandler h;
    h.add = [this](const std::string& uid, const zds::WorkloadInfo& info, netns::Netns ns) {
      if (ns.inode() == self_inode_) {
        log_.add("zds add " + uid + " " + info.namespace_name + "/" + info.name + " " +
                 info.service_account);
      } else {
        log_.add("zds add " + uid + " with another netns");
      }
      return std::string();
    };
    h.keep = [this](const std::string& uid) {
      log_.add("zds keep " + uid);
      return std::string();
    };
    h.snapshot_sent = [this] {
      log_.add("zds snapshot");
      return std::string();
    };
    h.del = [this](const std::string& uid) {
      log_.add("zds del " + uid);
      return std::string();
    };
    client_ = zds::Client::start((dir_.path() / "zds.sock").string(), std::move(h));
  }

  std::unique_ptr<Reconciler> make_reconciler(RecordingCapture& capture) {
    return std::make_unique<Reconciler>(
        capture, ReconcilerOptions{.node_name = "node-a",
                                   .cgroup_root = dir_.path() / "cgroup",
                                   .probe_sources = {asio::ip::make_address("192.0.2.1")},
                                   .prepare_netns = [this](const netns::Netns& ns) -> Status {
                                     prepared_.push_back(ns.inode());
                                     return {};
                                   }});
  }

  ObjectsPtr snapshot() { return std::make_shared<const manifest::ObjectSet>(objects_); }

  testing::TempDir dir_;
  EventLog log_;
  uint64_t self_inode_ = 0;
  std::unique_ptr<zds::Server> server_;
  std::unique_ptr<zds::Client> client_;
  manifest::ObjectSet objects_;
  std::vector<uint64_t> prepared_;
};

TEST_F(ReconcilerTest, EnrollsPodThenAnnouncesItsNetnsOverZds) {
  RecordingCapture capture(log_, {});
  auto r = make_reconciler(capture);
  make_pod_cgroup("u-web");
  objects_.put(make_pod("shop", "web", "u-web"));
  r->reconcile(snapshot());
  r->attach_zds(server_.get());
  start_client();

  ASSERT_TRUE(log_.wait_for("zds snapshot"));
  EXPECT_TRUE(log_.wait_for("zds add u-web shop/web sa-web"));
  EXPECT_LT(log_.index_of("capture enroll u-web"), log_.index_of("zds add u-web shop/web sa-web"));
  EXPECT_LT(log_.index_of("zds add u-web shop/web sa-web"), log_.index_of("zds snapshot"))
      << "the replay carries the pod before SnapshotSent";
  ASSERT_EQ(capture.nets_.count("u-web"), 1u);
  const auto& net = capture.nets_.at("u-web");
  ASSERT_EQ(net.ips.size(), 1u);
  EXPECT_EQ(net.ips[0].to_string(), "10.9.0.5");
  ASSERT_EQ(net.probe_sources.size(), 1u);
  EXPECT_EQ(net.probe_sources[0].to_string(), "192.0.2.1");
  EXPECT_EQ(prepared_, std::vector<uint64_t>{self_inode_}) << "netns prepared before capture";
  EXPECT_FALSE(r->needs_retry());
  EXPECT_EQ(r->stats().enrolled, 1u);

  // A second reconcile with the same objects changes nothing.
  r->reconcile(snapshot());
  auto acked = server_->wait_acked(5s);
  ASSERT_TRUE(acked) << acked.error().describe();
  EXPECT_EQ(log_.count("capture enroll u-web"), 1u);
}

TEST_F(ReconcilerTest, NamespaceFlipReleasesCaptureBeforeZdsAndBack) {
  RecordingCapture capture(log_, {});
  auto r = make_reconciler(capture);
  make_pod_cgroup("u-web");
  objects_.put(make_pod("shop", "web", "u-web"));
  objects_.put(make_pod("shop", "other-node", "u-far"));
  objects_.pods["shop/other-node"].node_name = "node-b";
  r->reconcile(snapshot());
  r->attach_zds(server_.get());
  start_client();
  ASSERT_TRUE(log_.wait_for("zds snapshot"));
  EXPECT_EQ(log_.index_of("capture enroll u-far"), -1);

  objects_.put(make_ns("shop", "none"));
  r->reconcile(snapshot());
  ASSERT_TRUE(log_.wait_for("zds del u-web"));
  EXPECT_LT(log_.index_of("capture release u-web"), log_.index_of("zds del u-web"));
  EXPECT_TRUE(capture.enrolled().empty());
  EXPECT_EQ(r->stats().enrolled, 0u);

  objects_.put(make_ns("shop", "ambient"));
  r->reconcile(snapshot());
  ASSERT_TRUE(server_->wait_acked(5s));
  EXPECT_EQ(log_.count("capture enroll u-web"), 2u);
  EXPECT_EQ(log_.count("zds add u-web shop/web sa-web"), 2u);
}

TEST_F(ReconcilerTest, PodNotStartedYetIsRetriedUntilItsCgroupAppears) {
  RecordingCapture capture(log_, {});
  auto r = make_reconciler(capture);
  r->attach_zds(server_.get());
  start_client();
  ASSERT_TRUE(log_.wait_for("zds snapshot"));

  objects_.put(make_pod("shop", "web", "u-web"));
  r->reconcile(snapshot());
  EXPECT_TRUE(r->needs_retry());
  EXPECT_EQ(r->stats().waiting, 1u);
  r->retry();
  EXPECT_EQ(log_.index_of("capture enroll u-web"), -1);

  // The cgroup exists but holds no process yet: still waiting.
  auto pod = dir_.path() / "cgroup" / "podu-web";
  fs::create_directories(pod);
  std::ofstream(pod / "cgroup.procs") << "";
  r->retry();
  EXPECT_TRUE(r->needs_retry());

  std::ofstream(pod / "cgroup.procs") << getpid() << "\n";
  r->retry();
  EXPECT_FALSE(r->needs_retry());
  EXPECT_TRUE(log_.wait_for("zds add u-web shop/web sa-web"));
}

TEST_F(ReconcilerTest, RestartReenrollsPinnedDesiredPodsAndReleasesTheRest) {
  // An earlier agent left three pods pinned: one still desired and running, one desired whose
  // cgroup cannot be found right now, one whose namespace left the mesh meanwhile.
  RecordingCapture capture(log_, {"u-web", "u-slow", "u-old"});
  auto r = make_reconciler(capture);
  make_pod_cgroup("u-web");
  objects_.put(make_pod("shop", "web", "u-web"));
  objects_.put(make_pod("shop", "slow", "u-slow"));
  objects_.put(make_ns("legacy", "none"));
  objects_.put(make_pod("legacy", "old", "u-old"));
  r->reconcile(snapshot());

  EXPECT_EQ(log_.count("capture enroll u-web"), 1u) << "re-enrolled in place";
  EXPECT_EQ(log_.index_of("capture release u-web"), -1) << "never released: no capture gap";
  EXPECT_EQ(log_.count("capture release u-old"), 1u);
  EXPECT_EQ(log_.index_of("capture release u-slow"), -1) << "kept pinned while not located";

  r->attach_zds(server_.get());
  start_client();
  ASSERT_TRUE(log_.wait_for("zds snapshot"));
  EXPECT_TRUE(log_.wait_for("zds add u-web shop/web sa-web"));
  EXPECT_TRUE(log_.wait_for("zds keep u-slow"));
  EXPECT_LT(log_.index_of("zds keep u-slow"), log_.index_of("zds snapshot"));
  EXPECT_EQ(log_.index_of("zds add u-old shop/old sa-old"), -1);

  // The slow pod shows up: enrolled and added after the snapshot.
  make_pod_cgroup("u-slow");
  r->retry();
  EXPECT_TRUE(log_.wait_for("zds add u-slow shop/slow sa-slow"));
  EXPECT_FALSE(r->needs_retry());
}

TEST_F(ReconcilerTest, PodDeletedAndPodOptOutAreReleased) {
  RecordingCapture capture(log_, {});
  auto r = make_reconciler(capture);
  make_pod_cgroup("u-a");
  make_pod_cgroup("u-b");
  objects_.put(make_pod("shop", "a", "u-a"));
  objects_.put(make_pod("shop", "b", "u-b"));
  r->reconcile(snapshot());
  r->attach_zds(server_.get());
  start_client();
  ASSERT_TRUE(log_.wait_for("zds snapshot"));

  objects_.pods.erase("shop/a");
  objects_.pods["shop/b"].meta.labels["istio.io/dataplane-mode"] = "none";
  r->reconcile(snapshot());
  EXPECT_TRUE(log_.wait_for("zds del u-a"));
  EXPECT_TRUE(log_.wait_for("zds del u-b"));
  EXPECT_EQ(r->stats().releases, 2u);
}

TEST_F(ReconcilerTest, ChangedPodDataIsReannounced) {
  RecordingCapture capture(log_, {});
  auto r = make_reconciler(capture);
  make_pod_cgroup("u-web");
  objects_.put(make_pod("shop", "web", "u-web"));
  r->reconcile(snapshot());
  r->attach_zds(server_.get());
  start_client();
  ASSERT_TRUE(log_.wait_for("zds snapshot"));

  objects_.pods["shop/web"].service_account_name = "renamed";
  objects_.pods["shop/web"].ips = {"10.9.0.6"};
  r->reconcile(snapshot());
  EXPECT_TRUE(log_.wait_for("zds add u-web shop/web renamed"));
  EXPECT_EQ(capture.nets_.at("u-web").ips.at(0).to_string(), "10.9.0.6");
}

TEST_F(ReconcilerTest, ReleaseAllReleasesEnrolledAndPinned) {
  RecordingCapture capture(log_, {"u-pinned"});
  auto r = make_reconciler(capture);
  make_pod_cgroup("u-web");
  objects_.put(make_pod("shop", "web", "u-web"));
  objects_.put(make_pod("shop", "pinned", "u-pinned"));
  r->reconcile(snapshot());
  r->release_all("test");
  EXPECT_EQ(log_.count("capture release u-web"), 1u);
  EXPECT_EQ(log_.count("capture release u-pinned"), 1u);
  EXPECT_TRUE(capture.enrolled().empty());
  EXPECT_FALSE(r->needs_retry());
}

}  // namespace
}  // namespace zt::agent
