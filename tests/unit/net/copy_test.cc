#include "common/net/copy.h"

#include <cstddef>
#include <cstdint>
#include <vector>

#include <gtest/gtest.h>

namespace zt::net {
namespace {

using B = AdaptiveBuffer;

TEST(AdaptiveBuffer, StartsSmall) {
  B b;
  EXPECT_EQ(b.get().size(), B::kSmall);
  EXPECT_EQ(b.capacity(), B::kSmall);
}

TEST(AdaptiveBuffer, ReadsThatDoNotFillItNeverGrowItHoweverMuchMoves) {
  B b;
  uint64_t moved = 0;
  for (int i = 0; i < 20'000; ++i) {
    moved += B::kSmall - 1;
    b.used(B::kSmall - 1, moved);
  }
  ASSERT_GT(moved, B::kLargeAfter);
  EXPECT_EQ(b.capacity(), B::kSmall);
}

TEST(AdaptiveBuffer, FullReadsDoubleItUpToMediumBeforeTheBulkThreshold) {
  B b;
  uint64_t moved = 0;
  std::vector<size_t> sizes;
  for (int i = 0; i < 10; ++i) {
    size_t n = b.get().size();
    moved += n;
    b.used(n, moved);
    sizes.push_back(b.capacity());
  }
  ASSERT_LT(moved, B::kLargeAfter);
  EXPECT_EQ(sizes, (std::vector<size_t>{2048, 4096, 8192, 16384, 16384, 16384, 16384, 16384, 16384,
                                        16384}));
}

TEST(AdaptiveBuffer, FullReadsAfterTheBulkThresholdGrowItToLarge) {
  B b;
  uint64_t moved = 0;
  while (moved < B::kLargeAfter) {
    size_t n = b.get().size();
    moved += n;
    b.used(n, moved);
  }
  for (int i = 0; i < 8; ++i) {
    size_t n = b.get().size();
    moved += n;
    b.used(n, moved);
  }
  EXPECT_EQ(b.capacity(), B::kLarge);
}

TEST(AdaptiveBuffer, ARequestSlightlyLargerThanTheBufferGrowsItOnce) {
  B b;
  // A 1,100-byte message read as 1,024 + 76, then as whole messages.
  b.used(1024, 1024);
  b.used(76, 1100);
  EXPECT_EQ(b.capacity(), 2048u);
  uint64_t moved = 1100;
  for (int i = 0; i < 1000; ++i) {
    moved += 1100;
    b.used(1100, moved);
  }
  EXPECT_EQ(b.capacity(), 2048u);
}

}  // namespace
}  // namespace zt::net
