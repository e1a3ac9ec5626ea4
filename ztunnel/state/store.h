// StateStore: where the current State snapshot lives. One writer (the local config watcher now,
// the xDS client later) publishes whole snapshots; any thread reads current() without a lock
// and keeps the snapshot alive for as long as it holds the shared_ptr.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "ztunnel/state/state.h"

namespace zt::state {

class StateStore {
 public:
  using Listener = std::function<void(const std::shared_ptr<const State>&)>;

  explicit StateStore(std::shared_ptr<const State> initial = State::empty());
  StateStore(const StateStore&) = delete;
  StateStore& operator=(const StateStore&) = delete;

  std::shared_ptr<const State> current() const { return current_.load(std::memory_order_acquire); }

  // Number of publish() calls so far; lets tests and readiness tell snapshots apart.
  uint64_t version() const { return version_.load(std::memory_order_acquire); }

  // Single writer. Listeners run on the writer's thread after the snapshot is visible.
  void publish(std::shared_ptr<const State> next);

  // For reactions to a change (re-checking open connections against new policies). Not on any
  // per-connection path.
  void on_publish(Listener listener);

 private:
  std::atomic<std::shared_ptr<const State>> current_;
  std::atomic<uint64_t> version_{0};
  std::mutex listeners_mutex_;
  std::vector<Listener> listeners_;
};

}  // namespace zt::state
