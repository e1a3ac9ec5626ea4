// The L7 configuration file (--config): read at start, then watched. Like ztunnel's local config
// watcher it watches the file's directory (editors and ConfigMaps replace the file by rename).
// A change that parses is published to the ConfigStore (a new generation); one that does not is
// logged with the parser's error (which names the field) and the last good configuration stays.
//
// Threading: everything runs on the executor given to start(); stop() and destruction from that
// executor's thread or while it is not running.
#pragma once

#include <filesystem>
#include <functional>
#include <memory>

#include "common/async/asio.h"
#include "common/base/result.h"
#include "waypoint/state/config_store.h"

namespace zt::waypoint::app {

// Reads and parses `path` (origin "file <path>"). Errors name the file and the field.
Result<std::shared_ptr<state::ConfigSnapshot>> load_config_file(const std::filesystem::path& path);

class ConfigFileWatcher {
 public:
  // Called after each reload attempt (tests and metrics).
  using ReloadCallback = std::function<void(const Status&)>;

  // Does not load the file: the caller loads it first so a broken file is a start-up error.
  static Result<std::unique_ptr<ConfigFileWatcher>> start(asio::any_io_executor executor,
                                                          std::filesystem::path path,
                                                          state::ConfigStore& store,
                                                          ReloadCallback on_reload = {});
  ~ConfigFileWatcher();
  ConfigFileWatcher(const ConfigFileWatcher&) = delete;
  ConfigFileWatcher& operator=(const ConfigFileWatcher&) = delete;

  void stop();

 private:
  struct Impl;
  explicit ConfigFileWatcher(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<Impl> impl_;
};

}  // namespace zt::waypoint::app
