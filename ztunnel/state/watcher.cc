#include "ztunnel/state/watcher.h"

#include <sys/inotify.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include <boost/asio/posix/stream_descriptor.hpp>

#include "common/base/log.h"
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

struct LocalConfigWatcher::Impl : std::enable_shared_from_this<Impl> {
  Impl(asio::any_io_executor executor, std::filesystem::path file, StateStore& target,
       ReloadCallback callback)
      : path(std::move(file)), store(target), on_reload(std::move(callback)), descriptor(executor) {}

  void read_events() {
    descriptor.async_read_some(
        asio::buffer(buffer), [self = shared_from_this()](const error_code& ec, size_t n) {
          if (ec == asio::error::operation_aborted || !self->descriptor.is_open()) return;
          if (ec) {
            ZT_LOG_ERROR("component=local-config stopped watching {}: {}", self->path.string(),
                         ec.message());
            return;
          }
          if (self->relevant(n)) self->reload();
          self->read_events();
        });
  }

  // Whether the batch holds an event that may have changed the file. Names are not compared:
  // a ConfigMap update renames a "..data" symlink, not the file, and reload() skips content
  // that did not change anyway.
  bool relevant(size_t n) {
    bool changed = false;
    for (size_t offset = 0; offset + sizeof(inotify_event) <= n;) {
      inotify_event event;
      std::memcpy(&event, buffer.data() + offset, sizeof(event));
      if (event.mask & (IN_CLOSE_WRITE | IN_MOVED_TO | IN_Q_OVERFLOW)) changed = true;
      if (event.mask & IN_IGNORED) {
        ZT_LOG_ERROR("component=local-config the directory of {} is gone; no more reloads",
                     path.string());
      }
      offset += sizeof(inotify_event) + event.len;
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
    if (!result) ZT_LOG_WARN("component=local-config keeping previous config: {}", result.error().message);
    if (on_reload) on_reload(result);
  }

  std::filesystem::path path;
  StateStore& store;
  ReloadCallback on_reload;
  asio::posix::stream_descriptor descriptor;
  alignas(inotify_event) std::array<char, 16 * 1024> buffer{};
  std::optional<std::string> last_content;
};

LocalConfigWatcher::LocalConfigWatcher(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

LocalConfigWatcher::~LocalConfigWatcher() { stop(); }

Result<std::unique_ptr<LocalConfigWatcher>> LocalConfigWatcher::start(
    asio::any_io_executor executor, std::filesystem::path path, StateStore& store,
    ReloadCallback on_reload) {
  int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd < 0) return fail(std::error_code(errno, std::system_category()), "inotify_init1");
  auto dir = path.parent_path();
  if (dir.empty()) dir = ".";
  if (inotify_add_watch(fd, dir.c_str(), IN_CLOSE_WRITE | IN_MOVED_TO) < 0) {
    auto err = std::error_code(errno, std::system_category());
    ::close(fd);
    return fail(err, "watching the directory of the local config " + dir.string());
  }
  auto impl = std::make_shared<Impl>(std::move(executor), std::move(path), store,
                                     std::move(on_reload));
  impl->descriptor.assign(fd);
  impl->last_content = read_file(impl->path);
  impl->read_events();
  return std::unique_ptr<LocalConfigWatcher>(new LocalConfigWatcher(std::move(impl)));
}

void LocalConfigWatcher::stop() {
  error_code ignored;
  impl_->descriptor.close(ignored);
}

}  // namespace zt::state
