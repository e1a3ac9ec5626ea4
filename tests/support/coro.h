// Runs a coroutine to completion on a test's io_context, with a hard limit: the test fails
// (instead of hanging) when the coroutine does not finish in time. Exceptions are rethrown.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <exception>

#include "common/async/asio.h"

namespace zt::testing {

template <class F>
void run_coroutine(asio::io_context& io, F&& make, std::chrono::seconds limit = std::chrono::seconds(120)) {
  bool done = false;
  std::exception_ptr error;
  asio::co_spawn(io, std::forward<F>(make)(), [&](std::exception_ptr e) {
    error = e;
    done = true;
    io.stop();
  });
  io.run_for(limit);
  io.restart();
  ASSERT_TRUE(done) << "coroutine did not finish within " << limit.count() << " s";
  if (error) std::rethrow_exception(error);
}

}  // namespace zt::testing
