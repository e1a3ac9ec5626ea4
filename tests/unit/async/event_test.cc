// async::Event::wait_until: the Event's own timer gives up at the deadline, a notify() wakes the
// waiter first, a cancellation from outside is told apart from both, and a plain wait() after a
// deadline wait is not cut short by the deadline left on the timer.
#include <gtest/gtest.h>

#include <chrono>

#include "common/async/timeout.h"
#include "tests/support/coro.h"

namespace zt::async {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

TEST(AsyncEvent, WaitUntilExpiresAtTheDeadlineWhenNobodyNotifies) {
  asio::io_context io;
  Event event(io.get_executor());
  testing::run_coroutine(io, [&]() -> awaitable<void> {
    const auto start = Clock::now();
    const auto woke = co_await event.wait_until(start + 50ms);
    EXPECT_EQ(woke, Event::Wake::kExpired);
    EXPECT_GE(Clock::now() - start, 50ms);
    // A deadline already passed expires at once.
    EXPECT_EQ(co_await event.wait_until(Clock::now() - 1ms), Event::Wake::kExpired);
  });
}

TEST(AsyncEvent, WaitUntilWakesOnNotifyBeforeTheDeadline) {
  asio::io_context io;
  Event event(io.get_executor());
  asio::steady_timer later(io, 20ms);
  later.async_wait([&](error_code) { event.notify(); });
  testing::run_coroutine(io, [&]() -> awaitable<void> {
    const auto start = Clock::now();
    EXPECT_EQ(co_await event.wait_until(start + 10s), Event::Wake::kNotified);
    EXPECT_LT(Clock::now() - start, 5s);
  });
}

TEST(AsyncEvent, WaitUntilTellsACancellationFromOutsideApart) {
  asio::io_context io;
  Event event(io.get_executor());
  asio::cancellation_signal signal;
  asio::steady_timer later(io, 20ms);
  later.async_wait([&](error_code) { signal.emit(asio::cancellation_type::terminal); });
  std::optional<Event::Wake> woke;
  asio::co_spawn(
      io, [&]() -> awaitable<void> { woke = co_await event.wait_until(Clock::now() + 10s); },
      asio::bind_cancellation_slot(signal.slot(), [](std::exception_ptr) {}));
  io.run_for(5s);
  ASSERT_TRUE(woke.has_value()) << "the wait did not end on cancellation";
  EXPECT_EQ(*woke, Event::Wake::kCancelled);
}

TEST(AsyncEvent, PlainWaitAfterADeadlineWaitIgnoresTheOldDeadline) {
  asio::io_context io;
  Event event(io.get_executor());
  asio::steady_timer later(io);
  testing::run_coroutine(io, [&]() -> awaitable<void> {
    EXPECT_EQ(co_await event.wait_until(Clock::now() + 10ms), Event::Wake::kExpired);
    // The timer still holds the passed deadline; wait() must sleep until notify() all the same.
    later.expires_after(100ms);
    later.async_wait([&](error_code) { event.notify(); });
    const auto start = Clock::now();
    EXPECT_TRUE(co_await event.wait());
    EXPECT_GE(Clock::now() - start, 100ms);
  });
}

}  // namespace
}  // namespace zt::async
