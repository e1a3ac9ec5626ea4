// meshsim: a simulated Kubernetes cluster on one machine (sim/cluster.h). Parses the command line
// and hands over to sim::Cluster.
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include "sim/cluster.h"
#include "sim/demo/demo.h"
#include "sim/manifest_edit.h"

namespace {

namespace sim = zt::sim;

constexpr const char* kHelp = R"(Usage:
  meshsim up --manifests DIR [--prefix P] [--state-dir D] [--bin-dir B] [--no-mesh]
             [--node NAME]... [--timeout SECONDS] [--log-level LEVEL]
      Builds the cluster the manifests describe (nodes and pods from spec.nodeName and
      status.podIP), starts meshd, every pod's app (http-echo; the waypoint for a pod whose
      container command is the waypoint, for the Gateway its label
      gateway.networking.k8s.io/gateway-name names) and, unless --no-mesh, one
      node-agent and one shared-mode ztunnel per node; waits until all are ready, prints the
      pods and returns, leaving the cluster running. Leftovers of an earlier run with the same
      prefix (netns <P>-*, cgroup <cgroup root>/<P>, bpffs pins ambient-mesh/<P>-*, the state
      dir) are removed first and listed.
  meshsim down [--prefix P] [--state-dir D]
      Stops every process of the cluster and removes its netns, cgroups and pins (logs kept).
      Also cleans up after a crashed run.
  meshsim exec NAMESPACE/POD [--prefix P] [--state-dir D] -- CMD [ARGS...]
      Runs CMD in the pod's cgroup and network namespace; exits with its exit code.
  meshsim label-namespace NAMESPACE KEY=VALUE|KEY- [--prefix P] [--state-dir D]
      Sets or removes a label of a Namespace in the manifests directory (meshd and the node
      agents pick the change up), e.g. istio.io/dataplane-mode=ambient.
  meshsim start|stop|kill NODE ztunnel|agent [--prefix P] [--state-dir D]
      Starts (and waits until ready), stops (SIGTERM) or kills (SIGKILL) a node's ztunnel or
      node agent, e.g. to watch the capture fail closed and recover.
  meshsim status [--prefix P] [--state-dir D]
      Nodes, pods, processes and where their logs are.
  meshsim demo --manifests sim/examples/demo [--prefix P] [--bin-dir B] [--keep]
      The main job (scripts/demo.sh): brings up the demo cluster (prefix zdemo), sends requests
      between its ambient and plain namespaces and through its waypoint, captures node-0's
      link, and prints which connections were captured, the identities and bytes from both
      ztunnels, the waypoint's routes, denials and counters, the TLS seen on the wire, the eBPF
      counters, and a list of checks; exits 1 if a check failed. --keep
      leaves the cluster running.

Defaults: --prefix zsim (letters and digits), --state-dir /run/meshsim/<prefix>, --bin-dir the
directory of meshsim, --timeout 60, --log-level info. Logs: <state dir>/logs/<process>.log.
Addresses: meshd 172.30.0.1:15012 in netns <P>-fabric; node i 172.30.0.<10+i> in netns
<P>-<node>; pods keep their manifest IPs in netns <P>-<node>-<n>.
)";

struct Args {
  std::string command;
  std::string prefix = "zsim";
  std::string state_dir, manifests, bin_dir, log_level = "info";
  bool mesh = true;
  bool prefix_set = false;
  bool keep = false;
  int timeout = 60;
  std::vector<std::string> nodes;
  std::vector<std::string> positional;
  std::vector<std::string> rest;  // after --
};

int usage_error(const std::string& msg) {
  std::fprintf(stderr, "meshsim: %s\n(see meshsim --help)\n", msg.c_str());
  return 2;
}

std::filesystem::path state_dir_of(const Args& a) {
  return a.state_dir.empty() ? sim::default_state_dir(a.prefix)
                             : std::filesystem::path(a.state_dir);
}

void progress(std::string_view line) {
  std::fprintf(stderr, "meshsim: %.*s\n", static_cast<int>(line.size()), line.data());
}

void print_pods(const sim::Plan& plan) {
  std::printf("%-40s %-16s %-10s %s\n", "POD", "IP", "NODE", "NETNS");
  for (const auto& n : plan.nodes) {
    for (const auto& p : n.pods) {
      std::printf("%-40s %-16s %-10s %s\n", p.key().c_str(), p.ip.c_str(), n.name.c_str(),
                  p.netns.c_str());
    }
  }
}

int cmd_up(const Args& a) {
  if (a.manifests.empty()) return usage_error("up needs --manifests DIR");
  sim::ClusterOptions o;
  o.manifests = a.manifests;
  o.prefix = a.prefix;
  o.state_dir = state_dir_of(a);
  if (!a.bin_dir.empty()) o.bin_dir = a.bin_dir;
  o.mesh = a.mesh;
  o.extra_nodes = a.nodes;
  o.ready_timeout = std::chrono::seconds(a.timeout);
  o.log_level = a.log_level;
  o.progress = progress;
  auto c = sim::Cluster::up(o);
  if (!c) {
    std::fprintf(stderr, "meshsim: up failed: %s\n", c.error().describe().c_str());
    return 1;
  }
  (*c)->detach();
  const auto& plan = (*c)->plan();
  std::printf("cluster %s is up: meshd %s, %zu nodes, mesh %s; state %s\n", plan.prefix.c_str(),
              (*c)->meshd_address().c_str(), plan.nodes.size(), a.mesh ? "on" : "off",
              (*c)->options().state_dir.c_str());
  print_pods(plan);
  return 0;
}

int cmd_down(const Args& a) {
  auto dir = state_dir_of(a);
  auto c = sim::Cluster::attach(dir);
  if (c) {
    sim::ClusterOptions o = (*c)->options();
    auto st = (*c)->down();
    if (!st) {
      std::fprintf(stderr, "meshsim: down: %s\n", st.error().describe().c_str());
      return 1;
    }
    std::printf("cluster %s is down (logs in %s/logs)\n", a.prefix.c_str(), dir.c_str());
    return 0;
  }
  // No state.json (a run that crashed early): remove whatever carries the prefix.
  auto removed = sim::remove_leftovers(a.prefix, dir, /*keep_logs=*/true);
  if (!removed) {
    std::fprintf(stderr, "meshsim: down: %s\n", removed.error().describe().c_str());
    return 1;
  }
  for (const auto& line : *removed) progress(line);
  std::printf("cluster %s: %zu leftovers removed\n", a.prefix.c_str(), removed->size());
  return 0;
}

int cmd_exec(const Args& a) {
  if (a.positional.size() != 1 || a.rest.empty()) {
    return usage_error("exec NAMESPACE/POD -- CMD [ARGS...]");
  }
  auto c = sim::Cluster::attach(state_dir_of(a));
  if (!c) return usage_error(c.error().describe());
  const auto& pod = a.positional[0];
  const auto* p = (*c)->plan().find_pod(pod);
  if (!p) return usage_error("no pod " + pod + " in cluster " + a.prefix);
  // Cgroup first, then the network namespace, then exec: the command is that pod's process.
  auto procs = (*c)->pod_cgroup(pod) / "cgroup.procs";
  int fd = ::open(procs.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0 || ::write(fd, "0", 1) != 1) {
    std::fprintf(stderr, "meshsim: join cgroup %s: %s\n", procs.c_str(), std::strerror(errno));
    return 1;
  }
  ::close(fd);
  auto ns = sim::netns_path(p->netns);
  int nfd = ::open(ns.c_str(), O_RDONLY | O_CLOEXEC);
  if (nfd < 0 || ::setns(nfd, CLONE_NEWNET) != 0) {
    std::fprintf(stderr, "meshsim: enter netns %s: %s\n", ns.c_str(), std::strerror(errno));
    return 1;
  }
  ::close(nfd);
  ::setenv("POD_NAME", p->name.c_str(), 1);
  ::setenv("POD_NAMESPACE", p->namespace_.c_str(), 1);
  ::setenv("POD_IP", p->ip.c_str(), 1);
  ::setenv("NODE_NAME", p->node.c_str(), 1);
  std::vector<char*> argv;
  for (const auto& s : a.rest) argv.push_back(const_cast<char*>(s.c_str()));
  argv.push_back(nullptr);
  ::execvp(argv[0], argv.data());
  std::fprintf(stderr, "meshsim: exec %s: %s\n", argv[0], std::strerror(errno));
  return 127;
}

int cmd_label(const Args& a) {
  if (a.positional.size() != 2) return usage_error("label-namespace NAMESPACE KEY=VALUE|KEY-");
  auto edit = sim::parse_label_edit(a.positional[1]);
  if (!edit) return usage_error(edit.error().describe());
  auto c = sim::Cluster::attach(state_dir_of(a));
  if (!c) return usage_error(c.error().describe());
  auto st = (*c)->label_namespace(a.positional[0], edit->first, edit->second);
  if (!st) {
    std::fprintf(stderr, "meshsim: %s\n", st.error().describe().c_str());
    return 1;
  }
  std::printf("namespace %s: %s\n", a.positional[0].c_str(), a.positional[1].c_str());
  return 0;
}

int cmd_status(const Args& a) {
  auto c = sim::Cluster::attach(state_dir_of(a));
  if (!c) {
    std::printf("cluster %s: not running (%s)\n", a.prefix.c_str(), c.error().describe().c_str());
    return 3;
  }
  const auto& plan = (*c)->plan();
  std::printf("cluster %s: meshd %s (netns %s), mesh %s, manifests %s\n", plan.prefix.c_str(),
              (*c)->meshd_address().c_str(), plan.fabric_netns.c_str(),
              (*c)->options().mesh ? "on" : "off", (*c)->options().manifests.c_str());
  for (const auto& n : plan.nodes) {
    std::printf("node %s: %s netns %s, %zu pods\n", n.name.c_str(), n.ip.c_str(), n.netns.c_str(),
                n.pods.size());
  }
  print_pods(plan);
  std::printf("\n%-44s %-8s %-6s %s\n", "PROCESS", "PID", "STATE", "LOG");
  int dead = 0;
  for (const auto& p : (*c)->processes()) {
    dead += p.alive ? 0 : 1;
    std::printf("%-44s %-8d %-6s %s\n", p.name.c_str(), p.pid, p.alive ? "up" : "DEAD",
                p.log.c_str());
  }
  return dead == 0 ? 0 : 1;
}

int cmd_daemon(const Args& a) {
  if (a.positional.size() != 2 || (a.positional[1] != "ztunnel" && a.positional[1] != "agent")) {
    return usage_error(a.command + " NODE ztunnel|agent");
  }
  auto c = sim::Cluster::attach(state_dir_of(a));
  if (!c) return usage_error(c.error().describe());
  auto d = a.positional[1] == "ztunnel" ? sim::NodeDaemon::kZtunnel : sim::NodeDaemon::kAgent;
  zt::Status st;
  if (a.command == "start") {
    st = (*c)->start(a.positional[0], d);
  } else {
    st = (*c)->stop(a.positional[0], d, a.command == "kill" ? SIGKILL : SIGTERM);
  }
  if (!st) {
    std::fprintf(stderr, "meshsim: %s\n", st.error().describe().c_str());
    return 1;
  }
  std::printf("%s %s: %s\n", a.positional[0].c_str(), a.positional[1].c_str(),
              a.command == "start" ? "ready" : "stopped");
  return 0;
}

int cmd_pause() {
  // A pod's sandbox process: holds the pod's cgroup (and, as in Kubernetes, would hold its
  // namespaces) until it is killed.
  for (int s : {SIGINT, SIGHUP}) ::signal(s, SIG_IGN);
  for (;;) ::pause();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage_error("no command");
  Args a;
  a.command = argv[1];
  if (a.command == "--help" || a.command == "-h" || a.command == "help") {
    std::fputs(kHelp, stdout);
    return 0;
  }
  if (a.command == "pause") return cmd_pause();
  for (int i = 2; i < argc; ++i) {
    std::string s = argv[i];
    if (s == "--") {
      for (++i; i < argc; ++i) a.rest.push_back(argv[i]);
      break;
    }
    auto eq = s.find('=');
    std::string name = s, inline_value;
    bool has_inline = false;
    if (s.rfind("--", 0) == 0 && eq != std::string::npos) {
      name = s.substr(0, eq);
      inline_value = s.substr(eq + 1);
      has_inline = true;
    }
    auto value = [&]() -> std::string {
      if (has_inline) return inline_value;
      if (i + 1 >= argc) {
        std::fprintf(stderr, "meshsim: %s needs a value\n", name.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (name == "--help" || name == "-h") {
      std::fputs(kHelp, stdout);
      return 0;
    } else if (name == "--prefix") {
      a.prefix = value();
      a.prefix_set = true;
    } else if (name == "--keep") {
      a.keep = true;
    } else if (name == "--state-dir") {
      a.state_dir = value();
    } else if (name == "--manifests") {
      a.manifests = value();
    } else if (name == "--bin-dir") {
      a.bin_dir = value();
    } else if (name == "--log-level") {
      a.log_level = value();
    } else if (name == "--timeout") {
      a.timeout = std::atoi(value().c_str());
      if (a.timeout <= 0) return usage_error("--timeout must be a positive number of seconds");
    } else if (name == "--node") {
      a.nodes.push_back(value());
    } else if (name == "--no-mesh") {
      a.mesh = false;
    } else if (s.rfind("--", 0) == 0) {
      return usage_error("unknown flag " + s);
    } else {
      a.positional.push_back(s);
    }
  }
  if (a.command == "demo" && !a.prefix_set) a.prefix = "zdemo";
  if (auto ok = sim::validate_prefix(a.prefix); !ok) return usage_error(ok.error().describe());
  if (a.command == "demo") {
    if (a.manifests.empty()) return usage_error("demo needs --manifests DIR (sim/examples/demo)");
    return sim::run_demo(
        {.manifests = a.manifests, .prefix = a.prefix, .bin_dir = a.bin_dir, .keep = a.keep},
        std::cout);
  }
  if (a.command == "up") return cmd_up(a);
  if (a.command == "down") return cmd_down(a);
  if (a.command == "exec") return cmd_exec(a);
  if (a.command == "label-namespace") return cmd_label(a);
  if (a.command == "status") return cmd_status(a);
  if (a.command == "start" || a.command == "stop" || a.command == "kill") return cmd_daemon(a);
  return usage_error("unknown command " + a.command);
}
