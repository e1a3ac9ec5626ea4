// The wake-up cost probe: two real processes handing a byte back and forth over pipes.
#include "bench/common/wakeup.h"

#include <sys/wait.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <string>

#include <gtest/gtest.h>
#include <unistd.h>

namespace zt::bench {
namespace {

// Every child the probe forked has been reaped: this process has none left.
void expect_no_children() {
  errno = 0;
  EXPECT_EQ(::waitpid(-1, nullptr, WNOHANG), -1);
  EXPECT_EQ(errno, ECHILD);
}

TEST(BenchWakeup, TwoProcessesFinishEveryRoundTripAndReportTheirCpu) {
  auto cost = measure_wakeup_cost(2000, std::nullopt);
  ASSERT_TRUE(cost.has_value()) << cost.error().describe();
  EXPECT_EQ(cost->round_trips, 2000);
  EXPECT_FALSE(cost->cpu.has_value());
  // Each round trip is two system calls per process at least: some CPU and some time pass.
  EXPECT_GT(cost->cpu_s, 0);
  EXPECT_GT(cost->wall_s, 0);
  EXPECT_DOUBLE_EQ(cost->cpu_us_per_wakeup(), cost->cpu_s * 1e6 / 4000);
  EXPECT_DOUBLE_EQ(cost->wall_us_per_round_trip(), cost->wall_s * 1e6 / 2000);
  expect_no_children();
}

TEST(BenchWakeup, BothProcessesCanBePinnedToOneCpu) {
  const auto cpu = first_allowed_cpu();
  ASSERT_TRUE(cpu.has_value());
  auto cost = measure_wakeup_cost(2000, *cpu);
  ASSERT_TRUE(cost.has_value()) << cost.error().describe();
  EXPECT_EQ(cost->cpu, cpu);
  EXPECT_GT(cost->cpu_s, 0);
  expect_no_children();
}

TEST(BenchWakeup, ACpuThatCannotBeUsedIsAnErrorAndLeavesNoProcess) {
  // The highest CPU a cpu_set_t can name: not one this machine has.
  auto cost = measure_wakeup_cost(100, CPU_SETSIZE - 1);
  ASSERT_FALSE(cost.has_value());
  EXPECT_NE(cost.error().describe().find("cannot pin to CPU"), std::string::npos)
      << cost.error().describe();
  expect_no_children();
}

TEST(BenchWakeup, ProcessesThatDoNotFinishInTimeAreKilledAndReaped) {
  // Ten million round trips take far longer than 50 ms anywhere.
  auto cost = measure_wakeup_cost(10'000'000, std::nullopt, 0.05);
  ASSERT_FALSE(cost.has_value());
  EXPECT_NE(cost.error().describe().find("did not finish within"), std::string::npos)
      << cost.error().describe();
  expect_no_children();
}

TEST(BenchWakeup, NoRoundTripsIsAnError) {
  EXPECT_FALSE(measure_wakeup_cost(0, std::nullopt).has_value());
  EXPECT_FALSE(measure_wakeup_cost(10, -1).has_value());
}

TEST(BenchWakeup, TimerLatenessSummarizesTheWakeupsOfItsDuration) {
  auto t = measure_timer_lateness(std::chrono::milliseconds(1), std::chrono::milliseconds(200));
  ASSERT_TRUE(t.has_value()) << t.error().describe();
  EXPECT_EQ(t->period, std::chrono::milliseconds(1));
  // At most one wake-up per period (a late one takes the time of several), at least one.
  EXPECT_GE(t->wakeups, 1);
  EXPECT_LE(t->wakeups, 201);
  EXPECT_LE(t->late_over_1ms, t->late_over_200us);
  EXPECT_LE(t->late_over_200us, t->wakeups);
  EXPECT_LE(t->p50_us, t->p99_us);
  EXPECT_LE(t->p99_us, t->max_us);
  EXPECT_DOUBLE_EQ(t->late_fraction(), static_cast<double>(t->late_over_1ms) / t->wakeups);
}

TEST(BenchWakeup, TimerLatenessSeesAThreadThatWasNotRunning) {
  // The probe runs in a child, which this test stops for 30 ms once the probe has started: the
  // wake-up due then comes about 30 ms late. The child reports through a pipe.
  int started[2], report[2];
  ASSERT_EQ(::pipe(started), 0);
  ASSERT_EQ(::pipe(report), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(started[0]);
    ::close(report[0]);
    const char go = 'g';
    if (::write(started[1], &go, 1) != 1) ::_exit(1);
    auto t = measure_timer_lateness(std::chrono::milliseconds(1), std::chrono::seconds(1));
    const double out[2] = {t ? t->max_us : -1.0, t ? static_cast<double>(t->late_over_1ms) : -1};
    ::_exit(::write(report[1], out, sizeof(out)) == sizeof(out) ? 0 : 1);
  }
  ::close(started[1]);
  ::close(report[1]);
  char go = 0;
  ASSERT_EQ(::read(started[0], &go, 1), 1);
  ::usleep(100000);
  ::kill(child, SIGSTOP);
  ::usleep(30000);
  ::kill(child, SIGCONT);
  double out[2] = {0, 0};
  const ssize_t n = ::read(report[0], out, sizeof(out));
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ::close(started[0]);
  ::close(report[0]);
  ASSERT_EQ(n, static_cast<ssize_t>(sizeof(out)));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_GE(out[0], 25000) << "longest lateness, us";
  EXPECT_GE(out[1], 1) << "wake-ups more than 1 ms late";
  expect_no_children();
}

TEST(BenchWakeup, TimerLatenessRejectsAPeriodOrDurationItCannotUse) {
  using std::chrono::microseconds;
  EXPECT_FALSE(measure_timer_lateness(microseconds(0), microseconds(1000)).has_value());
  EXPECT_FALSE(measure_timer_lateness(microseconds(-5), microseconds(1000)).has_value());
  EXPECT_FALSE(measure_timer_lateness(microseconds(1000), microseconds(999)).has_value());
}

}  // namespace
}  // namespace zt::bench
