#include "bench/common/procfs.h"

#include <sys/utsname.h>

#include <cstdlib>
#include <ctime>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <unistd.h>

#include "sim/host.h"

namespace zt::bench {
namespace fs = std::filesystem;

std::string read_text_file(const fs::path& path) {
  std::ifstream in(path);
  if (!in) return {};
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

namespace {
// utime and stime of /proc/<pid>/stat, seconds; nullopt when the process is gone.
std::optional<std::pair<double, double>> stat_times(pid_t pid) {
  if (pid <= 0) return std::nullopt;
  const std::string stat = read_text_file(fmt::format("/proc/{}/stat", pid));
  // "pid (comm) state ppid ...": comm may hold spaces, so fields are counted after the last ')'.
  auto close = stat.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream in(stat.substr(close + 1));
  std::string field;
  double utime = 0, stime = 0;
  for (int f = 3; f <= 15; ++f) {  // state is field 3; utime 14, stime 15
    if (!(in >> field)) return std::nullopt;
    if (f == 3 && (field == "Z" || field == "X")) return std::nullopt;
    if (f == 14) utime = std::strtod(field.c_str(), nullptr);
    if (f == 15) stime = std::strtod(field.c_str(), nullptr);
  }
  const double hz = static_cast<double>(::sysconf(_SC_CLK_TCK));
  return std::pair{utime / hz, stime / hz};
}
}  // namespace

std::optional<double> process_cpu_seconds(pid_t pid) {
  auto t = stat_times(pid);
  if (!t) return std::nullopt;
  return t->first + t->second;
}

std::optional<ProcessCpu> process_cpu(pid_t pid) {
  auto t = stat_times(pid);
  if (!t) return std::nullopt;
  ProcessCpu cpu{t->first, t->second, 0};
  std::error_code ec;
  for (fs::directory_iterator it(fmt::format("/proc/{}/task", pid), ec), end; !ec && it != end;
       it.increment(ec)) {
    std::istringstream st(read_text_file(it->path() / "status"));
    std::string line;
    while (std::getline(st, line)) {
      if (line.starts_with("voluntary_ctxt_switches:") ||
          line.starts_with("nonvoluntary_ctxt_switches:")) {
        cpu.switches += std::strtoull(line.c_str() + line.find(':') + 1, nullptr, 10);
      }
    }
  }
  return cpu;
}

std::optional<uint64_t> process_rss_bytes(pid_t pid) {
  if (pid <= 0) return std::nullopt;
  std::istringstream in(read_text_file(fmt::format("/proc/{}/status", pid)));
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with("VmRSS:")) {
      std::istringstream ls(line.substr(6));
      uint64_t kb = 0;
      ls >> kb;
      return kb * 1024;
    }
  }
  return std::nullopt;
}

namespace {
// "Key:   123 kB" lines of a /proc file -> bytes of each wanted key.
std::optional<uint64_t> kb_field(const std::string& text, std::string_view key) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with(key) && line.size() > key.size() && line[key.size()] == ':') {
      std::istringstream ls(line.substr(key.size() + 1));
      uint64_t kb = 0;
      if (ls >> kb) return kb * 1024;
    }
  }
  return std::nullopt;
}
}  // namespace

std::optional<ProcessMemory> process_memory(pid_t pid) {
  if (pid <= 0) return std::nullopt;
  auto status = read_text_file(fmt::format("/proc/{}/status", pid));
  auto rss = kb_field(status, "VmRSS");
  if (!rss) return std::nullopt;
  ProcessMemory m;
  m.rss = *rss;
  m.anon = kb_field(status, "RssAnon").value_or(0);
  m.pss = kb_field(read_text_file(fmt::format("/proc/{}/smaps_rollup", pid)), "Pss").value_or(0);
  return m;
}

std::optional<uint64_t> cgroup_memory_bytes(const fs::path& cgroup) {
  if (cgroup.empty()) return std::nullopt;
  const std::string text = read_text_file(cgroup / "memory.current");
  if (text.empty()) return std::nullopt;
  return std::strtoull(text.c_str(), nullptr, 10);
}

std::optional<CgroupMemory> cgroup_memory(const fs::path& cgroup) {
  if (cgroup.empty()) return std::nullopt;
  if (auto current = cgroup_memory_bytes(cgroup)) return CgroupMemory{*current, "memory.current"};
  std::error_code ec;
  if (!fs::exists(cgroup / "cgroup.procs", ec)) return std::nullopt;
  std::istringstream in(read_text_file(cgroup / "cgroup.procs"));
  CgroupMemory m{0, "sum of VmRSS of cgroup.procs"};
  pid_t pid = 0;
  while (in >> pid) m.bytes += process_rss_bytes(pid).value_or(0);
  return m;
}

std::optional<double> cgroup_cpu_seconds(const fs::path& cgroup) {
  auto cpu = cgroup_cpu(cgroup);
  if (!cpu) return std::nullopt;
  return cpu->usage_s;
}

std::optional<CgroupCpu> cgroup_cpu(const fs::path& cgroup) {
  if (cgroup.empty()) return std::nullopt;
  std::istringstream in(read_text_file(cgroup / "cpu.stat"));
  std::string key;
  double value = 0;
  CgroupCpu cpu;
  bool usage = false;
  while (in >> key >> value) {
    if (key == "usage_usec") {
      cpu.usage_s = value / 1e6;
      usage = true;
    } else if (key == "user_usec") {
      cpu.user_s = value / 1e6;
    } else if (key == "system_usec") {
      cpu.system_s = value / 1e6;
    }
  }
  if (!usage) return std::nullopt;
  return cpu;
}

std::optional<MachineCpu> parse_machine_cpu(std::string_view proc_stat, double ticks_per_second) {
  std::istringstream in{std::string(proc_stat.substr(0, proc_stat.find('\n')))};
  std::string label;
  if (!(in >> label) || label != "cpu" || ticks_per_second <= 0) return std::nullopt;
  // user nice system idle iowait irq softirq steal guest guest_nice (guest time is already
  // counted in user and nice).
  double v[8] = {};
  for (double& x : v) {
    if (!(in >> x)) return std::nullopt;
  }
  MachineCpu m;
  m.busy = (v[0] + v[1] + v[2] + v[5] + v[6]) / ticks_per_second;
  m.softirq = v[6] / ticks_per_second;
  m.steal = v[7] / ticks_per_second;
  m.total = m.busy + m.steal + (v[3] + v[4]) / ticks_per_second;
  return m;
}

std::optional<MachineCpu> machine_cpu() {
  return parse_machine_cpu(read_text_file("/proc/stat"),
                           static_cast<double>(::sysconf(_SC_CLK_TCK)));
}

namespace {

std::string os_release_field(const std::string& key) {
  std::istringstream in(read_text_file("/etc/os-release"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with(key + "=")) {
      std::string v = line.substr(key.size() + 1);
      if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
      return v;
    }
  }
  return {};
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  size_t i = 0;
  while (i < s.size() && s[i] == ' ') ++i;
  return s.substr(i);
}

}  // namespace

MachineInfo machine_info() {
  MachineInfo m;
  std::istringstream in(read_text_file("/proc/cpuinfo"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with("model name") && m.cpu_model.empty()) {
      auto colon = line.find(':');
      if (colon != std::string::npos) m.cpu_model = trim(line.substr(colon + 1));
    }
  }
  if (m.cpu_model.empty()) m.cpu_model = "unknown";
  m.cores = static_cast<int>(::sysconf(_SC_NPROCESSORS_ONLN));
  utsname u{};
  if (::uname(&u) == 0) {
    m.kernel = fmt::format("{} {}", u.sysname, u.release);
    m.hostname = u.nodename;
  }
  m.debian_version = trim(read_text_file("/etc/debian_version"));
  m.os_pretty_name = os_release_field("PRETTY_NAME");
  std::istringstream mem(read_text_file("/proc/meminfo"));
  while (std::getline(mem, line)) {
    if (line.starts_with("MemTotal:")) {
      m.memory_total_bytes = std::strtoull(line.c_str() + 9, nullptr, 10) * 1024;
    }
  }
  return m;
}

std::string load_average() {
  std::istringstream in(read_text_file("/proc/loadavg"));
  std::string a, b, c;
  in >> a >> b >> c;
  return fmt::format("{} {} {}", a, b, c);
}

bool in_path(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::istringstream in(path ? path : "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin");
  std::string dir;
  while (std::getline(in, dir, ':')) {
    if (dir.empty()) continue;
    if (::access((fs::path(dir) / name).c_str(), X_OK) == 0) return true;
  }
  return false;
}

std::string tool_version(const std::vector<std::string>& argv) {
  if (argv.empty() || (argv[0].find('/') == std::string::npos && !in_path(argv[0]))) {
    return "not installed";
  }
  sim::SpawnSpec spec;
  spec.argv = argv;
  spec.new_session = false;
  auto r = sim::run_captured(spec, std::chrono::seconds(10));
  if (!r) return "unknown (" + r.error().describe() + ")";
  std::string text = r->out.empty() ? r->err : r->out;
  auto nl = text.find('\n');
  return trim(nl == std::string::npos ? text : text.substr(0, nl));
}

std::string utc_now() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string utc_stamp() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y%m%d-%H%M%S", &tm);
  return buf;
}

}  // namespace zt::bench
