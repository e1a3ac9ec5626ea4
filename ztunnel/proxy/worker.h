// A data-plane worker: one thread running one io_context, with its own listening sockets
// (SO_REUSEPORT), its own HBONE pool, and the coroutines of every connection it accepted.
// Nothing here is shared with other workers except the ProxyContext.
#pragma once

#include <atomic>
#include <optional>
#include <thread>
#include <vector>

#include "common/async/task_group.h"
#include "ztunnel/proxy/context.h"
#include "ztunnel/proxy/inbound.h"
#include "ztunnel/proxy/outbound.h"

namespace zt::proxy {

struct ListenAddresses {
  std::vector<tcp::endpoint> hbone;      // <workload ip>:15008
  std::vector<tcp::endpoint> plaintext;  // <workload ip>:15006
  std::optional<tcp::endpoint> socks5;
};

class Worker {
 public:
  Worker(ProxyContext& ctx, int index);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Binds this worker's listeners before it starts. Returns the addresses actually bound (port
  // 0 resolved), which the next worker must bind too so they share the port.
  Result<ListenAddresses> bind(const ListenAddresses& at);
  void start();

  // Thread-safe. Stops accepting, sends GOAWAY on HBONE connections, lets connections finish
  // for `deadline`, then closes what is left. `done` runs on this worker's thread at the end.
  void drain(std::chrono::milliseconds deadline, std::function<void()> done);
  void join();

  h2::Pool& pool() { return outbound_.pool(); }
  asio::io_context& io() { return io_; }

 private:
  awaitable<void> run_drain(std::chrono::milliseconds deadline, std::function<void()> done);

  ProxyContext& ctx_;
  int index_;
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  async::TaskGroup tasks_;
  Inbound inbound_;
  Outbound outbound_;
  enum class Kind { kHbone, kPlaintext, kSocks5 };
  struct Listener {
    tcp::acceptor acceptor;
    Kind kind;
  };
  std::vector<Listener> listeners_;
  std::thread thread_;
};

}  // namespace zt::proxy
