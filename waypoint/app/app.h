// The waypoint's composition root: certificates (built-in CA or CA_ADDRESS), the workload state
// (LOCAL_XDS_PATH watched, or Delta xDS with the Address and WaypointConfig types), the L7
// configuration (--config watched, or xDS), the HBONE workers, and the admin / metrics /
// readiness servers. SIGTERM, SIGINT or /quitquitquit drain (GOAWAY, streams finish within
// --connection-termination-deadline) and exit 0.
#pragma once

#include <memory>

#include "common/base/result.h"
#include "waypoint/app/config.h"

namespace zt::waypoint::app {

class App {
 public:
  // Builds and binds everything; errors say which part failed.
  static Result<std::unique_ptr<App>> create(Config config);
  virtual ~App() = default;

  // Serves until a signal or /quitquitquit, then drains. Returns the exit code.
  virtual int run() = 0;
};

}  // namespace zt::waypoint::app
