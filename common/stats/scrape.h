// Reading the Prometheus text format back (what an admin endpoint's /metrics answers): the sum of
// one family's samples, for the demo's checks, benchmarks and tests.
//
// May use: common/base only.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace zt::stats {

// Sum of the samples of `family` (exactly that metric name) whose line contains every one of
// `label_filters` (e.g. `reporter="waypoint"`); 0 when none. Comment lines and other families are
// skipped, and a sample value that is not a number counts as 0.
double sum_samples(std::string_view text, std::string_view family,
                   const std::vector<std::string>& label_filters = {});

}  // namespace zt::stats
