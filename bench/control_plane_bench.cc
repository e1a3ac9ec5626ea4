// control_plane_bench: the control plane at scale (issue 3, acceptance 6). Generates a cluster of
// 10,000 pods, 1,000 services and 500 authorization policies as manifests, starts the real
// build/bin/meshd on them and one real build/bin/ztunnel fed by it, and prints:
//   - meshd: time to its first publish, RSS;
//   - the wire: bytes of a full push (both types) and of the push after one pod is added,
//     measured by a Delta ADS client of our own that subscribes as ztunnel does;
//   - ztunnel: time from start to ready (first full set applied, certificate issued), RSS, and
//     how long the single-pod update takes to show in its /config_dump.
// A benchmark, not a test: nothing is asserted. Sizes are flags:
//   control_plane_bench [--pods N] [--services N] [--policies N]
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>
#include <thread>

#include <signal.h>

#include "common/net/address.h"
#include "tests/integration/meshd/ads_test_client.h"
#include "tests/support/cluster_manifests.h"
#include "tests/support/daemon.h"
#include "tests/support/mesh.h"

namespace zt::bench {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using meshd::testing::AdsTestClient;
using testing::ClusterManifestOptions;
using testing::Daemon;

struct Sizes {
  size_t pods = 10'000;
  size_t services = 1'000;
  size_t policies = 500;
};

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

// VmRSS of a process in MiB, or -1.
double rss_mib(pid_t pid) {
  std::ifstream in(fmt::format("/proc/{}/status", pid));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  }
  return -1;
}

// 500 policies spread over the namespaces: ALLOW by principal on a port, half of them selecting
// one app, the other half namespace-wide.
std::string policies_yaml(const std::vector<std::string>& namespaces, size_t count,
                          size_t apps_per_namespace) {
  std::string out;
  for (size_t i = 0; i < count; ++i) {
    const auto& ns = namespaces[i % namespaces.size()];
    std::string selector = i % 2 == 0
                               ? fmt::format("  selector:\n    matchLabels:\n      app: app-{}\n",
                                             (i / namespaces.size()) % apps_per_namespace)
                               : std::string();
    out += fmt::format(
        "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n"
        "  name: allow-{0}\n  namespace: {1}\nspec:\n{2}  action: ALLOW\n  rules:\n"
        "  - from:\n    - source:\n        principals: [\"cluster.local/ns/{1}/sa/app-{3}\"]\n"
        "    to:\n    - operation:\n        ports: [\"8080\"]\n",
        i, ns, selector, i % apps_per_namespace);
  }
  return out;
}

// Reads and ACKs responses until `want` resources of each type are held or nothing arrives for
// `quiet`; returns the protobuf bytes received. `*done_ms` (when given) gets the time from
// `start` to when the wanted counts were first held (-1 if never), so the 200 ms spent checking
// that nothing more follows is not counted.
size_t drain(AdsTestClient& client, size_t want_addresses, size_t want_policies,
             std::chrono::milliseconds quiet, Clock::time_point start = Clock::now(),
             double* done_ms = nullptr) {
  size_t bytes = 0;
  if (done_ms) *done_ms = -1;
  while (true) {
    bool done = client.held(meshd::testing::kAddressUrl).size() >= want_addresses &&
                client.held(meshd::testing::kAuthorizationUrl).size() >= want_policies;
    if (done && done_ms && *done_ms < 0) *done_ms = ms_since(start);
    auto r = client.next(done ? 200ms : quiet);
    if (!r) return bytes;
    bytes += r->ByteSizeLong();
    client.apply(*r);
  }
}

int run(const Sizes& sizes) {
  testing::TempDir dir;
  ClusterManifestOptions o;
  o.nodes = {"node-0", "node-1", "node-2", "node-3"};
  size_t apps_per_namespace = 20;
  size_t namespace_count = std::max<size_t>(1, sizes.services / apps_per_namespace);
  o.namespaces.clear();
  for (size_t i = 0; i < namespace_count; ++i) o.namespaces.push_back(fmt::format("apps-{}", i));
  o.ambient_namespaces = o.namespaces;
  o.apps_per_namespace = apps_per_namespace;
  o.pods = sizes.pods;
  o.pod_ip_start = "127.10.0.10";
  o.service_ip_start = "127.20.0.10";
  auto cluster = testing::write_cluster_manifests(dir.path() / "manifests", o);
  testing::write_manifest_file(dir.path() / "manifests" / "policies.yaml",
                               policies_yaml(o.namespaces, sizes.policies, apps_per_namespace));
  std::printf("cluster: %zu pods, %zu services, %zu policies, %zu namespaces, %zu nodes\n",
              cluster.pods.size(), cluster.services.size(), sizes.policies,
              cluster.namespaces.size(), o.nodes.size());

  auto start = Clock::now();
  auto meshd = Daemon::start(testing::bin_path("meshd"),
                             {"--manifests", (dir.path() / "manifests").string(), "--grpc-address",
                              "127.0.0.1:0", "--ca-dir", (dir.path() / "ca").string()});
  if (!meshd) {
    std::fprintf(stderr, "meshd: %s\n", meshd.error().message.c_str());
    return 1;
  }
  if (!(*meshd)->wait_for(std::regex("meshd ready"), 120s)) {
    std::fprintf(stderr, "meshd did not become ready:\n%s\n", (*meshd)->output().c_str());
    return 1;
  }
  double meshd_ready_ms = ms_since(start);
  auto grpc = (*meshd)->listening("grpc");
  if (!grpc) return 1;
  std::string target = net::format_endpoint(*grpc);

  // The wire: one client subscribing to both types, as ztunnel does.
  size_t want_addresses = cluster.pods.size() + cluster.services.size();
  AdsTestClient client(target,
                       "ztunnel~127.0.0.1~bench.istio-system~istio-system.svc.cluster.local");
  client.subscribe(meshd::testing::kAddressUrl);
  client.subscribe(meshd::testing::kAuthorizationUrl);
  start = Clock::now();
  double full_ms = -1;
  size_t full_bytes = drain(client, want_addresses, sizes.policies, 30s, start, &full_ms);
  size_t got_addresses = client.held(meshd::testing::kAddressUrl).size();
  size_t got_policies = client.held(meshd::testing::kAuthorizationUrl).size();

  // One ztunnel, acting for the first pod, configured and certified by meshd.
  const auto& pod = cluster.pods.front();
  std::string url = "http://" + target;
  testing::ZtunnelOptions zo;
  zo.ns = pod.namespace_;
  zo.name = pod.name;
  zo.service_account = pod.service_account;
  zo.socks5 = false;
  zo.env = {"XDS_ADDRESS=" + url, "CA_ADDRESS=" + url, "NODE_NAME=" + pod.node};
  start = Clock::now();
  auto z = testing::ZtunnelProcess::start(zo);
  if (!z) {
    std::fprintf(stderr, "ztunnel: %s\n", z.error().message.c_str());
    return 1;
  }
  double ztunnel_ready_ms = ms_since(start);
  double ztunnel_rss = rss_mib((*z)->daemon().pid());
  std::this_thread::sleep_for(1s);  // settled: the full push's transient memory is gone
  double ztunnel_rss_settled = rss_mib((*z)->daemon().pid());

  // A single-pod update: one new pod file.
  std::string new_ip = testing::ipv4_plus(o.pod_ip_start, cluster.pods.size() + 100);
  testing::write_manifest_file(
      dir.path() / "manifests" / "extra-pod.yaml",
      fmt::format("apiVersion: v1\nkind: Pod\nmetadata:\n  name: bench-extra\n  namespace: {}\n"
                  "  labels:\n    app: app-0\nspec:\n  nodeName: node-0\n"
                  "  serviceAccountName: app-0\n  containers:\n  - name: app\n    image: x\n"
                  "status:\n  podIP: {}\n  podIPs:\n  - ip: {}\n",
                  o.namespaces.front(), new_ip, new_ip));
  start = Clock::now();
  double update_ms = -1;
  size_t update_bytes = drain(client, want_addresses + 1, sizes.policies, 10s, start, &update_ms);
  // How long until ztunnel holds it (polling its /config_dump for the new pod's IP).
  double ztunnel_update_ms = -1;
  while (ms_since(start) < 20'000) {
    auto r = testing::http_request((*z)->admin, "GET", "/config_dump");
    if (r && r->body.find("\"" + new_ip + "\"") != std::string::npos) {
      ztunnel_update_ms = ms_since(start);
      break;
    }
    std::this_thread::sleep_for(20ms);
  }
  double ztunnel_rss_after = rss_mib((*z)->daemon().pid());
  std::this_thread::sleep_for(1s);
  double ztunnel_rss_after_settled = rss_mib((*z)->daemon().pid());

  std::printf("\n%-52s %s\n", "measure", "value");
  std::printf("%-52s %.0f ms\n", "meshd: start to first publish (manifests read)", meshd_ready_ms);
  std::printf("%-52s %.1f MiB\n", "meshd: RSS", rss_mib((*meshd)->pid()));
  std::printf("%-52s %zu addresses + %zu policies\n", "full push: resources received",
              got_addresses, got_policies);
  std::printf("%-52s %.2f MiB (%.0f bytes/resource), %.0f ms\n", "full push: bytes on the wire",
              full_bytes / 1048576.0,
              static_cast<double>(full_bytes) / std::max<size_t>(1, got_addresses + got_policies),
              full_ms);
  std::printf("%-52s %zu bytes, %.0f ms from the file write\n",
              "single-pod update: bytes on the wire", update_bytes, update_ms);
  std::printf("%-52s %.0f ms\n", "ztunnel: start to ready (full set + certificate)",
              ztunnel_ready_ms);
  std::printf("%-52s %.0f ms\n", "ztunnel: single-pod update visible in /config_dump",
              ztunnel_update_ms);
  std::printf("%-52s %.1f MiB at ready, %.1f MiB 1 s later\n", "ztunnel: RSS holding the cluster",
              ztunnel_rss, ztunnel_rss_settled);
  std::printf("%-52s %.1f MiB, %.1f MiB 1 s later\n",
              "ztunnel: RSS after the update (/config_dump polled)", ztunnel_rss_after,
              ztunnel_rss_after_settled);
  (*z)->daemon().stop(SIGTERM);
  (*meshd)->stop(SIGTERM);
  return 0;
}

}  // namespace
}  // namespace zt::bench

int main(int argc, char** argv) {
  zt::bench::Sizes sizes;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    size_t value = std::stoul(argv[i + 1]);
    if (flag == "--pods") {
      sizes.pods = value;
    } else if (flag == "--services") {
      sizes.services = value;
    } else if (flag == "--policies") {
      sizes.policies = value;
    } else {
      std::fprintf(stderr, "usage: control_plane_bench [--pods N] [--services N] [--policies N]\n");
      return 2;
    }
  }
  return zt::bench::run(sizes);
}
