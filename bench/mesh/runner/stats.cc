#include "bench/mesh/runner/stats.h"

#include <algorithm>

namespace zt::bench::mesh {

double median(std::vector<double> values) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 == 1 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

Spread spread_of(const std::vector<double>& values) {
  Spread s;
  if (values.empty()) return s;
  s.median = median(values);
  s.min = *std::min_element(values.begin(), values.end());
  s.max = *std::max_element(values.begin(), values.end());
  return s;
}

std::vector<size_t> kept_runs(const std::vector<double>& p99s) {
  std::vector<size_t> kept;
  if (p99s.size() <= 2) {
    for (size_t i = 0; i < p99s.size(); ++i) kept.push_back(i);
    return kept;
  }
  const size_t worst =
      static_cast<size_t>(std::max_element(p99s.begin(), p99s.end()) - p99s.begin());
  for (size_t i = 0; i < p99s.size(); ++i) {
    if (i != worst) kept.push_back(i);
  }
  return kept;
}

}  // namespace zt::bench::mesh
