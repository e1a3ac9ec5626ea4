// The composition root of node-agent: the capture program (pinned eBPF maps and links), the
// object source and its watch, the reconciler and the ZDS server ztunnel connects to.
//
// Start-up order keeps pods captured across restarts and ztunnel's view complete: load the
// capture (reusing pinned maps), reconcile once (pinned pods re-enrolled in place, stale ones
// released), only then start the ZDS server and hand it the full set, so a ztunnel never sees a
// partial snapshot.
//
// Threads: the caller's thread runs one io_context for signals, the watch and the retry timer;
// the ZDS server has its own thread.
#pragma once

#include <memory>

#include "agent/config/config.h"
#include "common/base/result.h"

namespace zt::agent {

class App {
 public:
  static Result<std::unique_ptr<App>> create(Config config);
  ~App();
  App(const App&) = delete;
  App& operator=(const App&) = delete;

  // Runs until SIGTERM/SIGINT. Exits without releasing pods (their pins keep them captured)
  // unless --release-all-on-exit. Returns the exit code.
  int run();

 private:
  struct Impl;
  explicit App(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace zt::agent
