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
  explicit Event(asio::any_io_executor ex)
      : timer_(std::move(ex), asio::steady_timer::time_point::max()) {}

  // Returns false if the wait was cancelled from outside (not by notify()).
  awaitable<bool> wait() {
    auto gen = generation_;
    // A wait_until() before may have left its deadline on the timer.
    if (timer_.expiry() != asio::steady_timer::time_point::max()) {
      timer_.expires_at(asio::steady_timer::time_point::max());
    }
    auto [ec] = co_await timer_.async_wait(kTuple);
    (void)ec;
    co_return generation_ != gen;
  }

  enum class Wake { kNotified, kExpired, kCancelled };

  // wait() that gives up at `deadline`, with no second timer: the Event's own timer expires then.
  // For an Event with one waiter at a time only: moving the deadline cancels any other wait.
  awaitable<Wake> wait_until(asio::steady_timer::time_point deadline) {
    auto gen = generation_;
    if (timer_.expiry() != deadline) timer_.expires_at(deadline);
    auto [ec] = co_await timer_.async_wait(kTuple);
    if (generation_ != gen) co_return Wake::kNotified;
    co_return ec ? Wake::kCancelled : Wake::kExpired;
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
