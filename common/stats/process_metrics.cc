#include "common/stats/process_metrics.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <limits>
#include <sstream>
#include <string>

namespace zt::stats {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

double open_fds() {
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return kNaN;
  double n = 0;
  while (const dirent* e = readdir(dir)) {
    if (e->d_name[0] != '.') ++n;
  }
  closedir(dir);
  return n - 1;  // the descriptor opendir() itself holds
}

double max_fds() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return kNaN;
  if (rl.rlim_cur == RLIM_INFINITY) return std::numeric_limits<double>::infinity();
  return static_cast<double>(rl.rlim_cur);
}

// Field `index` (0: size, 1: resident) of /proc/self/statm, in bytes.
double statm_bytes(int index) {
  std::ifstream in("/proc/self/statm");
  double pages[2] = {0, 0};
  if (!(in >> pages[0] >> pages[1])) return kNaN;
  return pages[index] * static_cast<double>(sysconf(_SC_PAGESIZE));
}

double cpu_seconds() {
  rusage ru{};
  if (getrusage(RUSAGE_SELF, &ru) != 0) return kNaN;
  auto secs = [](const timeval& tv) {
    return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6;
  };
  return secs(ru.ru_utime) + secs(ru.ru_stime);
}

// Boot time (/proc/stat btime) + the process start in clock ticks (/proc/self/stat field 22).
double start_time_seconds() {
  std::ifstream stat("/proc/stat");
  std::string line;
  double btime = kNaN;
  while (std::getline(stat, line)) {
    if (line.rfind("btime ", 0) == 0) {
      btime = std::strtod(line.c_str() + 6, nullptr);
      break;
    }
  }
  std::ifstream self("/proc/self/stat");
  std::string content((std::istreambuf_iterator<char>(self)), std::istreambuf_iterator<char>());
  // The command name (field 2) may contain spaces and parentheses; fields resume after the
  // last ')'. Field 3 is the first one after it, so starttime (22) is the 20th token.
  auto close = content.rfind(')');
  if (std::isnan(btime) || close == std::string::npos) return kNaN;
  std::istringstream fields(content.substr(close + 1));
  std::string token;
  for (int i = 3; i <= 22; ++i) {
    if (!(fields >> token)) return kNaN;
  }
  double ticks = std::strtod(token.c_str(), nullptr);
  return btime + ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
}

}  // namespace

void register_process_metrics(Registry& registry) {
  registry.callback_gauge("process_open_fds", "Number of open file descriptors.", open_fds);
  registry.callback_gauge("process_max_fds", "Maximum number of open file descriptors.", max_fds);
  registry.callback_gauge("process_resident_memory_bytes", "Resident memory size in bytes.",
                          [] { return statm_bytes(1); });
  registry.callback_gauge("process_virtual_memory_bytes", "Virtual memory size in bytes.",
                          [] { return statm_bytes(0); });
  registry
      .callback_counter_family("process_cpu_seconds",
                               "Total user and system CPU time spent in seconds.")
      .set({}, cpu_seconds);
  // Computed once: it does not change.
  double start = start_time_seconds();
  registry.callback_gauge("process_start_time_seconds",
                          "Start time of the process since unix epoch in seconds.",
                          [start] { return start; });
}

}  // namespace zt::stats
