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

TEST(BenchWakeup, TimerLatenessCountsEveryWakeupOfItsDuration) {
  auto t = measure_timer_lateness(std::chrono::milliseconds(1), std::chrono::milliseconds(200));
  ASSERT_TRUE(t.has_value()) << t.error().describe();
  EXPECT_EQ(t->period, std::chrono::milliseconds(1));
  // At most one wake-up per period (a late one takes the time of several).
  EXPECT_GE(t->wakeups, 1);
  EXPECT_LE(t->wakeups, 201);
  EXPECT_LE(t->late_over_1ms, t->wakeups);
  EXPECT_LE(t->p50_us, t->p99_us);
  EXPECT_LE(t->p99_us, t->max_us);
  EXPECT_DOUBLE_EQ(t->late_fraction(), static_cast<double>(t->late_over_1ms) / t->wakeups);
}

TEST(BenchWakeup, TimerLatenessSeesAThreadThatWasNotRunning) {
  // A child stops this process for 30 ms in the middle of the probe: the wake-up due then comes
  // at least about 29 ms late.
  const pid_t parent = ::getpid();
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::usleep(50000);
    ::kill(parent, SIGSTOP);
    ::usleep(30000);
    ::kill(parent, SIGCONT);
    ::_exit(0);
  }
  auto t = measure_timer_lateness(std::chrono::milliseconds(1), std::chrono::milliseconds(300));
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(t.has_value()) << t.error().describe();
  EXPECT_GE(t->late_over_1ms, 1);
  EXPECT_GE(t->max_us, 25000);
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
