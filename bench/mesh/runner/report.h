// mesh_bench's report: report.md (tables) and plots/ (gnuplot .dat + .gp, rendered to .svg when
// gnuplot is installed), both from the analysed results.json document (analysis.h), so every
// number in the report is one of results.json.
#pragma once

#include <filesystem>

#include <nlohmann/json.hpp>

#include "common/base/result.h"

namespace zt::bench::mesh {

Status write_report(const nlohmann::json& results, const std::filesystem::path& out_dir);

}  // namespace zt::bench::mesh
