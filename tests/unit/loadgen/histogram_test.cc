#include "tools/loadgen/histogram.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

namespace zt::loadgen {
namespace {

// Nearest-rank percentile of sorted data: the smallest value with >= ceil(p/100 n) values <= it.
uint64_t exact_percentile(const std::vector<uint64_t>& sorted, double p) {
  auto rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(sorted.size())));
  rank = std::clamp<size_t>(rank, 1, sorted.size());
  return sorted[rank - 1];
}

void expect_within_error(uint64_t estimate, uint64_t exact, const char* what) {
  // The documented bound: half a bucket, a bucket being at most 1/128 of its lower bound.
  const double bound = static_cast<double>(exact) / (2.0 * Histogram::kSubBuckets) + 1;
  EXPECT_LE(std::abs(static_cast<double>(estimate) - static_cast<double>(exact)), bound)
      << what << ": estimate " << estimate << " exact " << exact;
}

TEST(Histogram, BucketsAreContiguousAndBounded) {
  for (size_t i = 0; i + 1 < Histogram::bucket_count(); ++i) {
    ASSERT_EQ(Histogram::highest_of(i) + 1, Histogram::lowest_of(i + 1)) << "bucket " << i;
    ASSERT_LE(Histogram::lowest_of(i), Histogram::highest_of(i));
    const uint64_t width = Histogram::highest_of(i) - Histogram::lowest_of(i) + 1;
    if (width > 1) {
      // Relative width at most 1/kSubBuckets.
      ASSERT_LE(width * Histogram::kSubBuckets, Histogram::lowest_of(i)) << "bucket " << i;
    }
  }
  EXPECT_EQ(Histogram::highest_of(Histogram::bucket_count() - 1), Histogram::kMaxTrackable);
  // 60 s in microseconds is inside the tracked range.
  EXPECT_LT(Histogram::index_of(60'000'000), Histogram::bucket_count() - 1);
}

TEST(Histogram, IndexRoundTrips) {
  std::mt19937_64 rng(7);
  for (int k = 0; k < 100000; ++k) {
    uint64_t v = rng() % Histogram::kMaxTrackable;
    size_t i = Histogram::index_of(v);
    ASSERT_LE(Histogram::lowest_of(i), v);
    ASSERT_GE(Histogram::highest_of(i), v);
  }
  for (uint64_t v = 0; v < 2 * Histogram::kSubBuckets; ++v) {
    EXPECT_EQ(Histogram::lowest_of(Histogram::index_of(v)), v) << "small values are exact";
  }
}

TEST(Histogram, EmptyIsZero) {
  Histogram h;
  EXPECT_EQ(h.count(), 0u);
  EXPECT_EQ(h.percentile(50), 0u);
  EXPECT_EQ(h.max(), 0u);
  EXPECT_EQ(h.min(), 0u);
  EXPECT_EQ(h.mean(), 0.0);
  EXPECT_TRUE(h.buckets().empty());
}

// Percentiles on random data from several distributions match exact nearest-rank percentiles
// within the stated relative error; count, mean, min and max are exact.
TEST(Histogram, PercentilesMatchSortedDataWithinError) {
  std::mt19937_64 rng(42);
  std::lognormal_distribution<double> lognormal(std::log(200.0), 1.2);  // µs latencies
  std::exponential_distribution<double> expo(1.0 / 5000);
  std::uniform_int_distribution<uint64_t> uniform(0, 60'000'000);
  for (int dist = 0; dist < 3; ++dist) {
    Histogram h;
    std::vector<uint64_t> values;
    long double sum = 0;
    for (int k = 0; k < 200000; ++k) {
      uint64_t v = dist == 0   ? static_cast<uint64_t>(lognormal(rng))
                   : dist == 1 ? static_cast<uint64_t>(expo(rng))
                               : uniform(rng);
      values.push_back(v);
      sum += v;
      h.record(v);
    }
    std::sort(values.begin(), values.end());
    EXPECT_EQ(h.count(), values.size());
    EXPECT_EQ(h.min(), values.front());
    EXPECT_EQ(h.max(), values.back());
    EXPECT_NEAR(h.mean(), static_cast<double>(sum / values.size()), 1e-6 * h.mean() + 1e-9);
    for (double p : {0.0, 1.0, 10.0, 25.0, 50.0, 75.0, 90.0, 99.0, 99.9, 99.99, 100.0}) {
      expect_within_error(h.percentile(p), exact_percentile(values, p),
                          fmt::format("p{} dist {}", p, dist).c_str());
    }
    EXPECT_EQ(h.percentile(100), values.back());
  }
}

TEST(Histogram, MergeEqualsRecordingEverything) {
  std::mt19937_64 rng(3);
  Histogram a, b, all;
  for (int k = 0; k < 50000; ++k) {
    uint64_t v = rng() % 1'000'000;
    (k % 3 ? a : b).record(v);
    all.record(v);
  }
  Histogram merged;
  merged.merge(a);
  merged.merge(b);
  EXPECT_EQ(merged.count(), all.count());
  EXPECT_EQ(merged.min(), all.min());
  EXPECT_EQ(merged.max(), all.max());
  EXPECT_DOUBLE_EQ(merged.mean(), all.mean());
  for (double p : {50.0, 90.0, 99.0, 99.9}) EXPECT_EQ(merged.percentile(p), all.percentile(p));
  auto mb = merged.buckets(), ab = all.buckets();
  ASSERT_EQ(mb.size(), ab.size());
  for (size_t i = 0; i < mb.size(); ++i) EXPECT_EQ(mb[i].count, ab[i].count);
  // Merging an empty histogram changes nothing (its min must not leak in).
  merged.merge(Histogram());
  EXPECT_EQ(merged.min(), all.min());
}

TEST(Histogram, RecordWithCountAndHugeValues) {
  Histogram h;
  h.record(100, 99);
  h.record(Histogram::kMaxTrackable + 12345);  // clamped into the last bucket, max exact
  EXPECT_EQ(h.count(), 100u);
  EXPECT_EQ(h.percentile(50), 100u);
  EXPECT_EQ(h.percentile(99), 100u);
  EXPECT_EQ(h.max(), Histogram::kMaxTrackable + 12345);
  h.reset();
  EXPECT_EQ(h.count(), 0u);
  EXPECT_EQ(h.max(), 0u);
}

}  // namespace
}  // namespace zt::loadgen
