#include "common/async/task_group.h"

#include "common/base/log.h"

namespace zt::async {

void log_exception(const std::string& name, std::exception_ptr e) {
  if (!e) return;
  try {
    std::rethrow_exception(e);
  } catch (const boost::system::system_error& ex) {
    if (ex.code() != asio::error::operation_aborted) {
      ZT_LOG_ERROR("task {} failed: {}", name, ex.what());
    }
  } catch (const std::exception& ex) {
    ZT_LOG_ERROR("task {} failed: {}", name, ex.what());
  } catch (...) {
    ZT_LOG_ERROR("task {} failed with a non-standard exception", name);
  }
}

void TaskGroup::spawn(awaitable<void> task, std::string name) {
  auto it = signals_.emplace(signals_.end());
  asio::co_spawn(ex_, std::move(task),
                 asio::bind_cancellation_slot(
                     it->slot(), [this, it, name = std::move(name)](std::exception_ptr e) {
                       log_exception(name, e);
                       signals_.erase(it);
                       if (signals_.empty()) idle_.notify();
                     }));
}

void TaskGroup::cancel_all(asio::cancellation_type type) {
  // Emit from the group's own thread: co_spawn forwards the signal with a dispatch that must
  // run inline, before the task can complete and free its slot.
  asio::dispatch(ex_, [this, type] {
    for (auto& s : signals_) s.emit(type);
  });
}

awaitable<bool> TaskGroup::wait_empty(std::chrono::steady_clock::duration d) {
  auto deadline = std::chrono::steady_clock::now() + d;
  while (!signals_.empty()) {
    auto left = deadline - std::chrono::steady_clock::now();
    if (left <= std::chrono::steady_clock::duration::zero()) co_return false;
    co_await with_timeout(idle_.wait(), left);
  }
  co_return true;
}

void spawn_logged(asio::any_io_executor ex, awaitable<void> task, std::string name) {
  asio::co_spawn(ex, std::move(task),
                 [name = std::move(name)](std::exception_ptr e) { log_exception(name, e); });
}

}  // namespace zt::async
