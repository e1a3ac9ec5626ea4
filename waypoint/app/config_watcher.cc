#include "waypoint/app/config_watcher.h"

#include <sys/inotify.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>

#include "common/base/log.h"
#include "common/fs/inotify.h"

namespace zt::waypoint::app {
namespace {

Result<std::string> read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return failf("{}: cannot open: {}", path.string(), std::strerror(errno));
  std::ostringstream content;
  content << in.rdbuf();
  return content.str();
}

}  // namespace

Result<std::shared_ptr<state::ConfigSnapshot>> load_config_file(const std::filesystem::path& path) {
  auto text = read_file(path);
  if (!text) return tl::unexpected(text.error());
  auto snap = state::build_config_snapshot(*text, "file " + path.string());
  if (!snap) return tl::unexpected(wrap(snap.error(), path.string()));
  return snap;
}

struct ConfigFileWatcher::Impl {
  Impl(std::filesystem::path p, state::ConfigStore& s, ReloadCallback cb)
      : path(std::move(p)), store(s), on_reload(std::move(cb)) {}

  void reload() {
    auto content = read_file(path);
    if (content && last_content && *content == *last_content) return;  // nothing changed
    Status result;
    if (!content) {
      result = tl::unexpected(content.error());
    } else {
      last_content = *content;
      auto snap = state::build_config_snapshot(*content, "file " + path.string());
      if (snap) {
        size_t routes = (*snap)->config->routes.size();
        size_t policies = (*snap)->policies.size();
        size_t providers = (*snap)->providers.size();
        store.publish(*snap);
        ZT_LOG_INFO(
            "component=config msg=\"reloaded {}\" generation={} routes={} destinations={} "
            "policies={} providers={}",
            path.string(), store.current()->generation, routes,
            store.current()->config->destinations.size(), policies, providers);
      } else {
        result = tl::unexpected(wrap(snap.error(), path.string()));
      }
    }
    if (!result) {
      ZT_LOG_ERROR(
          "component=config msg=\"keeping the last good configuration (generation {})\" "
          "error=\"{}\"",
          store.current()->generation, result.error().describe());
    }
    if (on_reload) on_reload(result);
  }

  std::filesystem::path path;
  state::ConfigStore& store;
  ReloadCallback on_reload;
  std::shared_ptr<fs::InotifyReader> reader;
  std::optional<std::string> last_content;
};

ConfigFileWatcher::~ConfigFileWatcher() { stop(); }

void ConfigFileWatcher::stop() {
  if (impl_ && impl_->reader) impl_->reader->close();
}

Result<std::unique_ptr<ConfigFileWatcher>> ConfigFileWatcher::start(asio::any_io_executor executor,
                                                                    std::filesystem::path path,
                                                                    state::ConfigStore& store,
                                                                    ReloadCallback on_reload) {
  auto reader = fs::InotifyReader::create(std::move(executor));
  if (!reader) return tl::unexpected(reader.error());
  auto dir = path.parent_path();
  if (dir.empty()) dir = ".";
  if (auto watch = (*reader)->add(dir, IN_CLOSE_WRITE | IN_MOVED_TO); !watch) {
    (*reader)->close();
    return tl::unexpected(wrap(watch.error(), "watching the directory of --config"));
  }
  auto impl = std::make_shared<Impl>(std::move(path), store, std::move(on_reload));
  impl->reader = *reader;
  if (auto content = read_file(impl->path)) impl->last_content = *content;
  std::weak_ptr<Impl> weak = impl;
  impl->reader->start(
      [weak](const std::vector<fs::InotifyEvent>& events) {
        auto self = weak.lock();
        if (!self) return;
        bool changed = false;
        for (const auto& e : events) {
          if (e.mask & (IN_CLOSE_WRITE | IN_MOVED_TO | IN_Q_OVERFLOW)) changed = true;
        }
        if (changed) self->reload();
      },
      [weak](const error_code& ec) {
        if (auto self = weak.lock()) {
          ZT_LOG_ERROR("component=config msg=\"stopped watching {}\" error=\"{}\"",
                       self->path.string(), ec.message());
        }
      });
  return std::unique_ptr<ConfigFileWatcher>(new ConfigFileWatcher(std::move(impl)));
}

}  // namespace zt::waypoint::app
