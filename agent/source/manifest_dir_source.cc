#include <utility>

#include "agent/source/source.h"
#include "common/base/log.h"
#include "meshd/manifest/source.h"

namespace zt::agent {
namespace {

namespace manifest = meshd::manifest;

class ManifestDirSource final : public ObjectSource {
 public:
  explicit ManifestDirSource(std::filesystem::path dir) : source_(std::move(dir)) {}
  ~ManifestDirSource() override { stop(); }

  Result<ObjectsPtr> load() override {
    std::error_code ec;
    if (!std::filesystem::is_directory(source_.directory(), ec)) {
      return failf("--manifests {} is not a directory", source_.directory().string());
    }
    return reload().objects;
  }

  Status watch(asio::any_io_executor executor, OnUpdate on_update) override {
    on_update_ = std::move(on_update);
    auto watcher = manifest::ManifestWatcher::start(executor, source_.directory(), [this] {
      // Whatever goes wrong here, the last good objects stay in force.
      try {
        auto loaded = reload();
        if (loaded.changed && on_update_) on_update_(loaded.objects);
      } catch (const std::exception& e) {
        ZT_LOG_ERROR("manifest reload failed component=manifests error=\"{}\"", e.what());
      }
    });
    if (!watcher) return tl::unexpected(wrap(watcher.error(), "watching --manifests"));
    watcher_ = std::move(*watcher);
    return {};
  }

  void stop() override {
    if (watcher_) watcher_->stop();
    watcher_.reset();
  }

 private:
  manifest::LoadResult reload() {
    auto loaded = source_.reload();
    for (const auto& e : loaded.errors) {
      ZT_LOG_WARN("manifest rejected component=manifests error=\"{}\"", e.message);
    }
    ZT_LOG_DEBUG("manifests loaded component=manifests objects={} errors={} changed={}",
                 loaded.objects->size(), loaded.errors.size(), loaded.changed);
    return loaded;
  }

  manifest::ManifestSource source_;
  std::unique_ptr<manifest::ManifestWatcher> watcher_;
  OnUpdate on_update_;
};

}  // namespace

std::unique_ptr<ObjectSource> make_manifest_dir_source(std::filesystem::path directory) {
  return std::make_unique<ManifestDirSource>(std::move(directory));
}

}  // namespace zt::agent
