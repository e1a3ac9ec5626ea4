#include "tools/loadgen/histogram.h"

#include <algorithm>
#include <bit>
#include <cmath>

namespace zt::loadgen {

size_t Histogram::bucket_count() { return index_of(kMaxTrackable) + 1; }

size_t Histogram::index_of(uint64_t value) {
  value = std::min(value, kMaxTrackable);
  if (value < 2 * kSubBuckets) return static_cast<size_t>(value);
  // value in [2^(width-1), 2^width): keep its top kSubBits + 1 bits.
  int width = std::bit_width(value);
  int shift = width - kSubBits - 1;
  uint64_t top = value >> shift;  // in [kSubBuckets, 2 * kSubBuckets)
  return static_cast<size_t>(uint64_t(shift) * kSubBuckets + top);
}

uint64_t Histogram::lowest_of(size_t index) {
  if (index < 2 * kSubBuckets) return index;
  uint64_t shift = index / kSubBuckets - 1;
  uint64_t top = index - shift * kSubBuckets;
  return top << shift;
}

uint64_t Histogram::highest_of(size_t index) {
  if (index < 2 * kSubBuckets) return index;
  uint64_t shift = index / kSubBuckets - 1;
  return lowest_of(index) + (uint64_t{1} << shift) - 1;
}

Histogram::Histogram() : counts_(bucket_count(), 0) {}

void Histogram::record(uint64_t value, uint64_t times) {
  if (times == 0) return;
  counts_[index_of(value)] += times;
  count_ += times;
  sum_ += value * times;
  min_ = std::min(min_, value);
  max_ = std::max(max_, value);
}

void Histogram::merge(const Histogram& other) {
  for (size_t i = 0; i < counts_.size(); ++i) counts_[i] += other.counts_[i];
  count_ += other.count_;
  sum_ += other.sum_;
  min_ = std::min(min_, other.min_);
  max_ = std::max(max_, other.max_);
}

void Histogram::reset() {
  std::fill(counts_.begin(), counts_.end(), 0);
  count_ = sum_ = max_ = 0;
  min_ = UINT64_MAX;
}

uint64_t Histogram::percentile(double p) const {
  if (count_ == 0) return 0;
  if (p >= 100) return max_;
  if (p < 0) p = 0;
  // Nearest rank: the smallest value with at least ceil(p/100 * n) values <= it (rank >= 1).
  auto rank = static_cast<uint64_t>(std::ceil(p / 100.0 * static_cast<double>(count_)));
  rank = std::clamp<uint64_t>(rank, 1, count_);
  uint64_t seen = 0;
  for (size_t i = 0; i < counts_.size(); ++i) {
    seen += counts_[i];
    if (seen >= rank) {
      uint64_t low = lowest_of(i), high = highest_of(i);
      uint64_t mid = low + (high - low) / 2;
      return std::clamp(mid, min(), max_);
    }
  }
  return max_;
}

std::vector<Histogram::Bucket> Histogram::buckets() const {
  std::vector<Bucket> out;
  for (size_t i = 0; i < counts_.size(); ++i) {
    if (counts_[i] != 0) out.push_back({lowest_of(i), highest_of(i), counts_[i]});
  }
  return out;
}

}  // namespace zt::loadgen
