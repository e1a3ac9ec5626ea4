// The open-loop send schedule. A total rate R is split evenly over N connections, and the
// connections are staggered so that the aggregate is evenly spaced: request i of connection c is
// request k = c + i * N overall, due at start + k / R. Latency is measured from this due time,
// not from when the request was actually written, so a stalled server (or a sender that fell
// behind) shows up in the latencies instead of silently lowering the rate (no coordinated
// omission). Rate 0 means closed loop: no schedule, each connection sends when the previous
// response arrived.
#pragma once

#include <chrono>
#include <cstdint>

namespace zt::loadgen {

class Schedule {
 public:
  using Clock = std::chrono::steady_clock;

  Schedule(double total_rate, uint32_t connections, Clock::time_point start)
      : rate_(total_rate), connections_(connections == 0 ? 1 : connections), start_(start) {}

  bool open_loop() const { return rate_ > 0; }
  Clock::time_point start() const { return start_; }

  // Offset of request `i` of connection `c` from start (open loop only).
  std::chrono::nanoseconds offset(uint32_t c, uint64_t i) const {
    const double k = static_cast<double>(c) + static_cast<double>(i) * connections_;
    return std::chrono::nanoseconds(static_cast<int64_t>(k * 1e9 / rate_));
  }
  Clock::time_point due(uint32_t c, uint64_t i) const { return start_ + offset(c, i); }

  // Interval between two requests of one connection (N / R).
  std::chrono::nanoseconds period() const {
    return std::chrono::nanoseconds(static_cast<int64_t>(connections_ * 1e9 / rate_));
  }

  // The first request index of connection `c` due at or after `offset_from_start`.
  uint64_t first_at_or_after(uint32_t c, std::chrono::nanoseconds offset_from_start) const;
  // How many requests of connection `c` are due in [from, to) (offsets from start).
  uint64_t count_in(uint32_t c, std::chrono::nanoseconds from, std::chrono::nanoseconds to) const {
    uint64_t a = first_at_or_after(c, from), b = first_at_or_after(c, to);
    return b > a ? b - a : 0;
  }

 private:
  double rate_;
  uint32_t connections_;
  Clock::time_point start_;
};

inline uint64_t Schedule::first_at_or_after(uint32_t c, std::chrono::nanoseconds off) const {
  if (offset(c, 0) >= off) return 0;
  // Estimate, then correct for rounding.
  const double per = connections_ * 1e9 / rate_;
  double est = (static_cast<double>(off.count()) - static_cast<double>(offset(c, 0).count())) / per;
  auto i = static_cast<uint64_t>(est > 0 ? est : 0);
  while (i > 0 && offset(c, i - 1) >= off) --i;
  while (offset(c, i) < off) ++i;
  return i;
}

}  // namespace zt::loadgen
