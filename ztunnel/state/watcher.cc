#include "ztunnel/state/watcher.h"

#include <sys/inotify.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "common/base/log.h"
#include "common/fs/inotify.h"
#include "ztunnel/state/local_config.h"

namespace zt::state {
namespace {

std::optional<std::string> read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream content;
  content << in.rdbuf();
  return content.str();
}

}  // namespace

struct LocalConfigWatcher::Impl {
  Impl(std::filesystem::path file, StateStore& target, ReloadCallback callback)
      : path(std::move(file)), store(target), on_reload(std::move(callback)) {}

  // Whether the batch holds an event that may have changed the file. Names are not compared:
  // a ConfigMap update renames a "..data" symlink, not the file, and reload() skips content
  // that did not change anyway.
  bool relevant(const std::vector<fs::InotifyEvent>& events) {
    bool changed = false;
    for (const auto& event : events) {
      if (event.mask & (IN_CLOSE_WRITE | IN_MOVED_TO | IN_Q_OVERFLOW)) changed = true;
      if (event.mask & IN_IGNORED) {
        ZT_LOG_ERROR("component=local-config the directory of {} is gone; no more reloads",
                     path.string());
      }
    }
    return changed;
  }

  void reload() {
    auto content = read_file(path);
    if (content && content == last_content) return;  // touched, or another file in the dir
    Status result;
    if (!content) {
      result = failf("{}: cannot open: {}", path.string(), std::strerror(errno));
    } else {
      last_content = content;
      auto state = parse_local_config(*content);
      if (state) {
        store.publish(*state);
        ZT_LOG_INFO("component=local-config reloaded {}: {} workloads, {} services, {} policies",
                    path.string(), (*state)->workloads().size(), (*state)->services().size(),
                    (*state)->policies().size());
      } else {
        result = tl::unexpected(wrap(state.error(), path.string()));
      }
    }
    if (!result)
      ZT_LOG_WARN("component=local-config keeping previous config: {}", result.error().message);
    if (on_reload) on_reload(result);
  }

  std::filesystem::path path;
  StateStore& store;
  ReloadCallback on_reload;
  std::shared_ptr<fs::InotifyReader> reader;
  std::optional<std::string> last_content;
};

LocalConfigWatcher::LocalConfigWatcher(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

LocalConfigWatcher::~LocalConfigWatcher() { stop(); }

Result<std::unique_ptr<LocalConfigWatcher>> LocalConfigWatcher::start(
    asio::any_io_executor executor, std::filesystem::path path, StateStore& store,
    ReloadCallback on_reload) {
  auto reader = fs::InotifyReader::create(std::move(executor));
  if (!reader) return tl::unexpected(reader.error());
  auto dir = path.parent_path();
  if (dir.empty()) dir = ".";
  if (auto watch = (*reader)->add(dir, IN_CLOSE_WRITE | IN_MOVED_TO); !watch) {
    (*reader)->close();
    return tl::unexpected(wrap(watch.error(), "watching the directory of the local config"));
  }
  auto impl = std::make_shared<Impl>(std::move(path), store, std::move(on_reload));
  impl->reader = *reader;
  impl->last_content = read_file(impl->path);
  // The reader holds the handlers; they hold the Impl weakly so stopping needs no cycle-breaking.
  std::weak_ptr<Impl> weak = impl;
  impl->reader->start(
      [weak](const std::vector<fs::InotifyEvent>& events) {
        auto self = weak.lock();
        if (self && self->relevant(events)) self->reload();
      },
      [weak](const error_code& ec) {
        if (auto self = weak.lock()) {
          ZT_LOG_ERROR("component=local-config stopped watching {}: {}", self->path.string(),
                       ec.message());
        }
      });
  return std::unique_ptr<LocalConfigWatcher>(new LocalConfigWatcher(std::move(impl)));
}

void LocalConfigWatcher::stop() { impl_->reader->close(); }

}  // namespace zt::state
