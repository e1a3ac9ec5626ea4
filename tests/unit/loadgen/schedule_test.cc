#include "tools/loadgen/schedule.h"

#include <set>

#include <gtest/gtest.h>

namespace zt::loadgen {
namespace {

using namespace std::chrono_literals;

TEST(Schedule, RateIsSplitOverConnectionsAndStaggered) {
  auto start = Schedule::Clock::time_point{} + 1s;
  Schedule s(1000, 4, start);  // 1000 rps over 4 connections: each every 4 ms, offset by 1 ms
  EXPECT_TRUE(s.open_loop());
  EXPECT_EQ(s.period(), 4ms);
  EXPECT_EQ(s.offset(0, 0), 0ms);
  EXPECT_EQ(s.offset(1, 0), 1ms);
  EXPECT_EQ(s.offset(3, 0), 3ms);
  EXPECT_EQ(s.offset(0, 1), 4ms);
  EXPECT_EQ(s.offset(2, 5), 22ms);
  EXPECT_EQ(s.due(2, 5), start + 22ms);
  // Together the connections send exactly every 1 ms, no two at the same time.
  std::set<int64_t> all;
  for (uint32_t c = 0; c < 4; ++c) {
    for (uint64_t i = 0; i < 250; ++i) all.insert(s.offset(c, i).count());
  }
  ASSERT_EQ(all.size(), 1000u);
  int64_t expect = 0;
  for (auto t : all) {
    EXPECT_EQ(t, expect);
    expect += 1'000'000;
  }
}

TEST(Schedule, FractionalRatesDoNotDrift) {
  Schedule s(3, 1, {});  // every 333.33 ms
  EXPECT_EQ(s.offset(0, 3), 1s);
  EXPECT_EQ(s.offset(0, 3000), 1000s);
  Schedule t(7, 3, {});
  EXPECT_EQ(t.offset(1, 2).count(), static_cast<int64_t>(7 * 1e9 / 7));  // k = 1 + 2*3 = 7
}

TEST(Schedule, CountsRequestsInAWindow) {
  Schedule s(500, 2, {});  // 2 ms apart overall; each connection every 4 ms
  // Window [1 s, 3 s): 1000 requests overall, 500 per connection.
  EXPECT_EQ(s.count_in(0, 1s, 3s), 500u);
  EXPECT_EQ(s.count_in(1, 1s, 3s), 500u);
  EXPECT_EQ(s.first_at_or_after(0, 0ns), 0u);
  EXPECT_EQ(s.first_at_or_after(1, 0ns), 0u);
  EXPECT_EQ(s.first_at_or_after(1, 2ms), 0u);  // connection 1 starts at 2 ms
  EXPECT_EQ(s.first_at_or_after(1, 2ms + 1ns), 1u);
  EXPECT_EQ(s.first_at_or_after(0, 4ms), 1u);
  EXPECT_EQ(s.count_in(0, 3s, 1s), 0u);
  // Every request of the window is counted once: sum over connections equals rate x window.
  Schedule u(997, 7, {});
  uint64_t total = 0;
  for (uint32_t c = 0; c < 7; ++c) total += u.count_in(c, 500ms, 2500ms);
  EXPECT_NEAR(static_cast<double>(total), 997 * 2.0, 1.0);
}

TEST(Schedule, ZeroRateIsClosedLoop) {
  Schedule s(0, 4, {});
  EXPECT_FALSE(s.open_loop());
}

}  // namespace
}  // namespace zt::loadgen
