#include "ztunnel/state/store.h"

#include <utility>

namespace zt::state {

StateStore::StateStore(std::shared_ptr<const State> initial) : current_(std::move(initial)) {}

void StateStore::publish(std::shared_ptr<const State> next) {
  current_.store(next, std::memory_order_release);
  version_.fetch_add(1, std::memory_order_acq_rel);
  std::vector<Listener> listeners;
  {
    std::lock_guard lock(listeners_mutex_);
    listeners = listeners_;
  }
  for (const auto& listener : listeners) listener(next);
}

void StateStore::on_publish(Listener listener) {
  std::lock_guard lock(listeners_mutex_);
  listeners_.push_back(std::move(listener));
}

}  // namespace zt::state
