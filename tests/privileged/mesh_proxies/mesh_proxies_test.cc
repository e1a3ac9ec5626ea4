// mesh_bench's proxies (bench/mesh/proxies) in the benchmark cluster (bench/mesh/plan): the
// manifests mesh_bench writes, brought up by the simulator with meshd, node agents and ztunnels.
//   - ambient-waypoint: a request to the Service VIP is answered by the server pod and counted by
//     the waypoint (meshd points the Service at the Gateway whose status address is the
//     waypoint pod's IP).
//   - haproxy: the pair of HAProxy sidecars carries a request and a bulk stream over TLS 1.3 with
//     client certificates, and the server side refuses a client without a certificate or with
//     TLS 1.2.
//   - sidecar-l7: per-pod sidecar ztunnels (bench/mesh/sidecar) send the client's request to the
//     waypoint dedicated to the server pod, which forwards it to the server's sidecar.
// Every test has its own simulator prefix "zmp<pid>" (ctest runs each case in its own process).
// ZT_TEST_VERBOSE=1 prints the proxies' logs of a passing run.
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <set>
#include <sstream>
#include <thread>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include "bench/mesh/plan/manifests.h"
#include "bench/mesh/plan/topology.h"
#include "bench/mesh/proxies/haproxy.h"
#include "bench/mesh/proxies/waypoint.h"
#include "bench/mesh/sidecar/sidecar.h"
#include "bpf/loader/capture.h"
#include "sim/cluster.h"
#include "sim/host.h"
#include "tests/support/daemon.h"
#include "tests/support/log_lines.h"
#include "tests/support/mesh.h"
#include "tests/support/privileges.h"

namespace zt::testing {
namespace {

namespace fs = std::filesystem;
namespace mb = zt::bench::mesh;
using namespace std::chrono_literals;

constexpr const char* kPrefixStem = "zmp";

const mb::ScenarioPlan& plan_of(mb::Mode mode) {
  for (const auto& s : mb::scenario_plans()) {
    if (s.mode == mode) return s;
  }
  throw std::runtime_error("no such scenario");
}

class MeshProxies : public ::testing::Test {
 protected:
  void SetUp() override {
    ZT_REQUIRE_PRIVILEGE(has_capability(Capability::kSysAdmin) &&
                             has_capability(Capability::kNetAdmin) &&
                             has_capability(Capability::kBpf) && sim::cgroup2_root(),
                         "needs CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_BPF and cgroup v2 for the "
                         "simulated cluster and its eBPF capture");
    (void)sim::remove_leftovers_of_dead_owners(kPrefixStem);
    auto ok = mb::write_bench_manifests(manifests_.path(), 0);
    ASSERT_TRUE(ok) << ok.error().describe();
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

  // curl from `pod`; the whole answer, or "" (with `exit_code` set) when curl failed.
  std::string curl(const std::string& pod, std::vector<std::string> args, int* exit_code = nullptr,
                   std::string* err = nullptr) {
    std::vector<std::string> argv = {"curl", "-sS", "-m", "5"};
    argv.insert(argv.end(), args.begin(), args.end());
    auto r = cluster_->exec_in_pod(pod, argv, 15s);
    if (!r) {
      ADD_FAILURE() << r.error().describe();
      return {};
    }
    if (exit_code) *exit_code = r->exit_code;
    if (err) *err = r->err;
    if (r->exit_code != 0) return {};
    return r->out;
  }

  // Retries for a few seconds: the ztunnels' xDS view of a waypoint started a moment ago.
  std::string curl_until_answered(const std::string& pod, const std::string& url) {
    std::string out, err;
    int code = -1;
    auto deadline = std::chrono::steady_clock::now() + 20s;
    do {
      out = curl(pod, {url}, &code, &err);
      if (code == 0 && out.rfind("peer=", 0) == 0) return out;
      std::this_thread::sleep_for(250ms);
    } while (std::chrono::steady_clock::now() < deadline);
    ADD_FAILURE() << "no answer from " << url << " in pod " << pod << " (curl exit " << code
                  << "): " << out << err;
    return {};
  }

  // Waits (tests/support/log_lines.h) for a line of the process's log holding every one of
  // `parts`: access lines are written when a connection closes, which can come a moment after
  // the client has its answer. The log on failure.
  ::testing::AssertionResult log_has(const std::string& process,
                                     const std::vector<std::string>& parts) {
    auto path = cluster_->log_path(process);
    if (wait_lines(path, parts) > 0) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << "no such line in " << path << ":\n" << slurp(path);
  }

  TempDir manifests_, state_, work_;
  std::string prefix_ = fmt::format("{}{}", kPrefixStem, ::getpid());
  fs::path state_dir_ = state_.path() / "state";
  std::unique_ptr<sim::Cluster> cluster_;
};

TEST_F(MeshProxies, AmbientWaypointCarriesTheServiceVipAndCountsTheRequest) {
  auto& c = up();
  const auto& s = plan_of(mb::Mode::kAmbientWaypoint);
  mb::WaypointOptions o;
  o.pod = s.waypoint_pod();
  o.ca_dir = c.state_dir() / "ca";
  o.xds_address = c.meshd_address();
  o.log_level = "info";  // the access log lines
  {
    auto no_ca = o;
    no_ca.ca_dir = work_.path() / "no-ca";
    auto bad = mb::start_waypoint(c, no_ca);
    ASSERT_FALSE(bad);
    EXPECT_NE(bad.error().describe().find("ca-cert.pem"), std::string::npos)
        << bad.error().describe();
  }
  auto wp = mb::start_waypoint(c, o);
  ASSERT_TRUE(wp) << wp.error().describe();
  auto again = mb::start_waypoint(c, o);
  ASSERT_FALSE(again);
  EXPECT_NE(again.error().describe().find("already running"), std::string::npos)
      << again.error().describe();
  EXPECT_EQ(wp->process, "ambient-wp.waypoint.waypoint");
  EXPECT_EQ(wp->role, "waypoint");
  EXPECT_EQ(wp->pod, "ambient-wp/waypoint");
  EXPECT_TRUE(sim::process_alive(wp->pid));
  EXPECT_EQ(c.pid_of(wp->process), wp->pid);

  auto url = fmt::format("http://{}:{}/", s.service_vip, mb::kAppPort);
  auto answer = curl_until_answered(s.client_pod(), url);
  EXPECT_NE(answer.find("pod=server"), std::string::npos) << answer;

  // Several more, so the count cannot come from a retry of the first.
  for (int i = 0; i < 4; ++i) {
    auto more = curl(s.client_pod(), {url});
    EXPECT_NE(more.find("pod=server"), std::string::npos) << more;
  }
  auto metrics =
      c.exec_in_pod(s.waypoint_pod(), {"curl", "-sS", "-m", "5", "http://127.0.0.1:15020/metrics"});
  ASSERT_TRUE(metrics) << metrics.error().describe();
  ASSERT_EQ(metrics->exit_code, 0) << metrics->err;
  double count = metric_sum(metrics->out, "istio_requests_total",
                            {"reporter=\"waypoint\"", "response_code=\"200\""});
  EXPECT_GE(count, 5) << metrics->out;

  // The waypoint's access log: reporter waypoint, the client's identity, the server pod as the
  // upstream of a request addressed to the VIP.
  auto wanted = fmt::format("upstream=\"{}:{}\"", s.server_ip, mb::kAppPort);
  EXPECT_TRUE(log_has(
      wp->process,
      {"component=access reporter=waypoint",
       "src.identity=\"spiffe://cluster.local/ns/ambient-wp/sa/default\"", wanted, "status=200"}));
  // The client's ztunnel sent it to the waypoint, not to the server directly: its outbound access
  // line has the waypoint pod as destination and the VIP as the HBONE target.
  EXPECT_TRUE(
      log_has(std::string(mb::kClientNode) + ".ztunnel",
              {"direction=\"outbound\"", fmt::format("dst.addr=\"{}:15008\"", s.waypoint_ip),
               fmt::format("dst.hbone_addr=\"{}:{}\"", s.service_vip, mb::kAppPort)}));
}

TEST_F(MeshProxies, HaproxyPairCarriesTrafficOverMutualTls13) {
  auto& c = up();
  const auto& s = plan_of(mb::Mode::kHaproxy);
  mb::HaproxyOptions o;
  o.client_pod = s.client_pod();
  o.server_pod = s.server_pod();
  o.server_ip = s.server_ip;
  o.ca_dir = c.state_dir() / "ca";
  o.work_dir = work_.path();
  o.threads = 2;
  auto pair = mb::start_haproxy_pair(c, o);
  ASSERT_TRUE(pair) << pair.error().describe();
  ASSERT_EQ(pair->size(), 2u);
  std::set<std::string> pods;
  for (const auto& p : *pair) {
    EXPECT_EQ(p.role, "haproxy");
    EXPECT_TRUE(sim::process_alive(p.pid)) << p.process;
    EXPECT_EQ(c.pid_of(p.process), p.pid);
    pods.insert(p.pod);
  }
  EXPECT_EQ(pods, (std::set<std::string>{"haproxy/client", "haproxy/server"}));

  auto app_url = fmt::format("http://127.0.0.1:{}/", mb::kHaproxyAppPort);
  auto answer = curl(s.client_pod(), {app_url});
  EXPECT_EQ(answer.rfind("peer=", 0), 0u) << answer;
  EXPECT_NE(answer.find("pod=server"), std::string::npos) << answer;

  // The bulk path: iperf3 through client:15002 -> server:15444 -> server's iperf3.
  auto iperf = c.start_in_pod(s.server_pod(), "haproxy.server.iperf3",
                              {"iperf3", "-s", "-p", std::to_string(mb::kBulkPort)});
  ASSERT_TRUE(iperf) << iperf.error().describe();
  auto server_ns = c.pod_netns(s.server_pod());
  ASSERT_TRUE(server_ns);
  // Until iperf3 listens in the server pod (polled there, not through the proxies), at most 10 s.
  for (int i = 0; i < 100 && !sim::connect_in(*server_ns, "127.0.0.1", mb::kBulkPort, 100ms); ++i) {
    std::this_thread::sleep_for(100ms);
  }
  auto bulk = c.exec_in_pod(
      s.client_pod(),
      {"iperf3", "-c", "127.0.0.1", "-p", std::to_string(mb::kHaproxyBulkPort), "-t", "1"}, 20s);
  ASSERT_TRUE(bulk) << bulk.error().describe();
  EXPECT_EQ(bulk->exit_code, 0) << bulk->out << bulk->err;
  EXPECT_NE(bulk->out.find("receiver"), std::string::npos) << bulk->out;

  // Straight to the server side's TLS port from the client pod: with the client's certificate
  // it answers (so the listener works); without one, or with TLS 1.2, it refuses.
  auto tls_url = fmt::format("https://{}:{}/", s.server_ip, mb::kHaproxyTlsAppPort);
  auto ca = (work_.path() / "ca.pem").string();
  auto cert = (work_.path() / "haproxy-client.pem").string();
  auto with_cert = curl(s.client_pod(), {"--cacert", ca, "--insecure", "--cert", cert, tls_url});
  EXPECT_EQ(with_cert.rfind("peer=", 0), 0u) << with_cert;

  int code = 0;
  std::string err;
  auto without = curl(s.client_pod(), {"--insecure", tls_url}, &code, &err);
  EXPECT_NE(code, 0) << without;
  EXPECT_EQ(without.find("peer="), std::string::npos) << without;
  EXPECT_NE(err.find("certificate required"), std::string::npos) << err;  // the TLS 1.3 alert
  if (std::getenv("ZT_TEST_VERBOSE")) std::cout << "without a certificate: " << code << " " << err;

  auto tls12 =
      curl(s.client_pod(), {"--insecure", "--cert", cert, "--tlsv1.2", "--tls-max", "1.2", tls_url},
           &code, &err);
  EXPECT_NE(code, 0) << tls12;
  EXPECT_EQ(tls12.find("peer="), std::string::npos) << tls12;
  EXPECT_NE(err.find("protocol version"), std::string::npos) << err;
  if (std::getenv("ZT_TEST_VERBOSE")) std::cout << "TLS 1.2: " << code << " " << err;

  // The certificates carry the pods' SPIFFE identity.
  auto text = c.exec_in_pod(s.client_pod(),
                            {"openssl", "x509", "-in", cert, "-noout", "-ext", "subjectAltName"});
  ASSERT_TRUE(text);
  EXPECT_NE(text->out.find("URI:spiffe://cluster.local/ns/haproxy/sa/default"), std::string::npos)
      << text->out << text->err;
}

// A sidecar ztunnel that cannot start (its local config is missing) is reported, and its pod is
// not left captured towards listeners nobody opened: its connections go direct again.
TEST_F(MeshProxies, ASidecarThatFailsToStartLeavesItsPodUncaptured) {
  auto& c = up();
  const auto& s = plan_of(mb::Mode::kSidecar);
  auto sc = mb::start_sidecar_ztunnel(c, {.pod = s.client_pod(),
                                          .local_config = work_.path() / "missing.yaml",
                                          .ca_dir = c.state_dir() / "ca"});
  ASSERT_FALSE(sc);
  EXPECT_NE(sc.error().describe().find("exited during start-up"), std::string::npos)
      << sc.error().describe();

  auto capture = bpf::CaptureProgram::load(mb::sidecar_pin_root(c, s.client_pod()).string());
  ASSERT_TRUE(capture) << capture.error().describe();
  const auto* pod = c.plan().find_pod(s.client_pod());
  ASSERT_NE(pod, nullptr);
  auto enrolled = (*capture)->enrolled();
  EXPECT_EQ(std::count(enrolled.begin(), enrolled.end(), pod->uid), 0)
      << "pod " << pod->uid << " is still enrolled";

  auto answer = curl(s.client_pod(), {fmt::format("http://{}:{}/", s.server_ip, mb::kAppPort)});
  EXPECT_NE(answer.find("pod=server"), std::string::npos) << answer;
}

// sidecar-l7: per-pod sidecar ztunnels (local config) and a waypoint dedicated to the server pod
// (the same local config, no L7 rules): client -> its ztunnel -> waypoint -> server's ztunnel.
TEST_F(MeshProxies, SidecarL7GoesThroughTheServersWaypoint) {
  auto& c = up();
  const auto& s = plan_of(mb::Mode::kSidecarL7);
  std::vector<mb::LocalWorkload> workloads = {
      {.namespace_ = s.namespace_, .name = "client", .ip = s.client_ip, .node = mb::kClientNode},
      {.namespace_ = s.namespace_,
       .name = "server",
       .ip = s.server_ip,
       .node = mb::kServerNode,
       .waypoint_ip = s.waypoint_ip},
      {.namespace_ = s.namespace_,
       .name = mb::kWaypointName,
       .ip = s.waypoint_ip,
       .node = mb::kServerNode,
       .service_account = mb::kWaypointName,
       .hbone = false},
  };
  auto config = work_.path() / "sidecar-l7.yaml";
  write_file(config, mb::local_config_yaml(workloads));
  auto ca_dir = c.state_dir() / "ca";

  mb::WaypointOptions wo;
  wo.pod = s.waypoint_pod();
  wo.ca_dir = ca_dir;
  wo.local_config = config;
  wo.log_level = "info";
  auto wp = mb::start_waypoint(c, wo);
  ASSERT_TRUE(wp) << wp.error().describe();
  EXPECT_EQ(wp->role, "sidecar-waypoint");
  std::vector<std::string> sidecar_processes;
  for (const auto& pod : {s.server_pod(), s.client_pod()}) {
    mb::SidecarOptions so;
    so.pod = pod;
    so.local_config = config;
    so.ca_dir = ca_dir;
    so.log_level = "info";
    auto sc = mb::start_sidecar_ztunnel(c, so);
    ASSERT_TRUE(sc) << sc.error().describe();
    sidecar_processes.push_back(sc->process);
  }

  auto url = fmt::format("http://{}:{}/", s.server_ip, mb::kAppPort);
  auto answer = curl_until_answered(s.client_pod(), url);
  EXPECT_NE(answer.find("pod=server"), std::string::npos) << answer;

  EXPECT_TRUE(log_has(
      wp->process, {"component=access reporter=waypoint",
                    "src.identity=\"spiffe://cluster.local/ns/sidecar-l7/sa/default\"",
                    fmt::format("upstream=\"{}:{}\"", s.server_ip, mb::kAppPort), "status=200"}));
  EXPECT_TRUE(log_has(sidecar_processes[1], {"direction=\"outbound\"",
                                             fmt::format("dst.addr=\"{}:15008\"", s.waypoint_ip)}));
}

}  // namespace
}  // namespace zt::testing
