#include "common/fs/inotify.h"

#include <cerrno>
#include <cstring>

#include <unistd.h>

namespace zt::fs {

std::vector<InotifyEvent> decode_inotify_events(const char* data, size_t size) {
  std::vector<InotifyEvent> events;
  for (size_t offset = 0; offset + sizeof(inotify_event) <= size;) {
    inotify_event raw;
    std::memcpy(&raw, data + offset, sizeof(raw));
    size_t next = offset + sizeof(inotify_event) + raw.len;
    if (next > size) break;  // the kernel never splits a record; be safe anyway
    InotifyEvent event{raw.wd, raw.mask, {}};
    if (raw.len > 0) {
      const char* name = data + offset + sizeof(inotify_event);
      event.name.assign(name, strnlen(name, raw.len));
    }
    events.push_back(std::move(event));
    offset = next;
  }
  return events;
}

Result<std::shared_ptr<InotifyReader>> InotifyReader::create(asio::any_io_executor executor) {
  int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd < 0) return fail(std::error_code(errno, std::system_category()), "inotify_init1");
  auto reader = std::make_shared<InotifyReader>(std::move(executor));
  reader->descriptor_.assign(fd);
  return reader;
}

Result<int> InotifyReader::add(const std::filesystem::path& path, uint32_t mask) {
  if (!descriptor_.is_open()) return fail("inotify reader is closed");
  int wd = inotify_add_watch(descriptor_.native_handle(), path.c_str(), mask);
  if (wd < 0)
    return fail(std::error_code(errno, std::system_category()), "watching " + path.string());
  return wd;
}

void InotifyReader::start(EventsHandler on_events, ErrorHandler on_error) {
  on_events_ = std::move(on_events);
  on_error_ = std::move(on_error);
  read();
}

void InotifyReader::read() {
  descriptor_.async_read_some(
      asio::buffer(buffer_), [self = shared_from_this()](const error_code& ec, size_t n) {
        if (ec == asio::error::operation_aborted || !self->descriptor_.is_open()) {
          self->on_events_ = nullptr;
          self->on_error_ = nullptr;
          return;
        }
        if (ec) {
          auto on_error = std::move(self->on_error_);
          self->on_events_ = nullptr;
          self->on_error_ = nullptr;
          if (on_error) on_error(ec);
          return;
        }
        auto events = decode_inotify_events(self->buffer_.data(), n);
        // Copy: the handler may call close(), which must not destroy the running function.
        auto handler = self->on_events_;
        if (handler) handler(events);
        if (self->descriptor_.is_open()) self->read();
      });
}

void InotifyReader::close() {
  error_code ignored;
  descriptor_.close(ignored);
}

}  // namespace zt::fs
