#include "ztunnel/admin/readiness.h"

#include <algorithm>
#include <map>
#include <mutex>

namespace zt::admin {
namespace detail {

struct ReadinessState {
  std::mutex mu;
  uint64_t next_id = 0;
  std::map<uint64_t, std::string> pending;
};

}  // namespace detail

ReadyBlock::ReadyBlock(ReadyBlock&& other) noexcept
    : state_(std::move(other.state_)), id_(other.id_) {}

ReadyBlock& ReadyBlock::operator=(ReadyBlock&& other) noexcept {
  if (this != &other) {
    release();
    state_ = std::move(other.state_);
    id_ = other.id_;
  }
  return *this;
}

void ReadyBlock::release() {
  if (!state_) return;
  {
    std::lock_guard lock(state_->mu);
    state_->pending.erase(id_);
  }
  state_.reset();
}

Readiness::Readiness() : state_(std::make_shared<detail::ReadinessState>()) {}

ReadyBlock Readiness::register_task(std::string name) {
  std::lock_guard lock(state_->mu);
  auto id = ++state_->next_id;
  state_->pending.emplace(id, std::move(name));
  return ReadyBlock(state_, id);
}

bool Readiness::ready() const {
  std::lock_guard lock(state_->mu);
  return state_->pending.empty();
}

std::vector<std::string> Readiness::pending() const {
  std::vector<std::string> names;
  {
    std::lock_guard lock(state_->mu);
    names.reserve(state_->pending.size());
    for (const auto& [id, name] : state_->pending) names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  return names;
}

}  // namespace zt::admin
