// LocalConfigWatcher: reloads the local config file when it changes and publishes the new
// State. It watches the file's directory with inotify rather than the file itself, because
// editors and ConfigMap updates replace the file (write a new one, rename it over the old), which
// a watch on the old inode would never report. A change that does not parse is logged
// ("keeping previous config: <error>") and the previous State stays published.
//
// Threading: all work runs on the executor given to the constructor; call start() and stop()
// from that executor's thread or while it is not running; the same for destruction.
#pragma once

#include <filesystem>
#include <functional>
#include <memory>

#include "common/async/asio.h"
#include "common/base/result.h"
#include "ztunnel/state/store.h"

namespace zt::state {

class LocalConfigWatcher {
 public:
  // Called after each reload attempt with its outcome (tests wait on it; the app may count it).
  using ReloadCallback = std::function<void(const Status&)>;

  // Starts watching `path`'s directory. Does not load the file: the caller loads it first
  // (load_local_config_file) so that a broken file at start-up is a start-up error, not a log
  // line. Fails when inotify is unavailable or the directory cannot be watched.
  static Result<std::unique_ptr<LocalConfigWatcher>> start(asio::any_io_executor executor,
                                                           std::filesystem::path path,
                                                           StateStore& store,
                                                           ReloadCallback on_reload = {});

  ~LocalConfigWatcher();  // stops watching
  LocalConfigWatcher(const LocalConfigWatcher&) = delete;
  LocalConfigWatcher& operator=(const LocalConfigWatcher&) = delete;

  void stop();

 private:
  struct Impl;
  explicit LocalConfigWatcher(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

}  // namespace zt::state
