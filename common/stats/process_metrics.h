// Process metrics computed at scrape time from /proc/self and getrlimit/getrusage, with the
// names the Prometheus client libraries use: process_open_fds, process_max_fds,
// process_resident_memory_bytes, process_virtual_memory_bytes, process_cpu_seconds_total,
// process_start_time_seconds. A value that cannot be read is reported as NaN.
#pragma once

#include "common/stats/registry.h"

namespace zt::stats {

void register_process_metrics(Registry& registry);

}  // namespace zt::stats
