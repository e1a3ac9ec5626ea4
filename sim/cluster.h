// Cluster: a Kubernetes-like cluster on one machine, built from a directory of manifests
// (DESIGN §9). What exists while it is up, all named after the prefix (default "zsim") so a later
// run can recognise and remove leftovers of a crashed one:
//   netns <prefix>-fabric        bridge of the node network; meshd listens on 172.30.0.1:15012
//   netns <prefix>-<node>        a node: routes to every pod; node agent and ztunnel run here
//   netns <prefix>-<node>-<n>    a pod: eth0 <pod ip>/32, default via 169.254.1.1 (topology.h)
//   cgroup <root>/<prefix>/meshd, <root>/<prefix>/<node>/{ztunnel,agent,pod<uid>}
//   bpffs  /sys/fs/bpf/ambient-mesh/<prefix>-<node> (the agent's and ztunnel's pins); when
//          /sys/fs/bpf is not a bpffs, a private one is mounted at <state dir>/bpffs instead
//   state  <state dir>: state.json (plan + pids), tokens, CA, logs/<process>.log
// Each pod runs a "pause" process (meshsim pause) and the app `http-echo --port <containerPort>`,
// both in the pod's cgroup and netns; a waypoint pod (PodPlan::waypoint) runs build/bin/waypoint
// as its app instead, with meshd as its xDS server and meshd's CA, and is ready when its
// readiness endpoint answers 200. With mesh on, each node runs `node-agent` and `ztunnel`
// (PROXY_MODE=shared) in its own cgroup in the node netns.
//
// Processes are started by this object (their parent) and recorded in state.json, so a cluster
// started by `meshsim up` can be attached to and torn down by another process. Teardown kills
// every process in the prefix's cgroups, so nothing started by the simulator can outlive it.
//
// Threading: not thread-safe; one thread drives a Cluster.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <signal.h>

#include "common/base/result.h"
#include "common/netns/netns.h"
#include "sim/host.h"
#include "sim/topology.h"

namespace zt::sim {

struct ClusterOptions {
  std::filesystem::path manifests;  // required for up()
  std::string prefix = "zsim";
  std::filesystem::path state_dir;  // default: default_state_dir(prefix)
  std::filesystem::path bin_dir;    // default: $ZT_BIN_DIR, else the running binary's directory
  bool mesh = true;                 // false: no node agents and no ztunnels (a no-mesh baseline)
  std::vector<std::string> extra_nodes;  // nodes without pods
  std::chrono::milliseconds ready_timeout = std::chrono::seconds(60);
  std::string log_level = "info";  // meshd, agents, ztunnels and waypoint pods
  // Progress and leftover-removal messages ("removed leftover netns zsim-fabric").
  std::function<void(std::string_view)> progress;
};

enum class NodeDaemon { kZtunnel, kAgent };
std::string_view to_string(NodeDaemon d);

struct ProcessInfo {
  std::string name;  // "meshd", "node-0.ztunnel", "node-0.agent", "ns.pod.pause", "ns.pod.app"
  pid_t pid = -1;
  bool alive = false;
  std::filesystem::path log;
};

std::filesystem::path default_state_dir(const std::string& prefix);

// Removes what an earlier run with `prefix` left behind: the processes in its cgroups (and the
// pids in its state.json that still live in those cgroups), netns "<prefix>-*", the cgroup tree,
// bpffs pins "/sys/fs/bpf/ambient-mesh/<prefix>-*" (or the private bpffs <state dir>/bpffs,
// unmounted) and the state dir (only when it holds a
// meshsim marker for this prefix or is empty; `keep_logs` keeps <state>/logs). Returns one line
// per thing removed.
Result<std::vector<std::string>> remove_leftovers(const std::string& prefix,
                                                  const std::filesystem::path& state_dir,
                                                  bool keep_logs = false);

// `ip` commands an earlier run with `prefix` started that outlived it: they run in their own
// process group and outside the cluster's cgroups, so a SIGKILL of the simulator leaves e.g. an
// `ip netns add <prefix>-node-0` running, which would race the next `up` for the same name.
// (run_captured() now kills a command with its caller, so one outlives it only until its SIGKILL
// lands, or when an older build started it.)
// Pids of the live `ip` processes outside "/<prefix>/" cgroups with an argument "<prefix>-...".
// remove_leftovers() waits for them to exit (on pidfds, up to 10 s in all) before it removes
// anything, and kills those still running.
std::vector<pid_t> orphaned_commands(const std::string& prefix);

// For clusters named "<stem><pid>" (tests name theirs after their process): removes what those
// whose process is gone left behind (a test killed by a timeout cannot tear its cluster down).
// Clusters of live processes are left alone. Returns the prefixes it cleaned.
std::vector<std::string> remove_leftovers_of_dead_owners(const std::string& stem);

class Cluster {
 public:
  // Builds the cluster and waits until meshd, every pod's app and (with mesh) every node agent
  // and ztunnel are ready. Leftovers of an earlier run with the same prefix are removed first.
  // On failure everything created so far is torn down (logs are kept) and the error names the
  // step and, for a process, the end of its log.
  static Result<std::unique_ptr<Cluster>> up(ClusterOptions options);
  // A cluster started by another process, from its state dir (state.json).
  static Result<std::unique_ptr<Cluster>> attach(const std::filesystem::path& state_dir);

  ~Cluster();  // down(), unless detach()ed
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;

  // Leaves the cluster running when this object goes away (meshsim up).
  void detach() { detached_ = true; }
  // Kills every process, deletes the netns, cgroups and pins; keeps <state dir>/logs.
  Status down();

  const Plan& plan() const { return plan_; }
  const ClusterOptions& options() const { return options_; }
  const std::vector<std::string>& leftovers_removed() const { return leftovers_removed_; }
  std::string meshd_address() const;  // "172.30.0.1:15012"

  // Runs argv (a name is looked up in PATH) in the pod's cgroup and netns, with POD_NAME,
  // POD_NAMESPACE and POD_IP set. `pod` is "namespace/name".
  Result<ExecResult> exec_in_pod(const std::string& pod, const std::vector<std::string>& argv,
                                 std::chrono::milliseconds timeout = std::chrono::seconds(30));
  // Runs argv in a node's netns (the caller's cgroup): the node's view, like a kubelet probe.
  Result<ExecResult> exec_in_node(const std::string& node, const std::vector<std::string>& argv,
                                  std::chrono::milliseconds timeout = std::chrono::seconds(30));

  // A node's ztunnel or node agent: start (and wait until ready), stop with a signal (SIGTERM
  // waits for a clean exit, SIGKILL is a crash), running?
  Status start(const std::string& node, NodeDaemon daemon);
  Status stop(const std::string& node, NodeDaemon daemon, int sig = SIGTERM);
  Status kill(const std::string& node, NodeDaemon daemon) { return stop(node, daemon, SIGKILL); }
  bool running(const std::string& node, NodeDaemon daemon) const;

  // Long-running processes next to a pod's app (benchmarks: sidecar proxies, a waypoint, an
  // iperf3 server). The process runs in the pod's netns with POD_NAME, POD_NAMESPACE, POD_IP and
  // NODE_NAME set, is recorded like the cluster's own processes (state.json, logs/<name>.log)
  // and is killed by down(). kApp: in the pod's cgroup, so it is captured like the app when the
  // pod is enrolled; kSidecar: in the sibling cgroup sidecar_cgroup(pod) below the node's cgroup,
  // which shares the pod's netns but not its cgroup programs (a proxy is never captured by its
  // own pod). `name` must be unused ("ns.pod.sidecar"). Returns the pid once exec succeeded.
  enum class PodCgroup { kApp, kSidecar };
  Result<pid_t> start_in_pod(const std::string& pod, const std::string& name,
                             std::vector<std::string> argv, std::vector<std::string> env = {},
                             PodCgroup where = PodCgroup::kApp);
  // Stops a process started by start_in_pod (or any process by its ProcessInfo::name): `sig`,
  // then waits up to 15 s for it to exit. Unknown names are success.
  Status stop_named(const std::string& name, int sig = SIGTERM);
  std::optional<pid_t> pid_of(const std::string& name) const;          // running or not
  std::filesystem::path sidecar_cgroup(const std::string& pod) const;  // "<pod cgroup>-proxy"
  const std::filesystem::path& state_dir() const { return options_.state_dir; }

  // Sets (value) or removes (nullopt) a label of a Namespace in the manifests directory; meshd
  // and the node agents watch the directory.
  Status label_namespace(const std::string& ns, const std::string& key,
                         const std::optional<std::string>& value);

  Result<netns::Netns> node_netns(const std::string& node) const;
  Result<netns::Netns> pod_netns(const std::string& pod) const;
  std::filesystem::path cgroup_root() const { return cgroup_root_; }  // <root>/<prefix>
  std::filesystem::path node_cgroup(const std::string& node) const;
  std::filesystem::path pod_cgroup(const std::string& pod) const;
  // "<pin base>/<prefix>-<name>": a node's pin root, or (any other name) a private pin root that
  // down() and remove_leftovers() remove with the node's (e.g. a sidecar pod's own capture).
  std::filesystem::path bpf_pin_root(const std::string& node) const;
  std::filesystem::path zds_socket(const std::string& node) const;
  // Log file of a process by name (ProcessInfo::name), whether or not it runs.
  std::filesystem::path log_path(const std::string& process) const;
  std::vector<ProcessInfo> processes() const;

 private:
  Cluster() = default;

  Status build();
  Status build_network();
  Status start_meshd();
  Status start_pod(const PodPlan& pod);
  Status wait_pod_ready(const PodPlan& pod);
  Status write_state() const;
  Result<pid_t> launch(const std::string& name, const SpawnSpec& spec);
  SpawnSpec daemon_spec(const NodePlan& node, NodeDaemon daemon) const;
  Status wait_daemon_ready(const NodePlan& node, NodeDaemon daemon);
  // Polls `ready` (a readiness endpoint or file: no event to wait on) every 20 ms until it holds;
  // fails when process `name` exits or the ready timeout passes, with the end of its log.
  Status wait_ready(const std::string& name, const std::function<bool()>& ready);
  std::string log_tail(const std::string& process) const;
  void say(std::string_view message) const;

  ClusterOptions options_;
  Plan plan_;
  std::filesystem::path cgroup_mount_;  // /sys/fs/cgroup/unified
  std::filesystem::path cgroup_root_;   // <mount>/<prefix>
  std::filesystem::path pin_base_;      // parent of the nodes' pin roots
  std::map<std::string, pid_t> pids_;   // by process name
  std::vector<std::string> leftovers_removed_;
  bool detached_ = false;
  bool down_ = false;
};

}  // namespace zt::sim
