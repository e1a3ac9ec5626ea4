// node-agent end to end on the real kernel. Creates only its own objects, named with the test
// pid: netns zt-agent-<pid>, cgroup <cgroup2>/zt-agent-test-<pid>/..., pins under
// /sys/fs/bpf/ambient-mesh-test-<pid> (or a private bpffs under /tmp when /sys/fs/bpf is not
// one), and removes them all in destructors, also when the test fails.
#include <linux/magic.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <regex>
#include <thread>

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include "bpf/loader/capture.h"
#include "common/netns/netns.h"
#include "common/zds/zds.h"
#include "tests/integration/kube/fake_api_server.h"
#include "tests/support/cluster_manifests.h"
#include "tests/support/daemon.h"
#include "tests/support/mesh.h"
#include "tests/support/privileges.h"

namespace zt::testing {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

#ifndef BPF_FS_MAGIC
#define BPF_FS_MAGIC 0xcafe4a11
#endif

constexpr const char* kCgroup2 = "/sys/fs/cgroup/unified";
constexpr const char* kUid = "3f9a6c1e-2b7d-4e80-9d11-a0b1c2d3e4f5";
constexpr const char* kPodIp = "10.251.0.5";

int run(const std::string& cmd) {
  int rc = std::system((cmd + " >/dev/null 2>&1").c_str());
  return (rc == -1 || !WIFEXITED(rc)) ? -1 : WEXITSTATUS(rc);
}

bool is_fs(const char* path, unsigned long magic) {
  struct statfs st {};
  return ::statfs(path, &st) == 0 && static_cast<unsigned long>(st.f_type) == magic;
}

// A named network namespace with lo up and eth0 carrying the pod IP (a veth pair kept inside
// the namespace: nothing is added to the node's).
class PodNetns {
 public:
  explicit PodNetns(std::string name, const char* ip = kPodIp) : name_(std::move(name)) {
    ok_ = run("ip netns add " + name_) == 0 && run("ip -n " + name_ + " link set lo up") == 0 &&
          run("ip -n " + name_ + " link add eth0 type veth peer name eth1") == 0 &&
          run("ip -n " + name_ + " link set eth1 up") == 0 &&
          run("ip -n " + name_ + " addr add " + ip + "/24 dev eth0") == 0 &&
          run("ip -n " + name_ + " link set eth0 up") == 0;
  }
  ~PodNetns() { run("ip netns del " + name_); }
  bool ok() const { return ok_; }
  std::string path() const { return "/var/run/netns/" + name_; }
  uint64_t inode() const {
    struct stat st {};
    return ::stat(path().c_str(), &st) == 0 ? st.st_ino : 0;
  }

 private:
  std::string name_;
  bool ok_ = false;
};

// <cgroup2>/zt-agent-test-<pid>/kubepods/pod<uid>/ctr, with a sleep process in ctr and in the
// pod netns (joined to the cgroup first: `ip netns exec` would remount /sys).
class PodProcess {
 public:
  PodProcess(const std::string& root, const std::string& netns_path) : root_(root) {
    pod_dir_ = root_ + "/kubepods/pod" + kUid;
    ctr_dir_ = pod_dir_ + "/ctr";
    std::error_code ec;
    fs::create_directories(ctr_dir_, ec);
    if (ec) return;
    ok_ = spawn(netns_path);
  }
  // Replaces the process by one in another netns, in the same cgroup (a restarted sandbox).
  bool restart_in(const std::string& netns_path) {
    stop();
    return ok_ = spawn(netns_path);
  }
  ~PodProcess() {
    stop();
    // Deepest first; a cgroup can be removed once its processes are gone.
    for (const auto& d : {ctr_dir_, pod_dir_, root_ + "/kubepods", root_}) {
      for (int i = 0; i < 100 && ::rmdir(d.c_str()) != 0 && errno == EBUSY; ++i) {
        std::this_thread::sleep_for(10ms);
      }
    }
  }
  bool ok() const { return ok_; }
  pid_t pid() const { return pid_; }

 private:
  void stop() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    pid_ = -1;
  }
  bool spawn(const std::string& netns_path) {
    const std::string procs = ctr_dir_ + "/cgroup.procs";
    pid_ = ::fork();
    if (pid_ == 0) {
      // Only async-signal-safe calls from here to exec.
      char buf[32];
      int n = snprintf(buf, sizeof buf, "%d", static_cast<int>(::getpid()));
      int cg = ::open(procs.c_str(), O_WRONLY);
      if (cg < 0 || ::write(cg, buf, n) != n) _exit(10);
      ::close(cg);
      int ns = ::open(netns_path.c_str(), O_RDONLY);
      if (ns < 0 || ::setns(ns, CLONE_NEWNET) != 0) _exit(11);
      ::execlp("sleep", "sleep", "600", static_cast<char*>(nullptr));
      _exit(12);
    }
    // Started once the pid shows in the cgroup.
    for (int i = 0; i < 200 && pid_ > 0; ++i) {
      std::ifstream in(procs);
      long p = 0;
      if (in >> p && p == pid_) return true;
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }

  std::string root_, pod_dir_, ctr_dir_;
  pid_t pid_ = -1;
  bool ok_ = false;
};

// The pin root, on /sys/fs/bpf when that is a bpffs, else on a private bpffs mount.
class PinRoot {
 public:
  PinRoot() {
    const std::string suffix = std::to_string(::getpid());
    if (is_fs("/sys/fs/bpf", BPF_FS_MAGIC)) {
      path_ = "/sys/fs/bpf/ambient-mesh-test-" + suffix;
      ok_ = true;
      return;
    }
    std::string m = "/tmp/zt-agent-bpffs-" + suffix;
    if (::mkdir(m.c_str(), 0700) != 0) return;
    if (::mount("bpf", m.c_str(), "bpf", 0, nullptr) != 0) {
      ::rmdir(m.c_str());
      return;
    }
    mount_ = m;
    path_ = m + "/ambient-mesh-test";
    ok_ = true;
  }
  ~PinRoot() {
    if (!path_.empty()) (void)bpf::remove_pins(path_);
    std::error_code ec;
    fs::remove(path_, ec);
    if (!mount_.empty()) {
      ::umount2(mount_.c_str(), MNT_DETACH);
      ::rmdir(mount_.c_str());
    }
  }
  bool ok() const { return ok_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_, mount_;
  bool ok_ = false;
};

// ztunnel's side of ZDS, recording what it is told.
class FakeZtunnel {
 public:
  explicit FakeZtunnel(const std::string& socket) {
    zds::ClientHandler h;
    h.add = [this](const std::string& uid, const zds::WorkloadInfo& info, netns::Netns ns) {
      record("add " + uid + " " + info.namespace_name + "/" + info.name + " " +
             info.service_account + " inode=" + std::to_string(ns.inode()));
      return std::string();
    };
    h.keep = [this](const std::string& uid) {
      record("keep " + uid);
      return std::string();
    };
    h.snapshot_sent = [this] {
      record("snapshot");
      return std::string();
    };
    h.del = [this](const std::string& uid) {
      record("del " + uid);
      return std::string();
    };
    client_ = zds::Client::start(socket, std::move(h));
  }
  ~FakeZtunnel() { client_->stop(); }

  size_t count(const std::string& e) {
    std::lock_guard lock(mu_);
    return static_cast<size_t>(std::count(events_.begin(), events_.end(), e));
  }
  bool wait_count(const std::string& e, size_t n, std::chrono::milliseconds timeout = 15s) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] {
      return static_cast<size_t>(std::count(events_.begin(), events_.end(), e)) >= n;
    });
  }
  std::string dump() {
    std::lock_guard lock(mu_);
    std::string out;
    for (const auto& e : events_) out += "  " + e + "\n";
    return out;
  }

 private:
  void record(std::string e) {
    std::lock_guard lock(mu_);
    events_.push_back(std::move(e));
    cv_.notify_all();
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> events_;
  std::unique_ptr<zds::Client> client_;
};

size_t count_lines(const Daemon& d, const std::regex& re) {
  size_t n = 0;
  for (const auto& l : d.lines()) n += std::regex_search(l, re) ? 1 : 0;
  return n;
}

bool wait_lines(const Daemon& d, const std::regex& re, size_t n,
                std::chrono::milliseconds timeout = 15s) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (count_lines(d, re) >= n) return true;
    std::this_thread::sleep_for(20ms);
  }
  return false;
}

template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds timeout = 10s) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(20ms);
  }
  return pred();
}

bool has_entries(const fs::path& dir) {
  std::error_code ec;
  return fs::is_directory(dir, ec) && !fs::is_empty(dir, ec);
}

std::string namespace_yaml(const std::string& mode) {
  return "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n  labels:\n"
         "    istio.io/dataplane-mode: " +
         mode + "\n";
}

std::string pod_yaml() {
  return std::string("apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  namespace: shop\n") +
         "  uid: " + kUid + "\nspec:\n  nodeName: node-test\n  serviceAccountName: web-sa\n" +
         "  containers: [{name: app, image: app}]\nstatus:\n  phase: Running\n  podIPs:\n" +
         "  - ip: " + kPodIp + "\n";
}

TEST(NodeAgent, EnrollsReleasesAndSurvivesRestartWithoutGap) {
  ZT_REQUIRE_PRIVILEGE(has_capability(Capability::kBpf) && has_capability(Capability::kSysAdmin) &&
                           has_capability(Capability::kNetAdmin) &&
                           is_fs(kCgroup2, CGROUP2_SUPER_MAGIC),
                       "needs CAP_BPF, CAP_SYS_ADMIN, CAP_NET_ADMIN and a cgroup2 mount at "
                       "/sys/fs/cgroup/unified to attach the capture to a test pod");
  const std::string suffix = std::to_string(::getpid());
  PinRoot pins;
  ASSERT_TRUE(pins.ok()) << "cannot prepare a bpffs pin root";
  PodNetns netns("zt-agent-" + suffix);
  ASSERT_TRUE(netns.ok()) << "ip netns add failed";
  const std::string cgroup_root = std::string(kCgroup2) + "/zt-agent-test-" + suffix;
  PodProcess pod(cgroup_root, netns.path());
  ASSERT_TRUE(pod.ok()) << "the pod process did not start in its cgroup";
  const uint64_t pod_inode = netns.inode();
  ASSERT_NE(pod_inode, 0u);

  TempDir dir;
  const auto manifests = dir.path() / "manifests";
  write_manifest_file(manifests / "ns.yaml", namespace_yaml("ambient"));
  write_manifest_file(manifests / "pod.yaml", pod_yaml());
  const std::string socket = (dir.path() / "zds" / "ztunnel.sock").string();
  const std::vector<std::string> args = {
      "--manifests",    manifests.string(),
      "--node-name",    "node-test",
      "--cgroup-root",  cgroup_root,
      "--bpf-pin-root", pins.path(),
      "--zds-socket",   socket,
      "--probe-source", "10.251.0.1",
      "--ready-file",   (dir.path() / "ready").string(),
  };
  const fs::path pod_pins = fs::path(pins.path()) / "pods" / kUid;
  const std::string added =
      std::string("add ") + kUid + " shop/web web-sa inode=" + std::to_string(pod_inode);
  const std::regex enrolled_re(std::string("enrolled pod=shop/web uid=") + kUid);
  const std::regex released_re(std::string("released pod=shop/web uid=") + kUid);

  auto agent = Daemon::start(bin_path("node-agent"), args);
  ASSERT_TRUE(agent) << agent.error().describe();
  ASSERT_TRUE(wait_lines(**agent, enrolled_re, 1)) << (*agent)->output();
  ASSERT_TRUE(eventually([&] { return fs::exists(dir.path() / "ready"); }));
  EXPECT_TRUE(has_entries(pod_pins)) << "links pinned under " << pod_pins;

  // ztunnel connects: the pod with the pod's own netns, then the end of the snapshot.
  auto ztunnel = std::make_unique<FakeZtunnel>(socket);
  ASSERT_TRUE(ztunnel->wait_count("snapshot", 1)) << ztunnel->dump() << (*agent)->output();
  EXPECT_EQ(ztunnel->count(added), 1u) << ztunnel->dump();

  // A broken edit is logged and ignored: the last good objects stay, nothing is released.
  write_manifest_file(manifests / "ns.yaml",
                      "apiVersion: v1\nkind: Namespace\nmetadata: [broken\n");
  ASSERT_TRUE(wait_lines(**agent, std::regex("manifest rejected"), 1)) << (*agent)->output();
  EXPECT_TRUE((*agent)->running());
  EXPECT_FALSE((*agent)->saw(released_re));
  EXPECT_TRUE(has_entries(pod_pins));

  // The namespace leaves the mesh: pins gone, then DelWorkload.
  write_manifest_file(manifests / "ns.yaml", namespace_yaml("none"));
  ASSERT_TRUE(wait_lines(**agent, released_re, 1)) << (*agent)->output();
  EXPECT_TRUE(ztunnel->wait_count(std::string("del ") + kUid, 1)) << ztunnel->dump();
  EXPECT_FALSE(fs::exists(pod_pins)) << "pins removed on release";

  // And joins again.
  write_manifest_file(manifests / "ns.yaml", namespace_yaml("ambient"));
  ASSERT_TRUE(wait_lines(**agent, enrolled_re, 2)) << (*agent)->output();
  EXPECT_TRUE(ztunnel->wait_count(added, 2)) << ztunnel->dump();
  EXPECT_TRUE(has_entries(pod_pins));

  // SIGTERM: the agent exits without releasing; the links stay pinned (pod still captured).
  auto code = (*agent)->stop(SIGTERM);
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(*code, 0) << (*agent)->output();
  EXPECT_FALSE((*agent)->saw(std::regex("released pod=shop/web.*agent exiting")));
  EXPECT_TRUE(has_entries(pod_pins)) << "pins survive the agent";
  agent->reset();

  // A new agent re-enrolls in place and replays the pod to the reconnecting ztunnel.
  auto again = Daemon::start(bin_path("node-agent"), args);
  ASSERT_TRUE(again) << again.error().describe();
  ASSERT_TRUE(wait_lines(
      **again, std::regex(std::string("enrolled pod=shop/web uid=") + kUid + ".*restored=true"), 1))
      << (*again)->output();
  EXPECT_FALSE((*again)->saw(released_re)) << (*again)->output();
  EXPECT_TRUE(has_entries(pod_pins));
  EXPECT_TRUE(ztunnel->wait_count("snapshot", 2)) << ztunnel->dump() << (*again)->output();
  EXPECT_EQ(ztunnel->count(added), 3u) << ztunnel->dump();
  EXPECT_EQ(ztunnel->count(std::string("del ") + kUid), 1u) << ztunnel->dump();

  // --release-all-on-exit (cleanup mode) releases on the way out.
  (*again)->stop(SIGTERM);
  again->reset();
  auto args_release = args;
  args_release.push_back("--release-all-on-exit");
  auto last = Daemon::start(bin_path("node-agent"), args_release);
  ASSERT_TRUE(last) << last.error().describe();
  ASSERT_TRUE(wait_lines(**last, enrolled_re, 1)) << (*last)->output();
  EXPECT_EQ((*last)->stop(SIGTERM), 0);
  EXPECT_TRUE((*last)->saw(
      std::regex(std::string("released pod=shop/web uid=") + kUid + " reason=\"agent exiting\"")))
      << (*last)->output();
  EXPECT_FALSE(fs::exists(pod_pins));
  ztunnel.reset();
}

TEST(NodeAgent, PodWithANewNetnsIsReenrolledAndReannounced) {
  ZT_REQUIRE_PRIVILEGE(has_capability(Capability::kBpf) && has_capability(Capability::kSysAdmin) &&
                           has_capability(Capability::kNetAdmin) &&
                           is_fs(kCgroup2, CGROUP2_SUPER_MAGIC),
                       "needs CAP_BPF, CAP_SYS_ADMIN, CAP_NET_ADMIN and a cgroup2 mount at "
                       "/sys/fs/cgroup/unified to attach the capture to a test pod");
  const std::string suffix = std::to_string(::getpid());
  PinRoot pins;
  ASSERT_TRUE(pins.ok()) << "cannot prepare a bpffs pin root";
  PodNetns first("zt-agent-" + suffix + "-a");
  PodNetns second("zt-agent-" + suffix + "-b");
  ASSERT_TRUE(first.ok() && second.ok()) << "ip netns add failed";
  const std::string cgroup_root = std::string(kCgroup2) + "/zt-agent-test-" + suffix;
  PodProcess pod(cgroup_root, first.path());
  ASSERT_TRUE(pod.ok()) << "the pod process did not start in its cgroup";

  TempDir dir;
  const auto manifests = dir.path() / "manifests";
  write_manifest_file(manifests / "ns.yaml", namespace_yaml("ambient"));
  write_manifest_file(manifests / "pod.yaml", pod_yaml());
  const std::string socket = (dir.path() / "ztunnel.sock").string();
  auto agent = Daemon::start(
      bin_path("node-agent"),
      {"--manifests", manifests.string(), "--node-name", "node-test", "--cgroup-root", cgroup_root,
       "--bpf-pin-root", pins.path(), "--zds-socket", socket, "--probe-source", "10.251.0.1"});
  ASSERT_TRUE(agent) << agent.error().describe();
  FakeZtunnel ztunnel(socket);
  const std::string prefix = std::string("add ") + kUid + " shop/web web-sa inode=";
  ASSERT_TRUE(ztunnel.wait_count(prefix + std::to_string(first.inode()), 1))
      << ztunnel.dump() << (*agent)->output();

  // The sandbox restarts: same pod cgroup, a new process in a new netns.
  ASSERT_TRUE(pod.restart_in(second.path()));
  EXPECT_TRUE(ztunnel.wait_count(prefix + std::to_string(second.inode()), 1, 20s))
      << ztunnel.dump() << (*agent)->output();
  EXPECT_TRUE((*agent)->saw(std::regex("pod netns changed")));
  EXPECT_TRUE(wait_lines(**agent, std::regex("enrolled pod=shop/web .*updated=true"), 1));
  EXPECT_TRUE(has_entries(fs::path(pins.path()) / "pods" / kUid));
}

// --kube-server: namespaces and this node's pods from an API server (the in-test one of
// tests/integration/kube); a pod of another node is never asked for, a label flip releases.
TEST(NodeAgent, FollowsTheKubernetesApiServer) {
  ZT_REQUIRE_PRIVILEGE(has_capability(Capability::kBpf) && has_capability(Capability::kSysAdmin) &&
                           has_capability(Capability::kNetAdmin) &&
                           is_fs(kCgroup2, CGROUP2_SUPER_MAGIC),
                       "needs CAP_BPF, CAP_SYS_ADMIN, CAP_NET_ADMIN and a cgroup2 mount at "
                       "/sys/fs/cgroup/unified to attach the capture to a test pod");
  const std::string suffix = std::to_string(::getpid());
  PinRoot pins;
  ASSERT_TRUE(pins.ok()) << "cannot prepare a bpffs pin root";
  PodNetns netns("zt-agent-" + suffix + "-k");
  ASSERT_TRUE(netns.ok()) << "ip netns add failed";
  const std::string cgroup_root = std::string(kCgroup2) + "/zt-agent-test-" + suffix;
  PodProcess pod(cgroup_root, netns.path());
  ASSERT_TRUE(pod.ok()) << "the pod process did not start in its cgroup";

  FakeApiServer api;
  api.put_yaml(namespace_yaml("ambient"));
  api.put_yaml(pod_yaml());
  std::string other = pod_yaml();
  other = std::regex_replace(other, std::regex("name: web"), "name: elsewhere");
  other = std::regex_replace(other, std::regex(kUid), "0e0e0e0e-0000-4000-8000-000000000001");
  other = std::regex_replace(other, std::regex("nodeName: node-test"), "nodeName: node-other");
  api.put_yaml(other);

  TempDir dir;
  write_file(dir.path() / "token", "agent-token\n");
  const std::string socket = (dir.path() / "ztunnel.sock").string();
  auto agent = Daemon::start(
      bin_path("node-agent"),
      {"--kube-server", api.url(), "--kube-token-file", (dir.path() / "token").string(),
       "--node-name", "node-test", "--cgroup-root", cgroup_root, "--bpf-pin-root", pins.path(),
       "--zds-socket", socket, "--probe-source", "10.251.0.1"});
  ASSERT_TRUE(agent) << agent.error().describe();
  const std::regex enrolled_re(std::string("enrolled pod=shop/web uid=") + kUid);
  ASSERT_TRUE(wait_lines(**agent, enrolled_re, 1)) << (*agent)->output();
  FakeZtunnel ztunnel(socket);
  ASSERT_TRUE(ztunnel.wait_count("snapshot", 1)) << ztunnel.dump() << (*agent)->output();
  EXPECT_EQ(ztunnel.count(std::string("add ") + kUid +
                          " shop/web web-sa inode=" + std::to_string(netns.inode())),
            1u)
      << ztunnel.dump();
  EXPECT_FALSE((*agent)->saw(std::regex("elsewhere")));
  for (const auto& r : api.requests()) {
    EXPECT_EQ(r.authorization, "Bearer agent-token") << r.target;
    bool pods = r.target.starts_with("/api/v1/pods?");
    EXPECT_TRUE(pods || r.target.starts_with("/api/v1/namespaces?")) << r.target;
    EXPECT_EQ(r.target.find("fieldSelector=spec.nodeName%3Dnode-test") != std::string::npos, pods)
        << r.target;
  }

  // The namespace leaves the mesh through the API: released, DelWorkload.
  api.put_yaml(namespace_yaml("none"));
  ASSERT_TRUE(wait_lines(**agent, std::regex(std::string("released pod=shop/web uid=") + kUid), 1))
      << (*agent)->output();
  EXPECT_TRUE(ztunnel.wait_count(std::string("del ") + kUid, 1)) << ztunnel.dump();
  EXPECT_EQ((*agent)->stop(SIGTERM), 0) << (*agent)->output();
}

}  // namespace
}  // namespace zt::testing
