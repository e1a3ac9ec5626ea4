#include "bench/common/wakeup.h"

#include <sys/resource.h>
#include <sys/wait.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <ctime>
#include <string>
#include <vector>

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <unistd.h>

namespace zt::bench {
namespace {

// What each child reports when its loop ends.
struct ChildReport {
  enum Stage : int { kDone = 0, kPin = 1, kLoop = 2 };
  int failed_at = kDone;
  int error = 0;  // errno of the failure
  double cpu_s = 0;
  double wall_s = 0;
};

double rusage_cpu_s() {
  struct rusage u {};
  ::getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

double monotonic_s() {
  struct timespec t {};
  ::clock_gettime(CLOCK_MONOTONIC, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) / 1e9;
}

bool write_byte(int fd, char c) {
  for (;;) {
    const ssize_t n = ::write(fd, &c, 1);
    if (n == 1) return true;
    if (n < 0 && errno == EINTR) continue;
    return false;
  }
}

bool read_byte(int fd, char& c) {
  for (;;) {
    const ssize_t n = ::read(fd, &c, 1);
    if (n == 1) return true;
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) errno = EPIPE;  // the other process is gone
    return false;
  }
}

[[noreturn]] void report_and_exit(int report_fd, ChildReport r, ChildReport::Stage failed_at) {
  r.failed_at = failed_at;
  r.error = failed_at == ChildReport::kDone ? 0 : errno;
  (void)!::write(report_fd, &r, sizeof(r));
  ::_exit(failed_at == ChildReport::kDone ? 0 : 1);
}

// The body of a child (after fork: system calls only, then _exit). The starter sends first,
// once the other has said it is ready (so neither loop counts the other's start).
[[noreturn]] void child(bool starter, int in, int out, int report_fd, int round_trips,
                        std::optional<int> pin_cpu) {
  ChildReport r;
  auto finish = [&](ChildReport::Stage failed_at) { report_and_exit(report_fd, r, failed_at); };
  if (pin_cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(*pin_cpu, &set);
    if (::sched_setaffinity(0, sizeof(set), &set) != 0) finish(ChildReport::kPin);
  }
  char c = 'r';
  if (!(starter ? read_byte(in, c) : write_byte(out, c))) finish(ChildReport::kLoop);
  const double cpu0 = rusage_cpu_s();
  const double wall0 = monotonic_s();
  for (int i = 0; i < round_trips; ++i) {
    const bool ok =
        starter ? write_byte(out, c) && read_byte(in, c) : read_byte(in, c) && write_byte(out, c);
    if (!ok) finish(ChildReport::kLoop);
  }
  r.cpu_s = rusage_cpu_s() - cpu0;
  r.wall_s = monotonic_s() - wall0;
  report_and_exit(report_fd, r, ChildReport::kDone);
}

}  // namespace

std::optional<int> first_allowed_cpu() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof(set), &set) != 0) return std::nullopt;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &set)) return cpu;
  }
  return std::nullopt;
}

Result<WakeupCost> measure_wakeup_cost(int round_trips, std::optional<int> pin_cpu,
                                       double timeout_s) {
  if (round_trips <= 0) return failf("wake-up cost: {} round trips (must be > 0)", round_trips);
  if (pin_cpu && (*pin_cpu < 0 || *pin_cpu >= CPU_SETSIZE)) {
    return failf("wake-up cost: no CPU {}", *pin_cpu);
  }
  // ping: first -> second, pong: second -> first, report: both -> us.
  int ping[2] = {-1, -1}, pong[2] = {-1, -1}, report[2] = {-1, -1};
  auto close_all = [&] {
    for (int* p : {ping, pong, report}) {
      for (int i = 0; i < 2; ++i) {
        if (p[i] >= 0) ::close(p[i]);
        p[i] = -1;
      }
    }
  };
  if (::pipe2(ping, O_CLOEXEC) != 0 || ::pipe2(pong, O_CLOEXEC) != 0 ||
      ::pipe2(report, O_CLOEXEC) != 0) {
    const int e = errno;
    close_all();
    return failf("wake-up cost: pipe: {}", std::strerror(e));
  }
  pid_t pids[2] = {-1, -1};
  for (int k = 0; k < 2; ++k) {
    pids[k] = ::fork();
    if (pids[k] < 0) {
      const int e = errno;
      close_all();
      if (k == 1) {
        ::kill(pids[0], SIGKILL);
        ::waitpid(pids[0], nullptr, 0);
      }
      return failf("wake-up cost: fork: {}", std::strerror(e));
    }
    if (pids[k] == 0) {
      // Each child keeps only its own ends, so when one is gone the other's read sees EOF and
      // its write fails (EPIPE: SIGPIPE is ignored here, it would kill the child unreported).
      struct sigaction ignore {};
      ignore.sa_handler = SIG_IGN;
      ::sigaction(SIGPIPE, &ignore, nullptr);
      ::close(report[0]);
      if (k == 0) {
        ::close(ping[0]);
        ::close(pong[1]);
        child(true, pong[0], ping[1], report[1], round_trips, pin_cpu);
      }
      ::close(ping[1]);
      ::close(pong[0]);
      child(false, ping[0], pong[1], report[1], round_trips, pin_cpu);
    }
  }
  // Only the children keep the pipes' ends: the report pipe ends (EOF) once both are gone.
  ::close(ping[0]);
  ::close(ping[1]);
  ::close(pong[0]);
  ::close(pong[1]);
  ::close(report[1]);
  ping[0] = ping[1] = pong[0] = pong[1] = report[1] = -1;

  ChildReport reports[2];
  int got = 0;
  size_t bytes = 0;
  std::string error;
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                            std::chrono::duration<double>(timeout_s));
  auto* buf = reinterpret_cast<char*>(reports);
  while (got < 2) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                          deadline - std::chrono::steady_clock::now())
                          .count();
    if (left <= 0) {
      error = fmt::format("the two processes did not finish within {} s", timeout_s);
      break;
    }
    struct pollfd p = {report[0], POLLIN, 0};
    const int n = ::poll(&p, 1, static_cast<int>(left));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) continue;  // the deadline is checked above
    const ssize_t r = ::read(report[0], buf + bytes, sizeof(reports) - bytes);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      error = "a process ended without a report";
      break;
    }
    bytes += static_cast<size_t>(r);
    got = static_cast<int>(bytes / sizeof(ChildReport));
  }
  if (got < 2) {
    for (pid_t pid : pids) ::kill(pid, SIGKILL);
  }
  for (pid_t pid : pids) {
    while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
    }
  }
  close_all();
  // A report that came says why, even when the other did not come: a pinning failure is the
  // cause, the other process then only saw its peer go.
  for (auto stage : {ChildReport::kPin, ChildReport::kLoop}) {
    for (int i = 0; i < got; ++i) {
      const ChildReport& r = reports[i];
      if (r.failed_at != stage) continue;
      if (stage == ChildReport::kPin) {
        return failf("wake-up cost: cannot pin to CPU {}: {}", pin_cpu.value_or(-1),
                     std::strerror(r.error));
      }
      return failf("wake-up cost: pipe: {}", std::strerror(r.error));
    }
  }
  if (!error.empty()) return failf("wake-up cost: {}", error);
  // Both loops span every round trip (each clock starts at the ready hand-over, whichever side
  // sees it first); the longer is the wall time.
  WakeupCost cost;
  cost.round_trips = round_trips;
  cost.cpu = pin_cpu;
  cost.cpu_s = reports[0].cpu_s + reports[1].cpu_s;
  cost.wall_s = std::max(reports[0].wall_s, reports[1].wall_s);
  return cost;
}

Result<TimerLateness> measure_timer_lateness(std::chrono::microseconds period,
                                             std::chrono::microseconds duration,
                                             const std::atomic<bool>* stop) {
  if (period.count() <= 0) {
    return failf("timer lateness: period {} us (must be > 0)", period.count());
  }
  if (duration < period) {
    return failf("timer lateness: duration {} us is shorter than one period ({} us)",
                 duration.count(), period.count());
  }
  const double period_s = static_cast<double>(period.count()) / 1e6;
  const struct timespec sleep_for = {static_cast<time_t>(period.count() / 1000000),
                                     static_cast<long>(period.count() % 1000000) * 1000};
  std::vector<double> late_us;
  late_us.reserve(static_cast<size_t>(duration / period) + 1);
  double before = monotonic_s();
  const double end = before + static_cast<double>(duration.count()) / 1e6;
  do {
    // A signal cuts a sleep short: that wake-up is early, not late, and counts as on time.
    ::nanosleep(&sleep_for, nullptr);
    const double after = monotonic_s();
    late_us.push_back(std::max(0.0, (after - before - period_s) * 1e6));
    before = after;
  } while (before < end && !(stop && stop->load()));
  TimerLateness t;
  t.period = period;
  t.wakeups = static_cast<int>(late_us.size());
  auto late_over = [&](double us) {
    return static_cast<int>(
        std::count_if(late_us.begin(), late_us.end(), [us](double x) { return x > us; }));
  };
  t.late_over_200us = late_over(200);
  t.late_over_1ms = late_over(1000);
  std::sort(late_us.begin(), late_us.end());
  // Nearest rank: the smallest value with at least a share q of the values at or below it.
  auto at = [&](double q) {
    const auto rank = static_cast<size_t>(std::ceil(q * static_cast<double>(late_us.size())));
    return late_us[std::max<size_t>(rank, 1) - 1];
  };
  t.p50_us = at(0.50);
  t.p99_us = at(0.99);
  t.max_us = late_us.back();
  return t;
}

}  // namespace zt::bench
