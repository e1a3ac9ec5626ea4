// Our sidecar mode (issue 7) in the simulated cluster: a dedicated ztunnel with --sidecar-capture
// in each of two pods (bench/mesh/sidecar), each behind a capture of its own, no node agents and
// no node ztunnels (ClusterOptions::mesh = false).
//   namespace "sidecar" (no labels): client on node-0, server on node-1, both HBONE workloads in
//   the sidecars' local config; namespace "plain": pods a (node-0) and b (node-1), not enrolled.
// Proves: the app's plain HTTP to the server pod is carried as HBONE mTLS between the two sidecars
// (server access log with the client's SPIFFE identity, capture counters); the sidecar's own
// connections are not captured (exactly one redirect per request, delivery bypassed); with the
// client's sidecar gone the client's connections fail (no plaintext bypass); pods not enrolled
// talk directly. The simulator prefix is "zsc<pid>"; the Cluster tears everything down in its
// destructor, and a later run removes what a killed one left.
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include "bench/mesh/sidecar/sidecar.h"
#include "bpf/loader/capture.h"
#include "sim/cluster.h"
#include "sim/host.h"
#include "tests/support/daemon.h"
#include "tests/support/mesh.h"
#include "tests/support/privileges.h"

namespace zt::testing {
namespace {

namespace fs = std::filesystem;
namespace mb = zt::bench::mesh;
using namespace std::chrono_literals;

constexpr const char* kPrefixStem = "zsc";
constexpr const char* kClientPod = "sidecar/client";
constexpr const char* kServerPod = "sidecar/server";
constexpr const char* kClientIp = "10.244.0.14";
constexpr const char* kServerIp = "10.244.1.14";
constexpr const char* kPlainA = "plain/a";
constexpr const char* kPlainAIp = "10.244.0.50";
constexpr const char* kPlainBIp = "10.244.1.50";
constexpr const char* kClientIdentity = "spiffe://cluster.local/ns/sidecar/sa/client";
constexpr const char* kClientSidecar = "sidecar.client.ztunnel";
constexpr const char* kServerSidecar = "sidecar.server.ztunnel";

std::string pod_manifest(const std::string& ns, const std::string& name, const std::string& node,
                         const std::string& ip, const std::string& sa) {
  return fmt::format(R"(---
apiVersion: v1
kind: Pod
metadata:
  name: {1}
  namespace: {0}
  labels:
    app: {1}
spec:
  nodeName: {2}
  serviceAccountName: {4}
  containers:
  - name: app
    image: http-echo
    ports:
    - containerPort: 8080
status:
  phase: Running
  podIP: {3}
  podIPs:
  - ip: {3}
)",
                     ns, name, node, ip, sa);
}

std::string namespace_manifest(const std::string& name, const std::vector<std::string>& sas) {
  std::string out = fmt::format(R"(---
apiVersion: v1
kind: Namespace
metadata:
  name: {}
)",
                                name);
  for (const auto& sa : sas) {
    out += fmt::format(R"(---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {}
  namespace: {}
)",
                       sa, name);
  }
  return out;
}

class ZtunnelSidecar : public ::testing::Test {
 protected:
  void SetUp() override {
    ZT_REQUIRE_PRIVILEGE(has_capability(Capability::kSysAdmin) &&
                             has_capability(Capability::kNetAdmin) &&
                             has_capability(Capability::kBpf) && sim::cgroup2_root(),
                         "needs CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_BPF and cgroup v2 for the "
                         "simulated cluster and the sidecars' eBPF capture");
    (void)sim::remove_leftovers_of_dead_owners(kPrefixStem);
    write_file(manifests_.path() / "sidecar.yaml",
               namespace_manifest("sidecar", {"client", "server"}) +
                   pod_manifest("sidecar", "client", "node-0", kClientIp, "client") +
                   pod_manifest("sidecar", "server", "node-1", kServerIp, "server"));
    write_file(manifests_.path() / "plain.yaml",
               namespace_manifest("plain", {}) +
                   pod_manifest("plain", "a", "node-0", kPlainAIp, "default") +
                   pod_manifest("plain", "b", "node-1", kPlainBIp, "default"));

    sim::ClusterOptions o;
    o.manifests = manifests_.path();
    o.prefix = prefix_;
    o.state_dir = state_.path() / "state";
    o.bin_dir = fs::path(bin_path("ztunnel")).parent_path();
    o.mesh = false;
    o.ready_timeout = 60s;
    auto c = sim::Cluster::up(o);
    ASSERT_TRUE(c) << c.error().describe();
    cluster_ = std::move(*c);
  }

  void TearDown() override {
    cluster_.reset();  // down(): processes, netns, cgroups and the sidecars' pins
    (void)sim::remove_leftovers(prefix_, state_.path() / "state");
  }

  // Both sidecars, reading one local config that lists both pods as HBONE workloads.
  void start_sidecars() {
    mb::LocalWorkload client{.namespace_ = "sidecar",
                             .name = "client",
                             .ip = kClientIp,
                             .node = "node-0",
                             .service_account = "client"};
    mb::LocalWorkload server{.namespace_ = "sidecar",
                             .name = "server",
                             .ip = kServerIp,
                             .node = "node-1",
                             .service_account = "server"};
    auto config = work_.path() / "sidecar-mesh.yaml";
    write_file(config, mb::local_config_yaml({client, server}));
    for (const char* pod : {kClientPod, kServerPod}) {
      mb::SidecarOptions so;
      so.pod = pod;
      so.local_config = config;
      so.ca_dir = cluster_->state_dir() / "ca";
      so.log_level = "info";  // the access log
      auto started = mb::start_sidecar_ztunnel(*cluster_, so);
      ASSERT_TRUE(started) << started.error().describe();
      EXPECT_EQ(started->role, "sidecar-ztunnel");
      EXPECT_EQ(started->pod, pod);
      EXPECT_TRUE(sim::process_alive(started->pid));
      EXPECT_EQ(cluster_->pid_of(started->process), started->pid);
    }
  }

  bpf::Counters counters(const std::string& pod) {
    auto maps = bpf::CaptureMaps::open(mb::sidecar_pin_root(*cluster_, pod).string());
    if (!maps) {
      ADD_FAILURE() << maps.error().describe();
      return {};
    }
    return (*maps)->counters();
  }

  // curl from `pod`: {exit code, stdout + stderr}.
  std::pair<int, std::string> curl(const std::string& pod, const std::string& url) {
    auto r = cluster_->exec_in_pod(pod, {"curl", "-sS", "-m", "5", url}, 15s);
    if (!r) {
      ADD_FAILURE() << r.error().describe();
      return {-1, ""};
    }
    return {r->exit_code, r->out + r->err};
  }

  std::string read_log(const std::string& process) {
    std::ifstream in(cluster_->log_path(process));
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
  }

  // Lines of the process's log matching `re`, waiting up to 10 s for at least `n`.
  size_t wait_for_lines(const std::string& process, const std::regex& re, size_t n) {
    size_t found = 0;
    auto deadline = std::chrono::steady_clock::now() + 10s;
    do {
      std::istringstream in(read_log(process));
      found = 0;
      for (std::string line; std::getline(in, line);) {
        if (std::regex_search(line, re)) ++found;
      }
      if (found >= n) return found;
      std::this_thread::sleep_for(100ms);
    } while (std::chrono::steady_clock::now() < deadline);
    return found;
  }

  TempDir manifests_, state_, work_;
  std::string prefix_ = fmt::format("{}{}", kPrefixStem, ::getpid());
  std::unique_ptr<sim::Cluster> cluster_;
};

TEST_F(ZtunnelSidecar, SidecarsCarryHboneWithoutLoopsFailClosedAndLeavePlainPodsAlone) {
  ASSERT_TRUE(cluster_);
  ASSERT_NO_FATAL_FAILURE(start_sidecars());
  const std::string url = fmt::format("http://{}:{}/", kServerIp, mb::kAppPort);
  const std::regex inbound_from_client("access connection complete .*src\\.identity=\"" +
                                       std::string(kClientIdentity) + "\".*direction=\"inbound\"");

  // (a) The app's plain HTTP goes client app -> client sidecar (15001) -> HBONE mTLS -> server
  // sidecar (15008 via sk_lookup) -> server app.
  auto client_before = counters(kClientPod);
  auto server_before = counters(kServerPod);
  constexpr int kRequests = 3;
  for (int i = 0; i < kRequests; ++i) {
    auto [code, out] = curl(kClientPod, url);
    ASSERT_EQ(code, 0) << out << "\nclient sidecar log:\n"
                       << read_log(kClientSidecar) << "\nserver sidecar log:\n"
                       << read_log(kServerSidecar);
    EXPECT_NE(out.find("pod=server"), std::string::npos) << out;
    // Delivery keeps the client's source IP (the pod netns' fwmark routing is set up).
    EXPECT_EQ(out.rfind(fmt::format("peer={}:", kClientIp), 0), 0u) << out;
  }
  EXPECT_GE(wait_for_lines(kServerSidecar, inbound_from_client, kRequests),
            static_cast<size_t>(kRequests))
      << read_log(kServerSidecar);
  // The client's sidecar tunnelled to the server pod's 15008 and verified its identity.
  const std::regex outbound_hbone(fmt::format(
      "access connection complete .*dst\\.addr=\"{0}:15008\" dst\\.hbone_addr=\"{0}:8080\".*"
      "dst\\.identity=\"spiffe://cluster\\.local/ns/sidecar/sa/server\".*direction=\"outbound\"",
      kServerIp));
  EXPECT_GE(wait_for_lines(kClientSidecar, outbound_hbone, kRequests),
            static_cast<size_t>(kRequests))
      << read_log(kClientSidecar);
  auto client_after = counters(kClientPod);
  auto server_after = counters(kServerPod);
  // (b) No loop: exactly one redirect per request (the app's curl); the sidecar's own HBONE
  // connection is never captured, and its delivery to the server app is let through by
  // sk_lookup (bypass), not steered back to its own listener.
  EXPECT_EQ(client_after.connect_redirected - client_before.connect_redirected,
            static_cast<uint64_t>(kRequests));
  EXPECT_EQ(client_after.origin_recorded - client_before.origin_recorded,
            static_cast<uint64_t>(kRequests));
  EXPECT_GE(server_after.lookup_assigned - server_before.lookup_assigned, 1u);
  EXPECT_GE(server_after.lookup_bypassed - server_before.lookup_bypassed,
            static_cast<uint64_t>(kRequests));
  EXPECT_EQ(server_after.lookup_dropped, server_before.lookup_dropped);
  EXPECT_EQ(server_after.connect_redirected, server_before.connect_redirected);
  // The client sidecar logged no inbound connection: nothing came back to it.
  EXPECT_EQ(wait_for_lines(kClientSidecar, std::regex("direction=\"inbound\""), 1), 0u)
      << read_log(kClientSidecar);

  // The admin endpoint (127.0.0.1:15000 in the pod: loopback is never captured) shows the mode.
  {
    auto [code, dump] = curl(kClientPod, "http://127.0.0.1:15000/config_dump");
    ASSERT_EQ(code, 0) << dump;
    EXPECT_NE(dump.find("\"sidecarCapture\": true"), std::string::npos) << dump;
    EXPECT_NE(dump.find(mb::sidecar_pin_root(*cluster_, kClientPod).string()), std::string::npos)
        << dump;
  }

  // (d) Pods that are not enrolled talk directly, uncaptured: the peer is the pod itself and no
  // sidecar capture counts anything.
  {
    auto c0 = counters(kClientPod);
    auto s0 = counters(kServerPod);
    auto [code, out] = curl(kPlainA, fmt::format("http://{}:{}/", kPlainBIp, mb::kAppPort));
    ASSERT_EQ(code, 0) << out;
    EXPECT_NE(out.find("pod=b"), std::string::npos) << out;
    EXPECT_EQ(out.rfind(fmt::format("peer={}:", kPlainAIp), 0), 0u) << out;
    auto c1 = counters(kClientPod);
    auto s1 = counters(kServerPod);
    EXPECT_EQ(c1.connect_redirected, c0.connect_redirected);
    EXPECT_EQ(s1.lookup_assigned, s0.lookup_assigned);
    EXPECT_EQ(s1.lookup_bypassed, s0.lookup_bypassed);
  }

  // (c) Fail closed: with the client's sidecar stopped, the app's connections are still
  // redirected (to a port nobody listens on) and refused; nothing reaches the server in
  // plaintext.
  size_t inbound_before = wait_for_lines(kServerSidecar, std::regex("direction=\"inbound\""), 0);
  ASSERT_TRUE(cluster_->stop_named(kClientSidecar));
  auto c0 = counters(kClientPod);
  auto [code, out] = curl(kClientPod, url);
  EXPECT_NE(code, 0) << "the client reached the server without its sidecar: " << out;
  EXPECT_EQ(out.find("pod=server"), std::string::npos) << out;
  auto c1 = counters(kClientPod);
  EXPECT_GE(c1.connect_redirected - c0.connect_redirected, 1u);
  std::this_thread::sleep_for(500ms);
  EXPECT_EQ(wait_for_lines(kServerSidecar, std::regex("direction=\"inbound\""), 0), inbound_before)
      << read_log(kServerSidecar);
  // The server's sidecar still serves: the plain pod a reaches it (plaintext inbound on 15006,
  // delivered with a's address).
  auto [plain_code, plain_out] = curl(kPlainA, url);
  EXPECT_EQ(plain_code, 0) << plain_out << "\n" << read_log(kServerSidecar);
  EXPECT_NE(plain_out.find("pod=server"), std::string::npos) << plain_out;
}

}  // namespace
}  // namespace zt::testing
