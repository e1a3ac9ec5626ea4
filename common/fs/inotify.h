// InotifyReader: one inotify instance read on an Asio executor, delivering each batch of events
// to a handler. The shared core of the file watchers (ztunnel's local config, meshd's manifest
// directory); what to watch and what an event means stay with them.
//
// Threading: all callbacks run on the executor given to create(); call add(), start() and
// close() from that executor's thread or while it is not running.
#pragma once

#include <sys/inotify.h>

#include <array>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio/posix/stream_descriptor.hpp>

#include "common/async/asio.h"
#include "common/base/result.h"

namespace zt::fs {

struct InotifyEvent {
  int watch = -1;     // the descriptor add() returned
  uint32_t mask = 0;  // IN_* bits
  std::string name;   // entry name inside a watched directory ("" for the directory itself)
};

class InotifyReader : public std::enable_shared_from_this<InotifyReader> {
 public:
  using EventsHandler = std::function<void(const std::vector<InotifyEvent>&)>;
  // Called once when reading fails for a reason other than close(); no more events follow.
  using ErrorHandler = std::function<void(const error_code&)>;

  static Result<std::shared_ptr<InotifyReader>> create(asio::any_io_executor executor);

  // inotify_add_watch; returns the watch descriptor.
  Result<int> add(const std::filesystem::path& path, uint32_t mask);

  // Starts reading. The handlers are dropped after close() or a read error, so they may hold
  // what owns this reader without keeping it alive forever once closed.
  void start(EventsHandler on_events, ErrorHandler on_error = {});

  void close();
  bool is_open() const { return descriptor_.is_open(); }

  // Public for make_shared; use create().
  explicit InotifyReader(asio::any_io_executor executor) : descriptor_(std::move(executor)) {}

 private:
  void read();

  asio::posix::stream_descriptor descriptor_;
  EventsHandler on_events_;
  ErrorHandler on_error_;
  alignas(inotify_event) std::array<char, 16 * 1024> buffer_{};
};

// Splits a buffer of raw inotify records (exposed for tests).
std::vector<InotifyEvent> decode_inotify_events(const char* data, size_t size);

}  // namespace zt::fs
