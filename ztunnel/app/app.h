// The composition root of ztunnel (see README.md).
#pragma once

#include <memory>

#include "common/base/result.h"
#include "ztunnel/config/config.h"

namespace zt::app {

class App {
 public:
  // Builds and binds everything; errors say which part failed (bad CA files, config, an address
  // in use).
  static Result<std::unique_ptr<App>> create(config::Config config);
  virtual ~App() = default;

  // Serves until SIGTERM/SIGINT or /quitquitquit, then drains. Returns the exit code.
  virtual int run() = 0;
};

}  // namespace zt::app
