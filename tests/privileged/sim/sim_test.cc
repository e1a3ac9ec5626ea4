// The simulated cluster on the real kernel: two nodes built from generated manifests (namespace
// "ambient" labelled istio.io/dataplane-mode=ambient and namespace "plain", two pods of each per
// node). Proves that pods reach each other across nodes by IP with the client's pod IP intact,
// that teardown (explicit or by the destructor) leaves nothing behind, and that a later up()
// removes what a crashed or never-torn-down run left.
//
// Every test uses its own prefix ("zs<pid>"): ctest runs each case in its own process, so
// parallel runs never share a netns, cgroup or pin name.
#include <sys/vfs.h>
#include <sys/wait.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include "sim/cluster.h"
#include "sim/host.h"
#include "tests/support/cluster_manifests.h"
#include "tests/support/daemon.h"
#include "tests/support/log_lines.h"
#include "tests/support/mesh.h"
#include "tests/support/privileges.h"

namespace zt::testing {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// Everything of `prefix` that could outlive the cluster; empty when nothing is left.
std::vector<std::string> what_is_left(const std::string& prefix) {
  std::vector<std::string> left;
  for (const auto& ns : sim::list_netns(prefix + "-")) left.push_back("netns " + ns);
  if (auto root = sim::cgroup2_root(); root && fs::exists(*root / prefix)) {
    left.push_back("cgroup " + (*root / prefix).string());
  }
  std::error_code ec;
  for (auto it = fs::directory_iterator("/sys/fs/bpf/ambient-mesh", ec);
       !ec && it != fs::directory_iterator(); it.increment(ec)) {
    if (it->path().filename().string().rfind(prefix + "-", 0) == 0) {
      left.push_back("pins " + it->path().string());
    }
  }
  for (auto it = fs::directory_iterator("/proc", ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    auto name = it->path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    auto cg = sim::process_cgroup(std::stoi(name));
    if (cg && cg->rfind("/" + prefix + "/", 0) == 0 && sim::process_alive(std::stoi(name))) {
      left.push_back("process " + name + " in " + *cg);
    }
  }
  return left;
}

// Plus the private bpffs a mesh cluster mounts in its state dir when /sys/fs/bpf is not one.
std::vector<std::string> what_is_left(const std::string& prefix, const fs::path& state_dir) {
  auto left = what_is_left(prefix);
  struct statfs st {};
  if (::statfs((state_dir / "bpffs").c_str(), &st) == 0 && st.f_type == 0xcafe4a11) {
    left.push_back("bpffs mount " + (state_dir / "bpffs").string());
  }
  return left;
}

class SimCluster : public ::testing::Test {
 protected:
  void SetUp() override {
    ZT_REQUIRE_PRIVILEGE(has_capability(Capability::kSysAdmin) &&
                             has_capability(Capability::kNetAdmin) && sim::cgroup2_root(),
                         "needs CAP_SYS_ADMIN, CAP_NET_ADMIN and a cgroup v2 mount for network "
                         "namespaces and pod cgroups");
    // A test process killed by ctest's timeout cannot tear down; its prefix zs<pid> names it.
    (void)sim::remove_leftovers_of_dead_owners("zs");
    ClusterManifestOptions o;
    // Pod i goes to nodes[i % 4] and namespaces[i % 2]: two pods of each namespace per node.
    o.nodes = {"node-0", "node-0", "node-1", "node-1"};
    o.namespaces = {"ambient", "plain"};
    o.ambient_namespaces = {"ambient"};
    o.pods = 8;
    o.apps_per_namespace = 1;
    o.pod_ip_start = "10.244.1.10";
    o.service_ip_start = "10.96.1.10";
    cluster_ = write_cluster_manifests(manifests_.path(), o);
  }

  void TearDown() override {
    // Last resort, so a failed test never leaves anything for the next one.
    if (!HasFailure()) return;
    (void)sim::remove_leftovers(prefix_, state_dir_);
  }

  sim::ClusterOptions options() const {
    sim::ClusterOptions o;
    o.manifests = manifests_.path();
    o.prefix = prefix_;
    o.state_dir = state_dir_;
    o.mesh = false;
    o.ready_timeout = 30s;
    return o;
  }

  const GeneratedPod& pod(const std::string& ns, const std::string& node, size_t nth = 0) {
    for (const auto& p : cluster_.pods) {
      if (p.namespace_ == ns && p.node == node && nth-- == 0) return p;
    }
    throw std::runtime_error("no such pod");
  }

  // curl from `client` to `server`:8080 must answer with the server's name and the client's IP.
  void expect_echo(sim::Cluster& c, const GeneratedPod& client, const GeneratedPod& server) {
    SCOPED_TRACE(client.namespace_ + "/" + client.name + " -> " + server.namespace_ + "/" +
                 server.name);
    auto r = c.exec_in_pod(
        client.namespace_ + "/" + client.name,
        {"curl", "-sS", "-m", "5", "--data-binary", "ping", "http://" + server.ip + ":8080/echo"},
        10s);
    ASSERT_TRUE(r) << r.error().describe();
    EXPECT_EQ(r->exit_code, 0) << r->err;
    EXPECT_NE(r->out.find("peer=" + client.ip + ":"), std::string::npos) << r->out;
    EXPECT_NE(r->out.find("local=" + server.ip + ":8080"), std::string::npos) << r->out;
    EXPECT_NE(r->out.find("pod=" + server.name + "\nping"), std::string::npos) << r->out;
  }

  TempDir manifests_, state_;
  std::string prefix_ = fmt::format("zs{}", ::getpid());
  fs::path state_dir_ = state_.path() / "state";
  ClusterManifests cluster_;
};

TEST_F(SimCluster, PodsReachEachOtherAcrossNodesByIpAndTheAppSeesTheClientPodIp) {
  auto c = sim::Cluster::up(options());
  ASSERT_TRUE(c) << c.error().describe();
  const auto& plan = (*c)->plan();
  ASSERT_EQ(plan.nodes.size(), 2u);
  EXPECT_EQ(plan.nodes[0].pods.size(), 4u);
  EXPECT_EQ(plan.nodes[1].pods.size(), 4u);

  for (const std::string ns : {"ambient", "plain"}) {
    expect_echo(**c, pod(ns, "node-0"), pod(ns, "node-1"));  // across nodes
    expect_echo(**c, pod(ns, "node-1", 1), pod(ns, "node-0", 1));
    expect_echo(**c, pod(ns, "node-0"), pod(ns, "node-0", 1));  // same node
  }
  expect_echo(**c, pod("plain", "node-1"), pod("ambient", "node-0"));  // across namespaces

  // A command in a pod runs in the pod's cgroup.
  const auto& p = pod("ambient", "node-1");
  auto cg = (*c)->exec_in_pod(p.namespace_ + "/" + p.name, {"cat", "/proc/self/cgroup"});
  ASSERT_TRUE(cg) << cg.error().describe();
  EXPECT_NE(cg->out.find(fmt::format("0::/{}/node-1/pod", prefix_)), std::string::npos) << cg->out;
  // The node's view (a kubelet probe) reaches its pods.
  auto probe =
      (*c)->exec_in_node("node-1", {"curl", "-sS", "-m", "5", "http://" + p.ip + ":8080/"});
  ASSERT_TRUE(probe) << probe.error().describe();
  // kubelet-style probes come from the node's IP.
  EXPECT_NE(probe->out.find("peer=" + plan.nodes[1].ip + ":"), std::string::npos)
      << probe->out << probe->err;
  // An exit code and stderr come back.
  auto bad = (*c)->exec_in_pod(p.namespace_ + "/" + p.name,
                               {"curl", "-sS", "-m", "2", "http://10.244.1.250:8080/"}, 10s);
  ASSERT_TRUE(bad);
  EXPECT_NE(bad->exit_code, 0);
  EXPECT_FALSE(bad->err.empty());

  // Another process can attach to the running cluster from its state dir.
  auto attached = sim::Cluster::attach(state_dir_);
  ASSERT_TRUE(attached) << attached.error().describe();
  size_t alive = 0;
  for (const auto& proc : (*attached)->processes()) alive += proc.alive ? 1 : 0;
  EXPECT_EQ(alive, 1u + 2u * 8u);  // meshd + pause and app per pod

  // Labelling a namespace rewrites its manifest; meshd (watching the directory) republishes.
  ASSERT_TRUE((*c)->label_namespace("plain", "istio.io/dataplane-mode", "ambient"));
  auto meshd_log = (*c)->log_path("meshd");
  auto deadline = std::chrono::steady_clock::now() + 10s;
  auto published = [&] {
    std::ifstream in(meshd_log);
    std::string line;
    size_t n = 0;
    while (std::getline(in, line)) n += line.find("published component=xds") != std::string::npos;
    return n;
  };
  while (published() < 2 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_GE(published(), 2u);
  ASSERT_TRUE((*c)->label_namespace("plain", "istio.io/dataplane-mode", std::nullopt));

  ASSERT_TRUE((*c)->down());
  EXPECT_EQ(what_is_left(prefix_), std::vector<std::string>{});
  EXPECT_TRUE(fs::exists((*c)->log_path("meshd")));  // logs survive teardown
}

TEST_F(SimCluster, TheDestructorTearsEverythingDown) {
  {
    auto c = sim::Cluster::up(options());
    ASSERT_TRUE(c) << c.error().describe();
    EXPECT_FALSE(what_is_left(prefix_).empty());
  }
  EXPECT_EQ(what_is_left(prefix_), std::vector<std::string>{});
}

TEST_F(SimCluster, UpRemovesWhatAClusterThatWasNeverTornDownLeft) {
  // `meshsim up` returns with the cluster running: as if its owner died before teardown.
  auto [rc, out] = run_command(
      fmt::format("{} up --manifests {} --prefix {} --state-dir {} --no-mesh 2>&1",
                  bin_path("meshsim"), manifests_.path().string(), prefix_, state_dir_.string()));
  ASSERT_EQ(rc, 0) << out;
  ASSERT_FALSE(what_is_left(prefix_).empty());

  auto c = sim::Cluster::up(options());
  ASSERT_TRUE(c) << c.error().describe();
  std::string removed;
  for (const auto& l : (*c)->leftovers_removed()) removed += l + "\n";
  EXPECT_NE(removed.find("removed netns " + prefix_ + "-fabric"), std::string::npos) << removed;
  EXPECT_NE(removed.find("removed netns " + prefix_ + "-node-1-3"), std::string::npos) << removed;
  EXPECT_NE(removed.find("removed cgroup"), std::string::npos) << removed;
  EXPECT_NE(removed.find("killed 17 processes recorded"), std::string::npos) << removed;
  // The new cluster works.
  expect_echo(**c, pod("ambient", "node-0"), pod("plain", "node-1"));

  // `meshsim down` of the CLI tears down a cluster it did not start.
  (*c)->detach();
  auto [rc2, out2] = run_command(fmt::format("{} down --prefix {} --state-dir {} 2>&1",
                                             bin_path("meshsim"), prefix_, state_dir_.string()));
  EXPECT_EQ(rc2, 0) << out2;
  EXPECT_EQ(what_is_left(prefix_), std::vector<std::string>{});
}

TEST_F(SimCluster, UpRemovesWhatACrashedSimulatorLeft) {
  // A simulator killed with SIGKILL in the middle of building the cluster.
  sim::SpawnSpec spec;
  spec.argv = {bin_path("meshsim"), "up",    "--manifests", manifests_.path().string(),
               "--prefix",          prefix_, "--state-dir", state_dir_.string(),
               "--no-mesh"};
  spec.log = state_.path() / "crashed.log";
  auto pid = sim::spawn(spec);
  ASSERT_TRUE(pid) << pid.error().describe();
  auto deadline = std::chrono::steady_clock::now() + 20s;
  while (sim::list_netns(prefix_ + "-node-1-").empty() &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(1ms);
  }
  ::kill(*pid, SIGKILL);
  ::waitpid(*pid, nullptr, 0);
  ASSERT_FALSE(what_is_left(prefix_).empty());

  // A command the simulator had started (often `ip netns add`) may still be running: up() waits
  // for it before removing what it made, instead of racing it for the same netns name.
  auto c = sim::Cluster::up(options());
  ASSERT_TRUE(c) << c.error().describe();
  EXPECT_FALSE((*c)->leftovers_removed().empty());
  expect_echo(**c, pod("plain", "node-1"), pod("ambient", "node-0", 1));
  ASSERT_TRUE((*c)->down());
  EXPECT_EQ(what_is_left(prefix_), std::vector<std::string>{});
}

TEST_F(SimCluster, AFailedUpSaysWhyAndLeavesNothing) {
  auto o = options();
  o.bin_dir = state_.path();  // no binaries there
  auto c = sim::Cluster::up(o);
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().describe().find("binary meshd not found"), std::string::npos)
      << c.error().describe();
  EXPECT_EQ(what_is_left(prefix_), std::vector<std::string>{});

  // A state dir that is not ours is never wiped.
  auto foreign = state_.path() / "foreign";
  fs::create_directories(foreign);
  write_file(foreign / "precious", "x");
  o = options();
  o.state_dir = foreign;
  c = sim::Cluster::up(o);
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().describe().find("not a meshsim state dir"), std::string::npos)
      << c.error().describe();
  EXPECT_TRUE(fs::exists(foreign / "precious"));
}

// A mesh cluster that was never torn down (`meshsim up` returns with it running) also leaves
// node agents, ztunnels and bpffs pins: a later up() removes those too, and its mesh works.
TEST_F(SimCluster, UpRemovesWhatANeverTornDownMeshClusterLeftIncludingPins) {
  ZT_REQUIRE_PRIVILEGE(has_capability(Capability::kBpf), "needs CAP_BPF for the eBPF capture");
  for (const char* b : {"node-agent", "ztunnel"}) {
    ASSERT_EQ(::access(bin_path(b).c_str(), X_OK), 0) << b << " is not built (ninja " << b << ")";
  }
  auto [rc, out] = run_command(
      fmt::format("{} up --manifests {} --prefix {} --state-dir {} --bin-dir {} 2>&1",
                  bin_path("meshsim"), manifests_.path().string(), prefix_, state_dir_.string(),
                  fs::path(bin_path("ztunnel")).parent_path().string()));
  ASSERT_EQ(rc, 0) << out;
  const auto left = what_is_left(prefix_, state_dir_);
  std::string listed;
  for (const auto& l : left) listed += l + "\n";
  EXPECT_NE(listed.find("/node-0/agent"), std::string::npos) << listed;
  EXPECT_NE(listed.find("/node-1/ztunnel"), std::string::npos) << listed;
  EXPECT_TRUE(listed.find("pins ") != std::string::npos ||
              listed.find("bpffs mount ") != std::string::npos)
      << listed;

  auto o = options();
  o.mesh = true;
  auto c = sim::Cluster::up(o);
  ASSERT_TRUE(c) << c.error().describe();
  std::string removed;
  for (const auto& l : (*c)->leftovers_removed()) removed += l + "\n";
  EXPECT_NE(removed.find("removed bpffs pins "), std::string::npos) << removed;
  EXPECT_NE(removed.find("removed cgroup"), std::string::npos) << removed;
  // The new cluster's capture works: ambient -> ambient across nodes goes through both ztunnels.
  const auto& a0 = pod("ambient", "node-0");
  const auto& a1 = pod("ambient", "node-1");
  expect_echo(**c, a0, a1);
  EXPECT_GE(wait_lines((*c)->log_path("node-1.ztunnel"),
                       {"direction=\"inbound\"", "src.addr=\"" + a0.ip + ":"}),
            1u);
  ASSERT_TRUE((*c)->down());
  EXPECT_EQ(what_is_left(prefix_, state_dir_), std::vector<std::string>{});
}

// With the mesh: meshd, one node agent and one shared-mode ztunnel per node, eBPF capture.
TEST_F(SimCluster, WithTheMeshAmbientPodsTalkOverHboneAndPlainPodsDirectly) {
  ZT_REQUIRE_PRIVILEGE(has_capability(Capability::kBpf), "needs CAP_BPF for the eBPF capture");
  for (const char* b : {"node-agent", "ztunnel"}) {
    ASSERT_EQ(::access(bin_path(b).c_str(), X_OK), 0) << b << " is not built (ninja " << b << ")";
  }
  auto o = options();
  o.mesh = true;
  auto c = sim::Cluster::up(o);
  ASSERT_TRUE(c) << c.error().describe();
  for (const auto& n : (*c)->plan().nodes) {
    EXPECT_TRUE((*c)->running(n.name, sim::NodeDaemon::kAgent)) << n.name;
    EXPECT_TRUE((*c)->running(n.name, sim::NodeDaemon::kZtunnel)) << n.name;
  }
  const auto& a0 = pod("ambient", "node-0");
  const auto& a1 = pod("ambient", "node-1");
  const auto& p0 = pod("plain", "node-0");
  const auto& p1 = pod("plain", "node-1");

  // Ambient -> ambient across nodes: captured, HBONE, the app still sees the client's pod IP.
  expect_echo(**c, a0, a1);
  auto z0 = (*c)->log_path("node-0.ztunnel"), z1 = (*c)->log_path("node-1.ztunnel");
  EXPECT_GE(wait_lines(z0, {"direction=\"outbound\"", "dst.hbone_addr=\"" + a1.ip + ":8080\"",
                            "src.identity=\"spiffe://cluster.local/ns/ambient/sa/"}),
            1u);
  EXPECT_GE(wait_lines(z1, {"direction=\"inbound\"", "src.addr=\"" + a0.ip + ":"}), 1u);

  // Plain -> plain: not captured (no ztunnel saw it).
  expect_echo(**c, p0, p1);
  EXPECT_EQ(count_lines(z0, {"src.addr=\"" + p0.ip + ":"}), 0u);
  EXPECT_EQ(count_lines(z1, {"src.addr=\"" + p0.ip + ":"}), 0u);
  // Ambient -> plain: passthrough, the app sees the client IP. node-0's ztunnel took it (an
  // outbound record) and sent it as plain TCP to the pod's port (no HBONE address); node-1's
  // ztunnel never saw it.
  expect_echo(**c, a0, p1);
  const std::string to_p1 = "dst.addr=\"" + p1.ip + ":8080\"";
  EXPECT_GE(wait_lines(z0, {"direction=\"outbound\"", "src.addr=\"" + a0.ip + ":", to_p1}), 1u)
      << slurp(z0);
  EXPECT_EQ(count_lines(z0, {to_p1, "dst.hbone_addr="}), 0u) << slurp(z0);
  EXPECT_EQ(count_lines(z1, {to_p1}), 0u) << slurp(z1);

  // Labelling the plain namespace (in the manifests) enrolls its running pods: new connections
  // from them are captured by their node's ztunnel.
  ASSERT_TRUE((*c)->label_namespace("plain", "istio.io/dataplane-mode", "ambient"));
  EXPECT_GE(wait_lines((*c)->log_path("node-0.agent"), {"enrolled pod=plain/" + p0.name + " "}),
            1u);
  EXPECT_GE(wait_lines((*c)->log_path("node-1.agent"), {"enrolled pod=plain/" + p1.name + " "}),
            1u);
  expect_echo(**c, p0, p1);
  EXPECT_GE(wait_lines(z0, {"direction=\"outbound\"", "src.workload=\"" + p0.name + "\""}), 1u)
      << slurp(z0);
  ASSERT_TRUE((*c)->label_namespace("plain", "istio.io/dataplane-mode", std::nullopt));

  // The node daemons can be stopped and started through the API; with ztunnel gone, captured
  // pods' new connections are refused (the pinned capture fails closed).
  ASSERT_TRUE((*c)->kill("node-0", sim::NodeDaemon::kZtunnel));
  EXPECT_FALSE((*c)->running("node-0", sim::NodeDaemon::kZtunnel));
  auto refused = (*c)->exec_in_pod(a0.namespace_ + "/" + a0.name,
                                   {"curl", "-sS", "-m", "3", "http://" + a1.ip + ":8080/"}, 10s);
  ASSERT_TRUE(refused);
  EXPECT_NE(refused->exit_code, 0) << refused->out;
  ASSERT_TRUE((*c)->start("node-0", sim::NodeDaemon::kZtunnel));
  auto deadline = std::chrono::steady_clock::now() + 10s;
  for (;;) {
    auto r = (*c)->exec_in_pod(a0.namespace_ + "/" + a0.name,
                               {"curl", "-sS", "-m", "3", "http://" + a1.ip + ":8080/"}, 10s);
    if ((r && r->exit_code == 0) || std::chrono::steady_clock::now() > deadline) break;
    std::this_thread::sleep_for(100ms);
  }
  expect_echo(**c, a0, a1);

  ASSERT_TRUE((*c)->down());
  EXPECT_EQ(what_is_left(prefix_, state_dir_), std::vector<std::string>{});
}

}  // namespace
}  // namespace zt::testing
