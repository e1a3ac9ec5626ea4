// with_timeout: runs an awaitable with a deadline. The operation is cancelled (per-operation
// cancellation) when the deadline passes first; the caller sees std::nullopt / false.
#pragma once

#include <chrono>
#include <optional>
#include <variant>

#include "common/async/asio.h"

namespace zt::async {

template <class T>
awaitable<std::optional<T>> with_timeout(awaitable<T> op, std::chrono::steady_clock::duration d) {
  using namespace asio::experimental::awaitable_operators;
  asio::steady_timer timer(co_await asio::this_coro::executor, d);
  auto result = co_await (std::move(op) || timer.async_wait(kTuple));
  if (result.index() == 0) co_return std::move(std::get<0>(result));
  co_return std::nullopt;
}

// Returns true when `op` finished before the deadline.
inline awaitable<bool> with_timeout(awaitable<void> op, std::chrono::steady_clock::duration d) {
  using namespace asio::experimental::awaitable_operators;
  asio::steady_timer timer(co_await asio::this_coro::executor, d);
  auto result = co_await (std::move(op) || timer.async_wait(kTuple));
  co_return result.index() == 0;
}

// A timer used as a condition variable on one executor: wait() suspends until notify() or
// cancellation. Single-threaded use only (one worker's io_context).
class Event {
 public:
  explicit Event(asio::any_io_executor ex) : timer_(std::move(ex), asio::steady_timer::time_point::max()) {}

  // Returns false if the wait was cancelled from outside (not by notify()).
  awaitable<bool> wait() {
    auto gen = generation_;
    auto [ec] = co_await timer_.async_wait(kTuple);
    (void)ec;
    co_return generation_ != gen;
  }

  void notify() {
    ++generation_;
    timer_.cancel();
  }

 private:
  asio::steady_timer timer_;
  uint64_t generation_ = 0;
};

}  // namespace zt::async
