// The Kubernetes manifests of the benchmark cluster (topology.h): Namespaces, Pods (spec.nodeName,
// status.podIP, containerPort), ServiceAccounts, the ambient-waypoint Service and waypoint
// Gateway. Ordinary objects, read by the simulator and meshd like any manifests directory.
#pragma once

#include <filesystem>

#include "common/base/result.h"

namespace zt::bench::mesh {

// Writes one file per namespace into `dir` (created): the scenario namespaces of
// scenario_plans() and `scale_pods` scale namespaces (scale-1 .. scale-N, unlabelled).
Status write_bench_manifests(const std::filesystem::path& dir, int scale_pods);

}  // namespace zt::bench::mesh
