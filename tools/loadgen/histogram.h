// A log-linear latency histogram (HdrHistogram-like) with microsecond resolution.
//
// Values are unsigned integers (microseconds for latencies). Values below 2 * kSubBuckets are
// kept exactly; above that every power-of-two range [2^e, 2^(e+1)) is split into kSubBuckets
// equal buckets, so a bucket is never wider than 1/kSubBuckets of its lower bound. Percentiles
// report the midpoint of the bucket that holds the exact nearest-rank percentile, so
//   |percentile(p) - exact| <= exact / (2 * kSubBuckets) + 1       (0.39 % + 1 µs).
// Count, sum (so the mean), min and max are kept exactly. Values above kMaxTrackable (about
// 71 minutes in µs) land in the last bucket; max still reports them exactly.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace zt::loadgen {

class Histogram {
 public:
  static constexpr int kSubBits = 7;
  static constexpr uint64_t kSubBuckets = uint64_t{1} << kSubBits;  // 128
  static constexpr int kMaxBits = 32;
  static constexpr uint64_t kMaxTrackable = (uint64_t{1} << kMaxBits) - 1;

  Histogram();

  void record(uint64_t value, uint64_t times = 1);
  // Adds every value of `other`.
  void merge(const Histogram& other);
  void reset();

  uint64_t count() const { return count_; }
  uint64_t min() const { return count_ ? min_ : 0; }
  uint64_t max() const { return max_; }
  double mean() const {
    return count_ ? static_cast<double>(sum_) / static_cast<double>(count_) : 0;
  }
  // Nearest-rank percentile, p in [0, 100]; 0 when empty. p = 100 returns max().
  uint64_t percentile(double p) const;

  // Non-empty buckets in ascending order: values in [low, high] (inclusive), count.
  struct Bucket {
    uint64_t low;
    uint64_t high;
    uint64_t count;
  };
  std::vector<Bucket> buckets() const;

  // Bucket arithmetic, public for tests.
  static size_t index_of(uint64_t value);
  static uint64_t lowest_of(size_t index);
  static uint64_t highest_of(size_t index);
  static size_t bucket_count();

 private:
  std::vector<uint64_t> counts_;
  uint64_t count_ = 0;
  uint64_t sum_ = 0;
  uint64_t min_ = UINT64_MAX;
  uint64_t max_ = 0;
};

}  // namespace zt::loadgen
