// What the benchmarks read from /proc and cgroupfs: a process's CPU time and resident memory, the
// machine's CPU time (/proc/stat, softirq included), a cgroup's memory.current, and the facts
// about the machine the report states (CPU model, cores, kernel, Debian version, tool versions).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace zt::bench {

// utime + stime of a whole process (every thread), seconds; nullopt when it is gone.
std::optional<double> process_cpu_seconds(pid_t pid);
// The same split: user (utime) and kernel (stime: system calls, and the softirq work the kernel
// does in the process's context) time, and how often its threads were switched in, voluntary
// (each sleep in epoll_wait or a lock that ends in a wake-up) and involuntary (preempted)
// context switches summed over /proc/<pid>/task/*/status (threads that exited are no longer
// counted there, while their CPU time stays in utime and stime). nullopt when it is gone.
struct ProcessCpu {
  double user_s = 0, system_s = 0;
  uint64_t switches = 0;
};
std::optional<ProcessCpu> process_cpu(pid_t pid);
// VmRSS of a process, bytes; nullopt when it is gone.
std::optional<uint64_t> process_rss_bytes(pid_t pid);
// A process's resident memory split the way it matters for a per-node vs per-pod comparison:
// rss (VmRSS: everything resident, shared library pages counted in full), anon (RssAnon: the
// process's own heap, stacks and buffers), pss (Pss from smaps_rollup: shared pages divided among
// the processes mapping them). nullopt when the process is gone.
struct ProcessMemory {
  uint64_t rss = 0, anon = 0, pss = 0;
};
std::optional<ProcessMemory> process_memory(pid_t pid);
// memory.current of a cgroup v2 directory, bytes; nullopt when absent (no memory controller).
std::optional<uint64_t> cgroup_memory_bytes(const std::filesystem::path& cgroup);

// A cgroup's memory: memory.current when the memory controller is enabled on the cgroup v2
// hierarchy, otherwise (hybrid hosts, where memory is a v1 controller) the sum of VmRSS of the
// processes in its cgroup.procs. nullopt when the cgroup does not exist.
struct CgroupMemory {
  uint64_t bytes = 0;
  std::string source;  // "memory.current" or "sum of VmRSS of cgroup.procs"
};
std::optional<CgroupMemory> cgroup_memory(const std::filesystem::path& cgroup);

// usage_usec of a cgroup v2 directory's cpu.stat (every process below it, exact: from the
// scheduler's runtime, not sampled), seconds; nullopt when absent.
std::optional<double> cgroup_cpu_seconds(const std::filesystem::path& cgroup);
// All of that cpu.stat: usage_usec and its user_usec / system_usec split, seconds.
struct CgroupCpu {
  double usage_s = 0, user_s = 0, system_s = 0;
};
std::optional<CgroupCpu> cgroup_cpu(const std::filesystem::path& cgroup);

// The machine's CPU time from the "cpu" line of /proc/stat, seconds summed over all CPUs.
struct MachineCpu {
  double busy = 0;     // the guest's own work: user nice system irq softirq
  double softirq = 0;  // softirq alone (the packet path of every veth and the bridge)
  // Time a vCPU had work but the hypervisor ran something else instead: no work of this machine,
  // but every request in flight on that vCPU waited through it.
  double steal = 0;
  double total = 0;  // busy + steal + idle + iowait
};
std::optional<MachineCpu> machine_cpu();
// The same from the text of /proc/stat, with `ticks_per_second` (sysconf(_SC_CLK_TCK)).
std::optional<MachineCpu> parse_machine_cpu(std::string_view proc_stat, double ticks_per_second);

struct MachineInfo {
  std::string cpu_model;
  int cores = 0;
  std::string kernel;          // uname -sr
  std::string debian_version;  // /etc/debian_version
  std::string os_pretty_name;  // PRETTY_NAME of /etc/os-release
  uint64_t memory_total_bytes = 0;
  std::string hostname;
};
MachineInfo machine_info();

// "0.52 0.61 0.70" from /proc/loadavg.
std::string load_average();
// The first line of `argv`'s output (stdout, else stderr), or "not installed" when it cannot run.
std::string tool_version(const std::vector<std::string>& argv);
// True when `name` is an executable in PATH.
bool in_path(const std::string& name);
std::string utc_now();    // 2026-11-26T08:30:00Z
std::string utc_stamp();  // 20261126-083000 (directory names)
std::string read_text_file(const std::filesystem::path& path);

}  // namespace zt::bench
