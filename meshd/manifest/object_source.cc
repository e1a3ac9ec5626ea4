#include "meshd/manifest/object_source.h"

#include "common/base/log.h"

namespace zt::meshd::manifest {

ManifestDirectorySource::ManifestDirectorySource(asio::any_io_executor executor,
                                                 std::filesystem::path directory,
                                                 std::chrono::milliseconds debounce)
    : executor_(std::move(executor)), debounce_(debounce), source_(std::move(directory)) {}

ManifestDirectorySource::~ManifestDirectorySource() { stop(); }

Status ManifestDirectorySource::start(Callback on_change) {
  std::error_code ec;
  if (!std::filesystem::is_directory(source_.directory(), ec)) {
    return failf("{} is not a directory", source_.directory().string());
  }
  on_change_ = std::move(on_change);
  auto first = source_.reload();
  first.changed = true;
  on_change_(first);
  auto watcher = ManifestWatcher::start(
      executor_, source_.directory(),
      [this] {
        if (!on_change_) return;
        auto loaded = source_.reload();
        on_change_(loaded);
      },
      debounce_);
  if (!watcher) return tl::unexpected(wrap(watcher.error(), "watching " + describe()));
  watcher_ = std::move(*watcher);
  return {};
}

void ManifestDirectorySource::stop() {
  on_change_ = nullptr;
  if (watcher_) watcher_->stop();
}

std::string ManifestDirectorySource::describe() const {
  return "manifests " + source_.directory().string();
}

}  // namespace zt::meshd::manifest
