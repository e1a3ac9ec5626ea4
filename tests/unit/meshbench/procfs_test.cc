// What the benchmarks read from /proc and cpu.stat: a process's CPU split and context switches,
// a cgroup's CPU split.
#include "bench/common/procfs.h"

#include <sys/wait.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include <gtest/gtest.h>
#include <unistd.h>

namespace zt::bench {
namespace {

namespace fs = std::filesystem;

TEST(BenchProcfs, ProcessCpuCountsEveryThreadsContextSwitches) {
  auto before = process_cpu(::getpid());
  ASSERT_TRUE(before.has_value());
  // Two threads handing a turn back and forth 200 times each: a wait that blocks ends in a
  // context switch.
  std::mutex mu;
  std::condition_variable cv;
  int turn = 0;
  std::thread other([&] {
    for (int i = 0; i < 200; ++i) {
      std::unique_lock lock(mu);
      cv.wait(lock, [&] { return turn % 2 == 1; });
      ++turn;
      cv.notify_all();
    }
  });
  for (int i = 0; i < 200; ++i) {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return turn % 2 == 0; });
    ++turn;
    cv.notify_all();
  }
  // Counted while the thread still exists: an exited thread's switches leave /proc/<pid>/task.
  auto during = process_cpu(::getpid());
  other.join();
  ASSERT_TRUE(during.has_value());
  // Not every wait blocks (the turn may already have come), so at least half of them.
  EXPECT_GE(during->switches, before->switches + 100);
  EXPECT_GE(during->user_s, before->user_s);
  EXPECT_GE(during->system_s, before->system_s);
  // The total is the same reading as process_cpu_seconds (both from /proc/<pid>/stat).
  auto split = process_cpu(::getpid());
  auto total = process_cpu_seconds(::getpid());
  ASSERT_TRUE(split && total);
  EXPECT_NEAR(split->user_s + split->system_s, *total, 0.05);
}

TEST(BenchProcfs, ProcessCpuOfAProcessThatIsGoneIsNothing) {
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) ::_exit(0);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_FALSE(process_cpu(child).has_value());
  EXPECT_FALSE(process_cpu(0).has_value());
}

// A directory of its own, removed even when an assertion fails.
struct TempDir {
  fs::path path = fs::temp_directory_path() / ("procfs-test-" + std::to_string(::getpid()));
  TempDir() { fs::create_directories(path); }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

TEST(BenchProcfs, CgroupCpuReadsTheUserAndSystemSplit) {
  TempDir dir;
  {
    std::ofstream(dir.path / "cpu.stat") << "usage_usec 3000000\nuser_usec 1000000\n"
                                            "system_usec 2000000\nnr_periods 0\n";
  }
  auto cpu = cgroup_cpu(dir.path);
  ASSERT_TRUE(cpu.has_value());
  EXPECT_DOUBLE_EQ(cpu->usage_s, 3.0);
  EXPECT_DOUBLE_EQ(cpu->user_s, 1.0);
  EXPECT_DOUBLE_EQ(cpu->system_s, 2.0);
  EXPECT_DOUBLE_EQ(cgroup_cpu_seconds(dir.path).value_or(-1), 3.0);
  // Without usage_usec it is not a cgroup's cpu.stat.
  { std::ofstream(dir.path / "cpu.stat") << "user_usec 1\n"; }
  EXPECT_FALSE(cgroup_cpu(dir.path).has_value());
  EXPECT_FALSE(cgroup_cpu(dir.path / "absent").has_value());
}

TEST(BenchProcfs, MachineCpuCountsStealApartFromTheGuestsWork) {
  // user nice system idle iowait irq softirq steal guest guest_nice, at 100 ticks per second.
  const auto m = parse_machine_cpu(
      "cpu  1000 10 300 5000 40 0 200 90 0 0\ncpu0 500 5 150 2500 20 0 100 45 0 0\n", 100);
  ASSERT_TRUE(m.has_value());
  EXPECT_DOUBLE_EQ(m->busy, 15.1);  // user + nice + system + irq + softirq, not steal
  EXPECT_DOUBLE_EQ(m->softirq, 2.0);
  EXPECT_DOUBLE_EQ(m->steal, 0.9);
  EXPECT_DOUBLE_EQ(m->total, 66.4);  // busy + steal + idle + iowait

  // The live file parses, and its parts add up.
  const auto live = machine_cpu();
  ASSERT_TRUE(live.has_value());
  EXPECT_GE(live->steal, 0);
  EXPECT_GT(live->busy, 0);
  EXPECT_GT(live->total, live->busy);  // some idle time since boot

  EXPECT_FALSE(parse_machine_cpu("cpu0 1 2 3 4 5 6 7 8\n", 100).has_value());
  EXPECT_FALSE(parse_machine_cpu("cpu 1 2 3 4 5 6 7\n", 100).has_value());  // no steal field
  EXPECT_FALSE(parse_machine_cpu("cpu 1 2 3 4 5 6 7 8\n", 0).has_value());
  EXPECT_FALSE(parse_machine_cpu("", 100).has_value());
}

}  // namespace
}  // namespace zt::bench
