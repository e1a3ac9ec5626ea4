#include "waypoint/base/random.h"

namespace zt::waypoint {

uint64_t Random::below(uint64_t n) {
  if (n == 0) return 0;
  // Reject the top sliver of values that would bias the modulo.
  const uint64_t limit = UINT64_MAX - (UINT64_MAX % n);
  uint64_t v = next_u64();
  while (v >= limit) v = next_u64();
  return v % n;
}

bool Random::chance_percent(double percent) {
  if (!(percent > 0)) return false;  // also false for NaN
  if (percent >= 100) return true;
  return unit() * 100.0 < percent;
}

SeededRandom SeededRandom::from_entropy() {
  std::random_device rd;
  const uint64_t seed = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  return SeededRandom(seed);
}

}  // namespace zt::waypoint
