// ObjectSource: where meshd and the node agent get their Kubernetes objects from, so either can
// run from a directory of manifests (ManifestDirectorySource, here) or from a Kubernetes API
// server (kube::KubeApiSource, meshd/kube/kube_source.h) without knowing which.
//
//   std::unique_ptr<manifest::ObjectSource> source = ...;
//   auto st = source->start([&](const manifest::LoadResult& update) {
//     for (auto& e : update.errors) ZT_LOG_WARN("{}", e.message);
//     if (update.changed) use(*update.objects);
//   });
//   ...
//   source->stop();
//
// Contract: on_change runs on the source's executor (the one given to its constructor), never
// concurrently with itself. The first call carries the complete initial state (a directory
// source: the first load, delivered synchronously from start(); an API source: once every
// resource type's initial list has arrived) and has changed == true. Later calls come when the
// objects changed or new validation errors were seen; `objects` is always the full current set
// (the last good version of an invalid object is kept). Nothing is called after stop().
// Threading: start() and stop() from the executor's thread (or while it is not running).
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>

#include "common/async/asio.h"
#include "common/base/result.h"
#include "meshd/manifest/source.h"

namespace zt::meshd::manifest {

class ObjectSource {
 public:
  using Callback = std::function<void(const LoadResult& update)>;
  virtual ~ObjectSource() = default;

  // Starts delivering updates to `on_change`. Errors are set-up failures (a directory that cannot
  // be watched, an unusable API configuration); a server that is down is retried, not an error.
  virtual Status start(Callback on_change) = 0;
  virtual void stop() = 0;
  // For logs: "manifests /etc/mesh", "kube-api https://10.96.0.1:443".
  virtual std::string describe() const = 0;
};

// The manifest directory: ManifestSource + ManifestWatcher. start() loads once and calls back
// before returning (an unreadable directory is an error), then reloads on every change of the
// directory; each reload calls back, also when nothing changed (so errors are reported again, as
// ManifestSource::reload does).
class ManifestDirectorySource : public ObjectSource {
 public:
  ManifestDirectorySource(asio::any_io_executor executor, std::filesystem::path directory,
                          std::chrono::milliseconds debounce = std::chrono::milliseconds(50));
  ~ManifestDirectorySource() override;

  Status start(Callback on_change) override;
  void stop() override;
  std::string describe() const override;

 private:
  asio::any_io_executor executor_;
  std::chrono::milliseconds debounce_;
  ManifestSource source_;
  Callback on_change_;
  std::unique_ptr<ManifestWatcher> watcher_;
};

}  // namespace zt::meshd::manifest
