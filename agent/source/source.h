// Where the agent learns about namespaces and pods: a directory of manifests, or the Kubernetes
// API server (meshd/kube's KubeApiSource, adapted; the reconciler only needs the objects).
//
// Invariant: a source never hands out a worse set after a bad input: objects that fail
// validation keep their last good version (ManifestSource's rule), and errors are logged.
#pragma once

#include <filesystem>
#include <functional>
#include <memory>

#include "common/async/asio.h"
#include "common/base/result.h"
#include "meshd/kube/config.h"
#include "meshd/manifest/objects.h"

namespace zt::agent {

using ObjectsPtr = std::shared_ptr<const meshd::manifest::ObjectSet>;

class ObjectSource {
 public:
  using OnUpdate = std::function<void(ObjectsPtr)>;
  virtual ~ObjectSource() = default;

  // The first full set (blocking). An error when the source cannot be read at all.
  virtual Result<ObjectsPtr> load() = 0;
  // Then calls `on_update` on `executor` with every changed set, until stop().
  virtual Status watch(asio::any_io_executor executor, OnUpdate on_update) = 0;
  // Call from the executor's thread (or while it is not running).
  virtual void stop() = 0;
};

// A directory of Kubernetes YAML manifests, watched with inotify.
std::unique_ptr<ObjectSource> make_manifest_dir_source(std::filesystem::path directory);

// A Kubernetes API server: meshd::kube::KubeApiSource on `io` (list, then watch, per kind;
// set config.pod_field_selector = "spec.nodeName=<node>" to get only this node's pods). load()
// runs `io` one handler at a time until the first complete set (every kind listed; an
// unreachable server is retried meanwhile) and fails only when stop() is called first (from a
// handler on `io`, e.g. a signal) or `io` is stopped. watch() ignores its executor: updates come
// on `io`'s, which must be the one the app runs. Only changed sets are forwarded; validation
// errors are logged as `manifest rejected component=kube`.
std::unique_ptr<ObjectSource> make_kube_api_source(asio::io_context& io,
                                                   meshd::kube::KubeConfig config);

}  // namespace zt::agent
