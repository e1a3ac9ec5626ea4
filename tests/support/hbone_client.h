// A one-request HBONE client for tests that check how a ztunnel answers a CONNECT (status codes,
// refusals) without going through a client-side ztunnel.
#pragma once

#include <chrono>
#include <string>

#include "common/async/asio.h"
#include "common/async/task_group.h"
#include "common/async/timeout.h"
#include "common/base/result.h"
#include "common/h2/connection.h"

namespace zt::testing {

// Closes `c` and waits for its run() (spawned in `tasks`) to end, so that a test's io_context
// holds no work of ours when the test stops running it or destroys it.
// (The group must not go while its task runs: cancelled, run() ends within about 2 s, and a
// test that hangs here is stopped by run_coroutine's limit.)
inline awaitable<void> close_and_join(h2::Connection& c, async::TaskGroup& tasks) {
  c.close();
  for (;;) {
    const bool ended = co_await tasks.wait_empty(std::chrono::seconds(5));
    if (ended) co_return;
    tasks.cancel_all();
  }
}

// Opens a fresh HBONE connection to `to` (TLS with `ctx`, HTTP/2) and sends one request; the
// answer's HTTP status, or the error that prevented one. `to` and `ctx` must outlive the call.
inline awaitable<Result<int>> hbone_request(const tcp::endpoint& to, asio::ssl::context& ctx,
                                            std::string method, std::string authority,
                                            h2::Headers headers = {}) {
  auto ex = co_await asio::this_coro::executor;
  tcp::socket s(ex);
  auto [cec] = co_await s.async_connect(to, kTuple);
  if (cec) co_return fail(cec, "connect");
  h2::TlsStream tls(std::move(s), ctx);
  auto [hec] = co_await tls.async_handshake(asio::ssl::stream_base::client, kTuple);
  if (hec) co_return fail(hec, "handshake");
  auto conn = h2::Connection::create(std::move(tls), h2::Role::kClient, h2::Settings{});
  if (!conn) co_return tl::unexpected(conn.error());
  auto c = *conn;
  async::TaskGroup tasks(ex);
  tasks.spawn(c->run(), "test-hbone-client");
  auto st = co_await async::with_timeout(c->open_request(method, authority, headers),
                                         std::chrono::seconds(10));
  co_await close_and_join(*c, tasks);
  if (!st) co_return fail("no answer in 10s");
  if (!*st) {
    const auto& m = (*st).error().message;
    if (m.rfind("http status: ", 0) == 0) co_return std::stoi(m.substr(13));
    co_return tl::unexpected((*st).error());
  }
  co_return 200;
}

}  // namespace zt::testing
