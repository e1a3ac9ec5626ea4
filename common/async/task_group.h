// TaskGroup: the coroutines of one worker (connections, accept loops), each bound to its own
// cancellation signal so a drain can cancel them all. Exceptions that escape a task are logged
// here, never dropped. Single-threaded: use from the owning io_context only.
#pragma once

#include <chrono>
#include <list>
#include <string>

#include "common/async/asio.h"
#include "common/async/timeout.h"

namespace zt::async {

class TaskGroup {
 public:
  explicit TaskGroup(asio::any_io_executor ex) : ex_(ex), idle_(ex) {}
  TaskGroup(const TaskGroup&) = delete;
  TaskGroup& operator=(const TaskGroup&) = delete;

  // Starts `task`; `name` appears in the log if it throws.
  void spawn(awaitable<void> task, std::string name);

  // Emits cancellation to every running task (total: finish politely; terminal: stop now).
  // Safe to call from any thread; the emission runs on the group's executor.
  void cancel_all(asio::cancellation_type type = asio::cancellation_type::terminal);

  size_t size() const { return signals_.size(); }
  const asio::any_io_executor& executor() const { return ex_; }

  // Waits until no task is left or `d` passes; returns true when empty.
  awaitable<bool> wait_empty(std::chrono::steady_clock::duration d);

 private:
  asio::any_io_executor ex_;
  std::list<asio::cancellation_signal> signals_;
  Event idle_;
};

// Logs an exception that escaped task `name` (cancellation is not logged).
void log_exception(const std::string& name, std::exception_ptr e);

// Spawns a task outside any group, logging what escapes it.
void spawn_logged(asio::any_io_executor ex, awaitable<void> task, std::string name);

}  // namespace zt::async
