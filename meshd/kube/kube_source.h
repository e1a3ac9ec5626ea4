// KubeApiSource: the objects meshd and the node agent use, from a Kubernetes API server, as a
// manifest::ObjectSource (meshd/manifest/object_source.h), so either source can feed them.
//
//   auto config = kube::in_cluster_config();            // or a KubeConfig with server/token/CA
//   config->pod_field_selector = "spec.nodeName=" + node;  // a node agent: only its pods
//   kube::KubeApiSource source(io.get_executor(), *config);
//   source.start([&](const manifest::LoadResult& update) { ... });
//
// Per resource type (kube::resource_types()): LIST with limit/continue pagination, then WATCH
// from the list's resourceVersion with allowWatchBookmarks. BOOKMARK and every event move the
// type's resourceVersion; ERROR 410 (or HTTP 410) relists; a dropped or ended watch re-watches
// from the last resourceVersion; other failures back off (initial doubling to max, with jitter)
// and retry. Objects are validated by manifest::convert() (ObjectStore, store.h).
//
// Invariant: nothing is delivered before every type's first complete LIST ("synced"); after
// that, a burst of changes within `debounce` is delivered as one update whose `objects` is the
// complete current set.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "common/async/asio.h"
#include "meshd/kube/config.h"
#include "meshd/manifest/object_source.h"

namespace zt::meshd::kube {

struct SourceStats {
  uint64_t lists = 0;  // complete LISTs (every page)
  uint64_t list_pages = 0;
  uint64_t list_restarts = 0;  // continue token expired (410) -> list again from the start
  uint64_t watches = 0;        // WATCH requests sent
  uint64_t events = 0;         // watch events applied (ADDED/MODIFIED/DELETED)
  uint64_t bookmarks = 0;
  uint64_t relists = 0;   // 410 Gone on a watch
  uint64_t failures = 0;  // failed requests (transport errors and HTTP errors)
  uint64_t invalid = 0;   // objects that failed validation
  uint64_t publishes = 0;
};

class KubeApiSource : public manifest::ObjectSource {
 public:
  KubeApiSource(asio::any_io_executor executor, KubeConfig config);
  ~KubeApiSource() override;

  Status start(Callback on_change) override;
  void stop() override;
  std::string describe() const override;

  bool synced() const;
  SourceStats stats() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace zt::meshd::kube
