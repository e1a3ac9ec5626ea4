// Listening sockets for the workers of a proxy (ztunnel, the waypoint). Every worker binds its own
// socket with SO_REUSEPORT so the kernel spreads connections across workers and a connection stays
// on the worker that accepted it.
#pragma once

#include <string_view>

#include "common/async/asio.h"
#include "common/base/result.h"

namespace zt::net {

// Binds and listens. `name` appears in errors ("address already in use: 127.0.0.1:15008 (hbone)").
Result<tcp::acceptor> bind_listener(asio::any_io_executor ex, const tcp::endpoint& at,
                                    std::string_view name);

// Accepts until the acceptor is closed or the task is cancelled; each socket goes to `serve`.
// Backs off briefly after errors such as EMFILE instead of spinning.
template <class Serve>
awaitable<void> accept_loop(tcp::acceptor& acceptor, std::string_view name, Serve serve) {
  asio::steady_timer backoff(acceptor.get_executor());
  for (;;) {
    auto [ec, sock] = co_await acceptor.async_accept(kTuple);
    if (ec == asio::error::operation_aborted || ec == asio::error::bad_descriptor ||
        !acceptor.is_open()) {
      co_return;
    }
    if (ec) {
      backoff.expires_after(std::chrono::milliseconds(100));
      auto [wec] = co_await backoff.async_wait(kTuple);
      if (wec) co_return;
      continue;
    }
    serve(std::move(sock));
  }
}

}  // namespace zt::net
