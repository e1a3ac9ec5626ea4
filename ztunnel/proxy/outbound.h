// Outbound: a client connection and its original destination become either an HBONE stream
// (over the worker's pool) or a plain TCP connection, per the destination resolution of
// ztunnel/state. Where the original destination came from (SOCKS5 now, eBPF capture later) is
// the caller's concern.
#pragma once

#include <functional>
#include <random>

#include "common/async/task_group.h"
#include "common/h2/pool.h"
#include "ztunnel/proxy/context.h"
#include "ztunnel/proxy/pod_scope.h"

namespace zt::proxy {

class Outbound {
 public:
  // Told whether the upstream is connected before any byte is relayed (SOCKS5 answers the
  // client here). Returning false abandons the connection.
  using BeforeCopy = std::function<awaitable<bool>(tcp::socket&, bool connected)>;

  // One per pod per worker: the pool never mixes pods (their identities and netns differ).
  Outbound(ProxyContext& ctx, std::shared_ptr<const PodScope> scope, asio::any_io_executor ex,
           async::TaskGroup& tasks);

  awaitable<void> proxy(tcp::socket client, tcp::endpoint original_dst, BeforeCopy before_copy);

  h2::Pool& pool() { return pool_; }
  const PodScope& scope() const { return *scope_; }

 private:
  awaitable<Result<std::shared_ptr<h2::Connection>>> dial(const h2::PoolKey& key);

  ProxyContext& ctx_;
  std::shared_ptr<const PodScope> scope_;
  asio::any_io_executor ex_;
  h2::Pool pool_;
  std::mt19937_64 rng_;
};

}  // namespace zt::proxy
