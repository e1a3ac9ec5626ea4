// The wake-up cost probe: two real processes handing a byte back and forth over pipes.
#include "bench/common/wakeup.h"

#include <sys/wait.h>

#include <cerrno>
#include <string>

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace zt::bench
