// Readiness: ztunnel is ready when no start-up task is pending. Each task holds a ReadyBlock
// (RAII) until it has done what readiness waits for ("state manager" until the first full xDS
// set, "proxy" until the listeners are up, ...). GET /healthz/ready answers 200 "ready" when no
// block is left, else 500 "not ready, pending: a, b" (names sorted, as Istio's ztunnel does).
//
// Thread-safe. A ReadyBlock may outlive its Readiness.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace zt::admin {

namespace detail {
struct ReadinessState;
}

class ReadyBlock {
 public:
  ReadyBlock() = default;  // holds nothing
  ReadyBlock(ReadyBlock&& other) noexcept;
  ReadyBlock& operator=(ReadyBlock&& other) noexcept;
  ReadyBlock(const ReadyBlock&) = delete;
  ReadyBlock& operator=(const ReadyBlock&) = delete;
  ~ReadyBlock() { release(); }

  // Marks the task as done. Idempotent.
  void release();
  bool holds() const { return state_ != nullptr; }

 private:
  friend class Readiness;
  ReadyBlock(std::shared_ptr<detail::ReadinessState> state, uint64_t id)
      : state_(std::move(state)), id_(id) {}

  std::shared_ptr<detail::ReadinessState> state_;
  uint64_t id_ = 0;
};

class Readiness {
 public:
  Readiness();

  // Registers a pending task; readiness waits until the returned block is released.
  [[nodiscard]] ReadyBlock register_task(std::string name);

  bool ready() const;
  // Names of the pending tasks, sorted, each once.
  std::vector<std::string> pending() const;

 private:
  std::shared_ptr<detail::ReadinessState> state_;
};

}  // namespace zt::admin
