// The composition root of meshd: the CA key pair, the object source (manifest directory or
// Kubernetes API, manifest::ObjectSource), the ambient computation, and one gRPC server carrying
// the Delta ADS and CA services.
//
// Threads: the caller's thread runs an io_context for signals and the object source, and is the
// only publisher of snapshots; gRPC's own threads serve the streams and CA calls.
#pragma once

#include <memory>

#include "common/base/result.h"
#include "meshd/app/config.h"

namespace zt::meshd::app {

class App {
 public:
  // Loads (or creates) the CA, reads the objects (with the Kubernetes API: waits until every kind
  // is listed, retrying while the server fails), publishes the first snapshot and starts
  // serving. Errors name what failed (CA files, tokens file, manifest directory, API flags,
  // address in use).
  static Result<std::unique_ptr<App>> create(Config config);
  ~App();
  App(const App&) = delete;
  App& operator=(const App&) = delete;

  // Serves until SIGTERM/SIGINT, republishing when the objects change; then closes the streams and
  // stops the server. Returns the exit code.
  int run();

 private:
  struct Impl;
  explicit App(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace zt::meshd::app
