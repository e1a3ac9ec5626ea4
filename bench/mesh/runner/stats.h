// The arithmetic of mesh_bench's repeats (pure): which runs are kept, medians and spreads.
#pragma once

#include <cstddef>
#include <vector>

namespace zt::bench::mesh {

// The median (mean of the middle two for an even count); 0 for an empty set.
double median(std::vector<double> values);

struct Spread {
  double median = 0, min = 0, max = 0;
};
Spread spread_of(const std::vector<double>& values);

// Indices of the runs kept from `p99s` (one per run): all of them when there are at most two,
// otherwise every run but the worst (highest p99; the first of equal ones).
std::vector<size_t> kept_runs(const std::vector<double>& p99s);

}  // namespace zt::bench::mesh
