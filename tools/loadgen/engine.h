// The load engine: one io_context per thread, connections spread over the threads, each
// connection a coroutine that follows the open-loop schedule (or runs closed loop), plus the
// TCP bulk mode. run() blocks until the measurement window and the drain are over.
#pragma once

#include <string>

#include "common/base/result.h"
#include "tools/loadgen/config.h"
#include "tools/loadgen/report.h"

namespace zt::loadgen {

// The HTTP/1.1 request bytes for `c` (head and body).
std::string build_http1_request(const Config& c);

// Whether this build can speak HTTP/2 (waypoint/http2's client was available at build time).
bool http2_available();

// Resolves, connects and runs. Errors only for setup problems (unresolvable target, HTTP/2
// unavailable); request failures are counted in the result.
Result<RunResult> run(const Config& c);

}  // namespace zt::loadgen
