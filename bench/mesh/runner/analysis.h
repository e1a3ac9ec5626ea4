// mesh_bench's numbers derived from the raw measurements of results.json (pure: no /proc, no
// cluster): per rate x connections point the kept repeats' medians and spreads, latency added over
// no mesh, CPU seconds per 1,000 requests, throughput and connection-rate ratios, the slopes of
// the memory-vs-pods curves, and the targets as achieved / target / met.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace zt::bench::mesh {

inline constexpr const char* kPercentiles[] = {"p50", "p90", "p99", "p99.9", "max"};

// Adds to `results`: scenarios[i].points (summaries), scenarios[i].throughput.ratio_vs_no_mesh,
// scenarios[i].throughput.cost (what the stream cost the machine, per GB; see analysis.cc),
// scenarios[i].conn_rate.ratio_vs_no_mesh, memory_vs_pods.{ambient,sidecar}.bytes_per_pod and
// "targets" (an array of {name, target, achieved, met (true/false/null), detail}).
void analyze(nlohmann::json& results);

// The measured rate (options.rates) nearest to `want`; NaN when none was measured.
double nearest_rate(const nlohmann::json& results, double want);

// The targets as a fixed-width text table (stdout at the end of a run).
std::string targets_table_text(const nlohmann::json& results);

}  // namespace zt::bench::mesh
