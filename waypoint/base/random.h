// Randomness injected into every waypoint decision that needs it (weighted backends, fault
// percentages, mirroring, least-request choices, retry jitter, request and trace ids), so tests
// can seed it and get the same sequence every run. Not for secrets.
#pragma once

#include <cstdint>
#include <random>

namespace zt::waypoint {

class Random {
 public:
  virtual ~Random() = default;
  virtual uint64_t next_u64() = 0;

  // Uniform in [0, n); n == 0 gives 0. Unbiased (rejection sampling).
  uint64_t below(uint64_t n);
  // Uniform in [0, 1).
  double unit() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }
  // True with probability percent/100 (percent clamped to [0, 100]).
  bool chance_percent(double percent);
};

// A 64-bit Mersenne Twister: seeded for tests, from std::random_device in the proxy (one per
// worker thread; not thread-safe).
class SeededRandom final : public Random {
 public:
  explicit SeededRandom(uint64_t seed) : engine_(seed) {}
  // Seeded from std::random_device.
  static SeededRandom from_entropy();
  uint64_t next_u64() override { return engine_(); }

 private:
  std::mt19937_64 engine_;
};

}  // namespace zt::waypoint
