// start_sidecar_ztunnel: our sidecar mode. The pod gets a capture of its own (programs and maps
// under a private pin root), enrolled the way the node agent enrolls an ambient pod, and a
// dedicated ztunnel with --sidecar-capture in the pod's netns (sibling cgroup, so its own
// connections are never captured) serves it through that capture.
#include "bench/mesh/sidecar/sidecar.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <unistd.h>

#include "bpf/loader/capture.h"
#include "common/base/log.h"
#include "common/base/unique_fd.h"
#include "common/net/address.h"
#include "common/netns/netns.h"
#include "sim/cluster.h"
#include "sim/host.h"

namespace zt::bench::mesh {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

constexpr uint16_t kReadinessPort = 15021;

// The sidecar's readiness endpoint (inside the pod's netns, from this process's cgroup: no
// capture) answers 200.
bool ready_in(const netns::Netns& ns) {
  auto status = sim::http_status_in(ns, "127.0.0.1", kReadinessPort, "/healthz/ready", 1500ms);
  return status && *status == 200;
}

// Enrolls the pod in a capture of its own under `pin_root`; the CaptureProgram object is not
// kept: the pinned links and maps stay until the cluster's down() removes the pins.
Status enroll_pod(sim::Cluster& cluster, const sim::PodPlan& pod, const sim::NodePlan& node,
                  const std::string& pin_root) {
  std::error_code ec;
  fs::create_directories(pin_root, ec);  // on bpffs; load() names the problem if it is not
  auto capture = bpf::CaptureProgram::load(pin_root);
  if (!capture) return tl::unexpected(wrap(capture.error(), "loading the capture"));
  auto ns = cluster.pod_netns(pod.key());
  if (!ns) return tl::unexpected(wrap(ns.error(), "opening the pod's netns"));
  auto cgroup = cluster.pod_cgroup(pod.key());
  UniqueFd cgroup_fd(::open(cgroup.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!cgroup_fd) {
    return fail(std::error_code(errno, std::system_category()),
                fmt::format("opening cgroup {}", cgroup.string()));
  }
  bpf::PodNetwork net;
  auto pod_ip = net::parse_ip(pod.ip);
  if (!pod_ip) return tl::unexpected(wrap(pod_ip.error(), "pod IP"));
  net.ips.push_back(*pod_ip);
  // Connections from the node (kubelet-style probes) reach the app as in ambient.
  if (auto node_ip = net::parse_ip(node.ip)) net.probe_sources.push_back(*node_ip);
  if (auto st = (*capture)->enroll(pod.uid, cgroup_fd.get(), ns->fd(), net); !st) {
    return tl::unexpected(wrap(st.error(), "enrolling the pod"));
  }
  // Delivery with the client's source IP (bpf/README.md): fwmark 0x53a routed to the local
  // stack. Without it ztunnel falls back to the pod's own IP as source, so it is not fatal.
  if (auto st = netns::configure_delivery_routing(*ns); !st) {
    ZT_LOG_WARN(
        "component=meshbench msg=\"pod {}: no delivery routing, the app will see the pod's own "
        "IP as source\" error=\"{}\"",
        pod.key(), st.error().describe());
  }
  return {};
}

// Undoes enroll_pod() for a pod whose sidecar did not come up, so that its connections go
// direct again instead of to listeners nobody opened. The delivery routing stays: it only
// routes packets with ztunnel's fwmark, which nothing sets once no proxy runs there.
void release_pod(const sim::PodPlan& pod, const std::string& pin_root) {
  auto capture = bpf::CaptureProgram::load(pin_root);
  Status st = capture ? (*capture)->release(pod.uid) : Status(tl::unexpected(capture.error()));
  if (!st) {
    ZT_LOG_WARN(
        "component=meshbench msg=\"pod {}: its sidecar did not start and its capture could not "
        "be released\" error=\"{}\"",
        pod.key(), st.error().describe());
  }
}

// Starts the pod's ztunnel (its capture is in place) and waits until it is ready.
Result<StartedProxy> start_enrolled(sim::Cluster& cluster, const SidecarOptions& options,
                                    const sim::PodPlan& pod, const std::string& name,
                                    const std::string& pin_root) {
  auto step = [&](std::string_view what, const Error& e) {
    return tl::unexpected(wrap(e, fmt::format("sidecar ztunnel {}: {}", options.pod, what)));
  };
  std::string sa = pod.service_account.empty() ? "default" : pod.service_account;
  auto bin = cluster.options().bin_dir / "ztunnel";
  std::vector<std::string> argv = {bin.string(), "--ca-cert",
                                   (options.ca_dir / "ca-cert.pem").string(), "--ca-key",
                                   (options.ca_dir / "ca-key.pem").string()};
  std::vector<std::string> env = {
      "PROXY_MODE=dedicated",
      "SIDECAR_CAPTURE=true",
      "BPF_PIN_ROOT=" + pin_root,
      fmt::format("PROXY_WORKLOAD_INFO={}/{}/{}", pod.namespace_, pod.name, sa),
      "LOCAL_XDS_PATH=" + options.local_config.string(),
      "RUST_LOG=" + options.log_level,
  };
  auto pid = cluster.start_in_pod(pod.key(), name, std::move(argv), std::move(env),
                                  sim::Cluster::PodCgroup::kSidecar);
  if (!pid) return step("start", pid.error());

  auto ns = cluster.pod_netns(pod.key());
  if (!ns) {
    (void)cluster.stop_named(name, SIGKILL);  // its pod's capture is about to be released
    return step("opening the pod's netns", ns.error());
  }
  auto deadline = std::chrono::steady_clock::now() + cluster.options().ready_timeout;
  while (!ready_in(*ns)) {
    if (!sim::process_alive(*pid)) {
      return failf("sidecar ztunnel {}: exited during start-up{}", options.pod,
                   sim::log_tail(cluster.log_path(name)));
    }
    if (std::chrono::steady_clock::now() > deadline) {
      auto tail = sim::log_tail(cluster.log_path(name));
      (void)cluster.stop_named(name, SIGKILL);
      return failf("sidecar ztunnel {}: not ready on 127.0.0.1:{} in the pod after {} ms{}",
                   options.pod, kReadinessPort, cluster.options().ready_timeout.count(), tail);
    }
    std::this_thread::sleep_for(20ms);
  }
  return StartedProxy{.process = name, .pid = *pid, .role = "sidecar-ztunnel", .pod = pod.key()};
}

}  // namespace

std::filesystem::path sidecar_pin_root(const sim::Cluster& cluster, const std::string& pod) {
  const auto* p = cluster.plan().find_pod(pod);
  if (!p) return {};
  const auto* node = cluster.plan().find_node(p->node);
  if (!node) return {};
  // One sidecar capture per node, apart from the node agent's: the maps are keyed by netns
  // cookie and pod IP, so every sidecar pod of the node shares them (a private set per pod
  // would cost ~11 MB of map memory each, mostly the origins LRU), while each pod's own
  // programs and listeners point at its own proxy.
  return cluster.bpf_pin_root(fmt::format("sc{}", node->index));
}

Result<StartedProxy> start_sidecar_ztunnel(sim::Cluster& cluster, const SidecarOptions& options) {
  const auto* pod = cluster.plan().find_pod(options.pod);
  if (!pod) return failf("sidecar ztunnel: no pod {} in the simulated cluster", options.pod);
  const auto* node = cluster.plan().find_node(pod->node);
  if (!node) return failf("sidecar ztunnel {}: no node {}", options.pod, pod->node);
  auto pin_root = sidecar_pin_root(cluster, options.pod).string();
  auto name = pod->namespace_ + "." + pod->name + ".ztunnel";
  if (auto st = enroll_pod(cluster, *pod, *node, pin_root); !st) {
    return tl::unexpected(
        wrap(st.error(), fmt::format("sidecar ztunnel {}: capture at {}", options.pod, pin_root)));
  }
  auto started = start_enrolled(cluster, options, *pod, name, pin_root);
  if (!started) release_pod(*pod, pin_root);
  return started;
}

}  // namespace zt::bench::mesh
