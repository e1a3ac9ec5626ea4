// ManifestSource: the objects in a directory of Kubernetes manifests (every *.yaml / *.yml below
// it, recursively, read in sorted path order). ManifestWatcher: calls back when that directory
// changes (inotify, debounced).
//
// API summary (for meshd's composition root):
//   manifest::ManifestSource source(dir);
//   auto loaded = source.reload();            // LoadResult{objects, errors, changed}
//   for (auto& e : loaded.errors) ZT_LOG_WARN("{}", e.message);
//   snapshot = ambient::compute(*loaded.objects, options);
//   auto watcher = manifest::ManifestWatcher::start(executor, dir, [&] { ...reload... });
//
// Invariant (last good state): an object that fails validation keeps the version it had in the
// previous successful load (same kind/namespace/name, or, when the broken document has no usable
// name, whatever the same file and document index held), and a file that is not YAML at all keeps
// every object it contributed before. So a bad edit never removes anything; deleting a file (or
// a document) does remove its objects. An AuthorizationPolicy that fails validation with no good
// version to keep is there as its stand-in that fails closed (ManifestError::fallback), made
// from its latest document: a stand-in is never kept as a "last good version".
//
// Threading: ManifestSource is not thread-safe; use it from one thread. ManifestWatcher runs on
// the executor given to start(); call stop() or destroy it from that executor's thread or while
// the executor is not running.
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "common/async/asio.h"
#include "common/base/result.h"
#include "meshd/manifest/objects.h"
#include "meshd/manifest/parse.h"

namespace zt::meshd::manifest {

struct LoadResult {
  std::shared_ptr<const ObjectSet> objects;  // never null
  std::vector<ManifestError> errors;         // this load's validation errors (file/object/field)
  bool changed = false;                      // objects differ from the previous load's
};

class ManifestSource {
 public:
  explicit ManifestSource(std::filesystem::path directory);

  // Re-reads the manifest files. Only files whose content changed are parsed again: each file's
  // parse result is kept by path with its size, modification time and a hash of its content
  // (a file whose size and mtime are unchanged is not even read, unless it was modified close
  // to when it was last read, as git guards against "racy" timestamps). Errors of unchanged
  // files are reported again on every load. A missing or unreadable directory is an error
  // entry (the previous objects are kept).
  LoadResult reload();

  // The objects of the last reload() (empty before the first).
  std::shared_ptr<const ObjectSet> objects() const { return current_; }
  const std::filesystem::path& directory() const { return directory_; }

 private:
  struct Origin {
    std::string file;
    size_t document = 0;
  };
  // One manifest file as last read and parsed.
  struct FileEntry {
    uintmax_t size = 0;
    std::filesystem::file_time_type mtime{};
    std::filesystem::file_time_type read_at{};  // when it was read (file clock)
    size_t hash = 0;                            // of the content
    ParsedManifest parsed;
  };
  // The parse of `file` (relative to directory_), from the cache when its content is unchanged;
  // nullptr when it cannot be read.
  const ParsedManifest* parse_file(const std::string& file);

  std::filesystem::path directory_;
  std::shared_ptr<const ObjectSet> current_;
  std::map<std::string, FileEntry> files_;  // by relative path; only files of the last load
  // Where each current object came from, to keep last-good versions on a bad edit.
  std::map<ObjectKey, Origin> origins_;
  std::map<ObjectKey, Object> by_key_;
  std::set<ObjectKey> stand_ins_;  // keys whose object in by_key_ is a fail-closed stand-in
};

// Watches a directory and its subdirectories (created later ones too) for file changes and calls
// `on_change` once per burst of events, `debounce` after the last one.
class ManifestWatcher {
 public:
  using Callback = std::function<void()>;
  static Result<std::unique_ptr<ManifestWatcher>> start(
      asio::any_io_executor executor, std::filesystem::path directory, Callback on_change,
      std::chrono::milliseconds debounce = std::chrono::milliseconds(50));

  ~ManifestWatcher();
  ManifestWatcher(const ManifestWatcher&) = delete;
  ManifestWatcher& operator=(const ManifestWatcher&) = delete;

  void stop();

 private:
  struct Impl;
  explicit ManifestWatcher(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

}  // namespace zt::meshd::manifest
