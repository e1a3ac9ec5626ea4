// The simulator's contact with the machine: child processes placed in a cgroup and a network
// namespace, the `ip` tool, sysctls inside a namespace, cgroup trees and bpffs pins.
//
// Placing a process in a pod: the child joins the cgroup first (writes itself to cgroup.procs),
// then setns(CLONE_NEWNET) into the pod's namespace, then execs. Never `ip netns exec`: it
// remounts /sys, which hides the cgroup filesystem from the process (reference/ebpf-prototype.md
// §5.5). Everything between fork and exec is async-signal-safe; the strings are built before.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "common/base/result.h"
#include "common/base/unique_fd.h"
#include "common/netns/netns.h"

namespace zt::sim {

struct SpawnSpec {
  std::vector<std::string> argv;  // argv[0]: absolute path, or a name looked up in PATH
  std::vector<std::string> env;   // "K=V" added to (or replacing in) this process's environment
  std::filesystem::path cgroup;   // cgroup directory to join; empty = stay
  std::string netns;              // netns path (/var/run/netns/X); empty = stay
  std::filesystem::path log;      // stdout+stderr appended here; empty = inherit
  bool new_session = true;        // setsid(): not killed with the caller's terminal
  // SIGKILL when the caller dies (PR_SET_PDEATHSIG, set before exec): a command whose caller was
  // killed would otherwise run on unseen, e.g. an `ip netns add` racing the next run for its name.
  bool die_with_caller = false;
};

// Starts the process; returns its pid once exec succeeded (an exec or set-up failure in the child
// is reported here with the step that failed).
Result<pid_t> spawn(const SpawnSpec& spec);

struct ExecResult {
  int exit_code = -1;  // 128+signal when killed
  std::string out, err;
  bool timed_out = false;
};

// Runs to completion with stdout/stderr captured (each up to 16 MiB); kills the process group
// after `timeout`. The command dies with the caller (`die_with_caller`).
Result<ExecResult> run_captured(SpawnSpec spec, std::chrono::milliseconds timeout);

// Runs `ip <args>` (in the caller's namespaces; use "-n NAME" to target one). Fails with the
// command line and ip's stderr.
Status ip(const std::vector<std::string>& args);

// Writes a sysctl (e.g. "net/ipv4/ip_forward") inside the named netns.
Status write_sysctl(const std::string& netns_name, const std::string& key,
                    const std::string& value);

// The cgroup v2 mount the simulator uses: /sys/fs/cgroup/unified when it is cgroup2 (hybrid
// mode), else /sys/fs/cgroup when that is cgroup2.
Result<std::filesystem::path> cgroup2_root();

// Kills every process in the cgroup tree (cgroup.kill where the kernel has it, else SIGKILL to
// each pid in every cgroup.procs), waits up to `timeout` for it to empty and removes the
// directories deepest first. Returns the number of processes that were running. A missing
// directory is success.
Result<size_t> destroy_cgroup_tree(const std::filesystem::path& dir,
                                   std::chrono::milliseconds timeout = std::chrono::seconds(10));

// Pids in `dir`'s cgroup.procs (not its descendants).
std::vector<pid_t> cgroup_pids(const std::filesystem::path& dir);

// The cgroup v2 path ("/zsim/node-0/ztunnel") of a process, from /proc/<pid>/cgroup; nullopt if
// the process is gone.
std::optional<std::string> process_cgroup(pid_t pid);

// Named network namespaces (/var/run/netns) whose names start with `name_prefix`.
std::vector<std::string> list_netns(const std::string& name_prefix);
Status delete_netns(const std::string& name);
inline std::string netns_path(const std::string& name) { return "/var/run/netns/" + name; }

// True when /sys/fs/bpf is a mounted bpffs.
bool bpffs_mounted();

// Connects to ip:port (IPv4) from inside `ns`, from the caller's cgroup (so no pod capture
// applies): the connected socket, or an error naming the address (refused, timed out).
Result<UniqueFd> connect_in(const netns::Netns& ns, const std::string& ip, uint16_t port,
                            std::chrono::milliseconds timeout);

// GET http://ip:port<path> (HTTP/1.0) from inside `ns`, as connect_in: the status code, or an
// error naming what failed (connect, send, no answer, not HTTP). `timeout` bounds the whole call.
Result<int> http_status_in(const netns::Netns& ns, const std::string& ip, uint16_t port,
                           const std::string& path, std::chrono::milliseconds timeout);

// "\n--- last lines of <log> ---\n<the last `lines` lines>", for error messages; "" when the
// file cannot be read.
std::string log_tail(const std::filesystem::path& log, int lines = 15);

// Directory of the running executable.
std::filesystem::path self_dir();

// Sends `sig` to a child and waits up to `timeout` for it to exit (reaping it when it is our
// child). Returns true when it is gone.
bool stop_process(pid_t pid, int sig, std::chrono::milliseconds timeout);
bool process_alive(pid_t pid);

}  // namespace zt::sim
