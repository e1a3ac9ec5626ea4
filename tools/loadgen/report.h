// The JSON report (stdout or --json FILE) and the human summary (stderr).
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "tools/loadgen/config.h"
#include "tools/loadgen/stats.h"

namespace zt::loadgen {

struct RunResult {
  Stats stats;
  double measured_seconds = 0;  // the measurement window (--duration)
  // From the window's start to the last measured response (>= measured_seconds): when the
  // target or the client fell behind, the responses to the window's requests take longer.
  double completion_seconds = 0;
  double wall_seconds = 0;
  double cpu_seconds = 0;  // loadgen's own user + system CPU over the whole run  // the whole run,
                           // warm-up and drain included
  std::string started_at;  // UTC, ISO 8601
};

// Completed requests / max(duration, completion_seconds): the rate the target really served
// the window's requests at, not the offered rate when everything ran late.
double achieved_rps(const RunResult& r);
nlohmann::json config_json(const Config& c);
nlohmann::json histogram_json(const Histogram& h);
nlohmann::json report_json(const Config& c, const RunResult& r);
std::string summary(const Config& c, const RunResult& r);

}  // namespace zt::loadgen
