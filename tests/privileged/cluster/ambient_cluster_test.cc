// Issue 4's acceptance, end to end in the simulated cluster (sim/): real eBPF programs attached by
// real node agents, shared-mode ztunnels, meshd, pods that are network namespaces with cgroups,
// curl and http-echo. The cluster is the demo's (sim/examples/demo: namespace shop is ambient,
// legacy is plain, shop/debug opts out, shop/reviews goes through the waypoint pod shop/waypoint)
// plus shop/cart on node-0, so node-0 has three enrolled pods.
//
// Each test builds its own cluster with the prefix "zc<pid>" and tears it down (also on failure).
// Needs root: CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_BPF, CAP_NET_RAW and cgroup v2.
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include "bpf/loader/capture.h"
#include "sim/cluster.h"
#include "sim/demo/demo.h"
#include "sim/host.h"
#include "tests/support/daemon.h"
#include "tests/support/log_lines.h"
#include "tests/support/mesh.h"
#include "tests/support/privileges.h"

namespace zt::testing {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

constexpr const char* kCartPod = R"(apiVersion: v1
kind: Pod
metadata:
  name: cart
  namespace: shop
  labels:
    app: cart
spec:
  nodeName: node-0
  serviceAccountName: cart
  containers:
  - name: app
    image: http-echo
    ports:
    - containerPort: 8080
status:
  phase: Running
  podIP: 10.10.0.13
  podIPs:
  - ip: 10.10.0.13
)";

class AmbientCluster : public ::testing::Test {
 protected:
  void SetUp() override {
    ZT_REQUIRE_PRIVILEGE(has_capability(Capability::kSysAdmin) &&
                             has_capability(Capability::kNetAdmin) &&
                             has_capability(Capability::kBpf) &&
                             has_capability(Capability::kNetRaw) && sim::cgroup2_root(),
                         "needs CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_BPF, CAP_NET_RAW and cgroup v2 "
                         "for the simulated cluster and its eBPF capture");
    // Clusters of earlier runs of this binary that were killed (or crashed) before their
    // teardown: removed, as their owners cannot.
    (void)sim::remove_leftovers_of_dead_owners("zc");
    std::error_code ec;
    fs::copy(fs::path(ZT_SOURCE_DIR) / "sim/examples/demo", manifests_.path(),
             fs::copy_options::recursive, ec);
    ASSERT_FALSE(ec) << ec.message();
    write_file(manifests_.path() / "cart.yaml", kCartPod);
  }

  void TearDown() override {
    cluster_.reset();  // tears down
    (void)sim::remove_leftovers(prefix_, state_dir_);
  }

  sim::Cluster& up() {
    sim::ClusterOptions o;
    o.manifests = manifests_.path();
    o.prefix = prefix_;
    o.state_dir = state_dir_;
    o.bin_dir = fs::path(bin_path("ztunnel")).parent_path();
    o.ready_timeout = 60s;
    auto c = sim::Cluster::up(o);
    if (!c) {
      ADD_FAILURE() << c.error().describe();
      throw std::runtime_error("cluster did not come up");
    }
    cluster_ = std::move(*c);
    return *cluster_;
  }

  std::string ip(const std::string& pod) {
    const auto* p = cluster_->plan().find_pod(pod);
    if (!p) {
      ADD_FAILURE() << "no pod " << pod << " in the cluster's plan";
      return "0.0.0.0";
    }
    return p->ip;
  }
  fs::path log(const std::string& process) { return cluster_->log_path(process); }

  // curl from `from` to url; the echo's first line ("peer=... local=... pod=...") or "" on error.
  std::string curl(const std::string& from, const std::string& url, int* exit_code = nullptr) {
    auto r =
        cluster_->exec_in_pod(from, {"curl", "-sS", "-m", "4", "--data-binary", "ping", url}, 10s);
    if (!r) {
      ADD_FAILURE() << r.error().describe();
      return {};
    }
    if (exit_code) *exit_code = r->exit_code;
    if (r->exit_code != 0) return {};
    return r->out.substr(0, r->out.find('\n'));
  }

  bpf::Counters counters(const std::string& node) {
    auto maps = bpf::CaptureMaps::open(cluster_->bpf_pin_root(node).string());
    if (!maps) {
      ADD_FAILURE() << maps.error().describe();
      return {};
    }
    return (*maps)->counters();
  }

  pid_t app_pid(const std::string& pod) {
    auto name = pod;
    std::replace(name.begin(), name.end(), '/', '.');
    for (const auto& p : cluster_->processes()) {
      if (p.name == name + ".app") return p.pid;
    }
    return -1;
  }

  TempDir manifests_, state_;
  std::string prefix_ = fmt::format("zc{}", ::getpid());
  fs::path state_dir_ = state_.path() / "state";
  std::unique_ptr<sim::Cluster> cluster_;
};

// Acceptance 1 and 2 through the main job itself (sim/demo): by pod IP and by Service VIP across
// nodes the app sees the client's pod IP, both ztunnels log both SPIFFE identities, and a capture
// of node-0's link shows TLS 1.3 on 15008 and never the plaintext; plain pods talk directly,
// ambient -> plain is passthrough, the opt-out pod is not captured; through the waypoint the
// HTTPRoute picks the version, the L7 policy refuses DELETE and a forged JWT gets 401. run_demo
// computes each of these from the system (curl output, access logs, metrics, the packets) and lists
// them as checks.
TEST_F(AmbientCluster, TheDemoReportsEveryCheckAsHeld) {
  std::error_code ec;
  std::ostringstream report;
  int rc = sim::run_demo({.manifests = manifests_.path(),
                          .prefix = prefix_,
                          .bin_dir = fs::path(bin_path("ztunnel")).parent_path()},
                         report);
  const std::string out = report.str();
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("All checks passed."), std::string::npos) << out;
  EXPECT_EQ(out.find("FAIL"), std::string::npos) << out;
  for (const char* line :
       {"ok    shop/frontend -> shop/checkout, by pod IP: the app sees the client's own IP",
        "ok    shop/frontend -> shop/checkout, by pod IP: plaintext never on the wire",
        "ok    shop/frontend -> checkout.shop Service VIP: answered by shop/checkout",
        "ok    shop/frontend -> checkout.shop Service VIP: the app sees the client's own IP",
        "ok    shop/frontend -> checkout.shop Service VIP: plaintext never on the wire",
        "ok    every connection on port 15008 is TLS 1.3 with only the hellos in the clear",
        "ok    node-0's ztunnel logs frontend -> checkout with both SPIFFE identities",
        "ok    node-1's ztunnel logs frontend -> checkout with both SPIFFE identities",
        "ok    shop/frontend -> legacy/ledger: answered by legacy/ledger",
        "ok    shop/frontend -> legacy/ledger: the app sees the client's own IP",
        "ok    shop/debug (opt-out label) -> shop/checkout: plain TCP on the wire",
        "ok    legacy/batch -> legacy/ledger: plain TCP on the wire",
        // Each call's path as read from the ztunnels' access lines (matched by the client's
        // own address and port), not as described.
        "ok    shop/frontend -> shop/checkout, by pod IP: captured at the source, HBONE mTLS to "
        "the destination",
        "ok    shop/frontend -> checkout.shop Service VIP: captured at the source, HBONE mTLS to "
        "the destination",
        "ok    legacy/batch -> legacy/ledger: not captured: direct TCP",
        "ok    shop/frontend -> legacy/ledger: captured at the source, passthrough as plain TCP",
        "ok    shop/debug (opt-out label) -> shop/checkout: not captured at the source; the "
        "destination's ztunnel took it in as plaintext",
        // Through the waypoint (shop/reviews): the HTTPRoute's two routes, the L7 deny, the
        // waypoint's access lines and counters, and its own mTLS identity towards each pod.
        "ok    shop/frontend -> reviews.shop Service VIP (HTTPRoute default: reviews-v1): "
        "answered by shop/reviews-v1",
        "ok    shop/frontend -> reviews.shop Service VIP (HTTPRoute default: reviews-v1): "
        "captured at the source, HBONE mTLS to the waypoint (L7)",
        "ok    shop/frontend -> reviews.shop Service VIP (HTTPRoute default: reviews-v1): the "
        "app sees the waypoint's IP",
        "ok    shop/frontend -> reviews.shop Service VIP (HTTPRoute default: reviews-v1): the "
        "waypoint logged the request with the client's identity",
        "ok    shop/frontend -> reviews.shop with end-user: jason (HTTPRoute: reviews-v2): "
        "answered by shop/reviews-v2",
        "ok    shop/frontend -> reviews.shop with end-user: jason (HTTPRoute: reviews-v2): "
        "plaintext never on the wire",
        "ok    shop/frontend -> reviews.shop DELETE (AuthorizationPolicy: DENY at the waypoint): "
        "refused with 403 by the waypoint, reaching no pod",
        "ok    node-0's ztunnel sends frontend's reviews requests to the waypoint's SPIFFE "
        "identity",
        "ok    shop/frontend -> reviews.shop with the demo issuer's JWT (RequestAuthentication: "
        "verified): answered by shop/reviews-v1",
        "ok    shop/frontend -> reviews.shop with a forged JWT (RequestAuthentication: 401 at the "
        "waypoint): refused with 401 by the waypoint, reaching no pod",
        "ok    shop/frontend -> reviews.shop/private with x-ext-authz: allow (CUSTOM: allowed by "
        "the ext-authz pod): answered by shop/reviews-v1",
        "ok    shop/frontend -> reviews.shop/private without it (CUSTOM: 403 from the ext-authz "
        "pod): refused with 403 by the waypoint, reaching no pod",
        "ok    the waypoint counted 3 requests to reviews answered 200 by reviews-v1",
        "ok    the waypoint counted 1 request to reviews answered 200 by reviews-v2",
        "ok    the waypoint counted 2 requests to reviews answered 403 (denied: by policy, by "
        "ext-authz)",
        "ok    the waypoint counted 1 request to reviews answered 401 (bad JWT)",
        "ok    node-1's ztunnel took the waypoint's connection to reviews-v1 over mTLS with the "
        "waypoint's identity",
        "ok    node-0's ztunnel took the waypoint's connection to reviews-v2 over mTLS with the "
        "waypoint's identity"}) {
    EXPECT_NE(out.find(line), std::string::npos) << line << "\n" << out;
  }
  EXPECT_TRUE(sim::list_netns(prefix_ + "-").empty());

  // Acceptance 2 from the ztunnels' access logs (kept after teardown): ambient -> plain was
  // captured on node-0 and went out as passthrough (plain TCP to the pod's port, no HBONE) and
  // node-1's ztunnel never saw it; the opt-out pod and the plain pod were never captured.
  const fs::path logs = sim::default_state_dir(prefix_) / "logs";
  const fs::path z0 = logs / "node-0.ztunnel.log", z1 = logs / "node-1.ztunnel.log";
  const std::string ledger = "dst.addr=\"10.10.1.41:8080\"";  // sim/examples/demo
  EXPECT_EQ(count_lines(z0, {"access connection complete", "direction=\"outbound\"",
                             "src.workload=\"frontend\"", ledger}),
            1u)
      << slurp(z0);
  EXPECT_EQ(count_lines(z0, {ledger, "dst.hbone_addr="}), 0u) << slurp(z0);
  EXPECT_EQ(count_lines(z1, {"dst.workload=\"ledger\""}), 0u) << slurp(z1);
  // shop/debug (10.10.0.12) is not captured at its source; node-1 takes it in as plaintext.
  EXPECT_EQ(count_lines(z0, {"src.addr=\"10.10.0.12:"}), 0u) << slurp(z0);
  // legacy/batch (10.10.0.31) -> legacy/ledger touches no ztunnel at all.
  EXPECT_EQ(count_lines(z0, {"src.addr=\"10.10.0.31:"}), 0u) << slurp(z0);
  EXPECT_EQ(count_lines(z1, {"src.addr=\"10.10.0.31:"}), 0u) << slurp(z1);
  if (!HasFailure()) fs::remove_all(sim::default_state_dir(prefix_), ec);
}

// Acceptance 3: labelling the plain namespace captures its running pods' new connections;
// unlabelling releases them; the pods' processes never restart.
TEST_F(AmbientCluster, LabellingAndUnlabellingANamespaceCapturesAndReleasesRunningPods) {
  auto& c = up();
  const auto z0 = log("node-0.ztunnel");
  const auto ledger = fmt::format("http://{}:8080/", ip("legacy/ledger"));
  const pid_t batch_pid = app_pid("legacy/batch");
  ASSERT_GT(batch_pid, 0);
  const std::vector<std::string> batch_out = {"direction=\"outbound\"", "src.workload=\"batch\""};

  EXPECT_NE(curl("legacy/batch", ledger).find("peer=" + ip("legacy/batch") + ":"),
            std::string::npos);
  EXPECT_EQ(count_lines(z0, batch_out), 0u) << "a plain pod was captured";

  ASSERT_TRUE(c.label_namespace("legacy", "istio.io/dataplane-mode", "ambient"));
  ASSERT_GE(wait_lines(log("node-0.agent"), {"enrolled pod=legacy/batch "}), 1u);
  // Both ends are in the mesh now: HBONE between the nodes, the app still sees batch's IP.
  EXPECT_NE(curl("legacy/batch", ledger).find("peer=" + ip("legacy/batch") + ":"),
            std::string::npos);
  EXPECT_GE(wait_lines(z0, batch_out), 1u) << slurp(z0);
  EXPECT_GE(wait_lines(log("node-1.ztunnel"), {"direction=\"inbound\"",
                                               "src.identity=\"spiffe://cluster.local/ns/legacy/sa/"
                                               "default\""}),
            1u);

  ASSERT_TRUE(c.label_namespace("legacy", "istio.io/dataplane-mode", std::nullopt));
  ASSERT_GE(wait_lines(log("node-0.agent"), {"released pod=legacy/batch "}), 1u);
  const size_t captured = count_lines(z0, batch_out);
  EXPECT_NE(curl("legacy/batch", ledger).find("pod=ledger"), std::string::npos);
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(count_lines(z0, batch_out), captured) << "released pod still captured";
  EXPECT_EQ(app_pid("legacy/batch"), batch_pid) << "the pod's app was restarted";
  EXPECT_EQ(::kill(batch_pid, 0), 0);
}

// Acceptance 4: with ztunnel dead, enrolled pods' new connections are refused (no plaintext
// bypass); a restarted ztunnel serves them again from the pinned state, without re-enrolling.
TEST_F(AmbientCluster, ZtunnelKilledFailsClosedAndARestartedOneServesThePinnedPods) {
  auto& c = up();
  const auto checkout = fmt::format("http://{}:8080/", ip("shop/checkout"));
  ASSERT_NE(curl("shop/frontend", checkout).find("pod=checkout"), std::string::npos);
  const size_t enrolled_before = count_lines(log("node-0.agent"), {"enrolled pod="});
  const auto before = counters("node-0");

  ASSERT_TRUE(c.kill("node-0", sim::NodeDaemon::kZtunnel));
  int rc = 0;
  EXPECT_EQ(curl("shop/frontend", checkout, &rc), "");
  EXPECT_EQ(rc, 7) << "expected curl's 'failed to connect' (refused)";
  // Inbound too: the node-1 side of a killed node-1 ztunnel drops SYNs for its pods.
  ASSERT_TRUE(c.kill("node-1", sim::NodeDaemon::kZtunnel));
  EXPECT_EQ(curl("legacy/batch", checkout, &rc), "");
  EXPECT_NE(rc, 0);
  EXPECT_GT(counters("node-1").lookup_dropped, 0u);
  // The redirect still happened: the capture stayed in place while ztunnel was gone.
  EXPECT_GT(counters("node-0").connect_redirected, before.connect_redirected);

  ASSERT_TRUE(c.start("node-1", sim::NodeDaemon::kZtunnel));
  ASSERT_TRUE(c.start("node-0", sim::NodeDaemon::kZtunnel));
  std::string answer;
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while ((answer = curl("shop/frontend", checkout)).empty() &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_NE(answer.find("peer=" + ip("shop/frontend") + ":"), std::string::npos) << answer;
  EXPECT_EQ(count_lines(log("node-0.agent"), {"enrolled pod="}), enrolled_before)
      << "ztunnel's restart made the agent enroll again";
}

// Acceptance 5: a restarted node agent keeps the enrollment (pinned links; traffic flows while
// it is down); its ZDS replay makes ztunnel drop only the pods that are gone.
TEST_F(AmbientCluster, NodeAgentRestartKeepsEnrollmentAndZtunnelDropsOnlyGonePods) {
  auto& c = up();
  const auto checkout = fmt::format("http://{}:8080/", ip("shop/checkout"));
  const auto z0 = log("node-0.ztunnel");
  const auto* cart = c.plan().find_pod("shop/cart");
  const auto* frontend = c.plan().find_pod("shop/frontend");
  ASSERT_TRUE(cart && frontend) << "shop/cart and shop/frontend are in the plan";
  const std::string cart_uid = cart->uid;
  const std::string frontend_uid = frontend->uid;

  ASSERT_TRUE(c.stop("node-0", sim::NodeDaemon::kAgent));
  // Still captured with the agent gone.
  EXPECT_NE(curl("shop/frontend", checkout).find("pod=checkout"), std::string::npos);
  EXPECT_GE(wait_lines(z0, {"direction=\"outbound\"", "src.workload=\"frontend\""}), 1u);
  // cart goes away while the agent is down.
  fs::remove(manifests_.path() / "cart.yaml");

  ASSERT_TRUE(c.start("node-0", sim::NodeDaemon::kAgent));
  EXPECT_GE(wait_lines(z0, {"pod removed uid=" + cart_uid}), 1u) << slurp(z0);
  EXPECT_EQ(count_lines(z0, {"pod removed uid=" + frontend_uid}), 0u) << slurp(z0);
  EXPECT_GE(wait_lines(log("node-0.agent"), {"enrolled pod=shop/frontend ", "restored=true"}), 1u);
  const size_t before = count_lines(z0, {"direction=\"outbound\"", "src.workload=\"frontend\""});
  EXPECT_NE(curl("shop/frontend", checkout).find("peer=" + ip("shop/frontend") + ":"),
            std::string::npos);
  EXPECT_GE(wait_lines(z0, {"direction=\"outbound\"", "src.workload=\"frontend\""}, before + 1),
            before + 1);
}

// Acceptance 6: an app cannot bind the proxy ports; a pod reaches its own IP; ztunnel's own
// connections are never redirected (the counters equal the apps' connects); a probe from the
// node reaches the app uncaptured.
TEST_F(AmbientCluster, GuardsHold) {
  auto& c = up();
  for (int port : {15001, 15006, 15008}) {
    auto r = c.exec_in_pod(
        "shop/frontend",
        {"python3", "-c",
         fmt::format("import socket\ns=socket.socket()\ntry:\n  s.bind(('0.0.0.0',{}))\n"
                     "  print('bound')\nexcept PermissionError:\n  print('refused')",
                     port)},
        10s);
    ASSERT_TRUE(r) << r.error().describe();
    EXPECT_EQ(r->out, "refused\n") << "port " << port << ": " << r->err;
  }
  EXPECT_GE(counters("node-0").bind_refused, 3u);

  // The pod's own IP: not redirected, and its own app answers.
  const auto before = counters("node-0");
  const auto self = fmt::format("http://{}:8080/", ip("shop/frontend"));
  EXPECT_NE(curl("shop/frontend", self).find("peer=" + ip("shop/frontend") + ":"),
            std::string::npos);
  EXPECT_EQ(counters("node-0").connect_redirected, before.connect_redirected);

  // Ten requests from the pod: exactly ten redirected connects, although ztunnel opened its own
  // HBONE connection to node-1 from inside the same netns meanwhile.
  const auto checkout = fmt::format("http://{}:8080/", ip("shop/checkout"));
  const auto start = counters("node-0");
  const auto start1 = counters("node-1");
  for (int i = 0; i < 10; ++i) {
    EXPECT_NE(curl("shop/frontend", checkout).find("pod=checkout"), std::string::npos);
  }
  const auto end = counters("node-0");
  const auto end1 = counters("node-1");
  EXPECT_EQ(end.connect_redirected - start.connect_redirected, 10u);
  EXPECT_EQ(end.connect_skipped_proxy, start.connect_skipped_proxy);
  EXPECT_EQ(end.lookup_dropped, start.lookup_dropped);
  EXPECT_EQ(end1.lookup_dropped, start1.lookup_dropped);
  // On node-1 every HBONE connection is steered once and every delivery to the app passes.
  EXPECT_GE(end1.lookup_bypassed - start1.lookup_bypassed, 10u);
  EXPECT_LE(end1.lookup_assigned - start1.lookup_assigned, 10u);

  // A probe from node-1 (the kubelet's view) reaches checkout's app, from the node's IP.
  const auto probe_before = counters("node-1");
  auto probe = c.exec_in_node("node-1", {"curl", "-sS", "-m", "4", checkout}, 10s);
  ASSERT_TRUE(probe) << probe.error().describe();
  EXPECT_EQ(probe->exit_code, 0) << probe->err;
  const auto* node1 = c.plan().find_node("node-1");
  EXPECT_NE(probe->out.find("peer=" + node1->ip + ":"), std::string::npos) << probe->out;
  EXPECT_GT(counters("node-1").lookup_bypassed, probe_before.lookup_bypassed);
}

}  // namespace
}  // namespace zt::testing
