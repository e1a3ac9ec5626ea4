// ObjectStore: the objects a Kubernetes API source has seen, as one manifest::ObjectSet, kept up
// to date from LIST results (a type's whole collection) and WATCH events (one object). Objects go
// through manifest::convert(), the manifest source's validation: an invalid object is reported
// and its last good version (same kind/namespace/name) is kept, as the directory source does;
// an AuthorizationPolicy with no good version is there as its latest document's fail-closed
// stand-in (ManifestError::fallback), which is never kept as a good version. Pure (no I/O),
// single-threaded.
#pragma once

#include <memory>
#include <set>
#include <string>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "meshd/kube/protocol.h"
#include "meshd/manifest/objects.h"
#include "meshd/manifest/parse.h"

namespace zt::meshd::kube {

class ObjectStore {
 public:
  using Errors = std::vector<manifest::ManifestError>;

  // Replaces every object of `type` with `items` (a complete LIST). Objects not in it are gone.
  Errors apply_list(const ResourceType& type, const std::vector<YAML::Node>& items);
  // Applies one ADDED, MODIFIED or DELETED event (BOOKMARK and ERROR change nothing).
  Errors apply_event(const ResourceType& type, const WatchEvent& event);

  // True when the objects changed since the last snapshot().
  bool dirty() const { return dirty_; }
  // The current objects as an immutable set; clears dirty().
  std::shared_ptr<const manifest::ObjectSet> snapshot();
  const manifest::ObjectSet& objects() const { return set_; }

 private:
  manifest::ObjectSet set_;
  bool dirty_ = false;
  std::set<std::string> stand_ins_;  // "<kind>/<ns>/<name>" of the objects that are stand-ins
};

}  // namespace zt::meshd::kube
