// A data-plane worker: one thread running one io_context, with its own listening sockets
// (SO_REUSEPORT), and the coroutines of every connection it accepted.
//
// A worker serves one or more pods (PodScope): dedicated mode has one, bound before start();
// shared mode adds and removes enrolled pods while running (add_pod/remove_pod on the worker's
// thread). Each pod has its own listeners, Inbound, Outbound (so its own HBONE pool) and task
// group, so removing a pod drains exactly its connections. Nothing here is shared with other
// workers except the ProxyContext and the (immutable) scopes.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "common/async/task_group.h"
#include "ztunnel/proxy/authz_guard.h"
#include "ztunnel/proxy/context.h"
#include "ztunnel/proxy/inbound.h"
#include "ztunnel/proxy/outbound.h"
#include "ztunnel/proxy/pod_scope.h"

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

  // Dedicated mode: binds the listeners of `scope` before the worker starts. Returns the
  // addresses actually bound (port 0 resolved), which the next worker must bind too so they
  // share the port.
  Result<ListenAddresses> bind(std::shared_ptr<const PodScope> scope, const ListenAddresses& at);

  // Shared mode, on this worker's thread (or before start()): opens the in-pod listeners of
  // `scope` (127.0.0.1:15001/15006/15008, and [::1] when the pod has IPv6) inside its netns
  // and starts accepting. `register_maps`: also put the 15006/15008 listeners in the capture
  // maps for every pod IP (one worker does it; sk_lookup picks within the reuseport group).
  // On error nothing of the pod is left on this worker.
  Status add_pod(uint64_t id, std::shared_ptr<const PodScope> scope, bool register_maps);
  // On this worker's thread: closes the pod's listeners at once (its map entries go with the
  // sockets), lets its open connections finish for `deadline`, then closes them. Unknown id:
  // no-op.
  void remove_pod(uint64_t id, std::chrono::milliseconds deadline);

  void start();

  // Thread-safe. Stops accepting, sends GOAWAY on HBONE connections, lets connections finish
  // for `deadline`, then closes what is left. `done` runs on this worker's thread at the end.
  void drain(std::chrono::milliseconds deadline, std::function<void()> done);
  void join();

  asio::io_context& io() { return io_; }
  // Pods served now (this worker's thread).
  size_t pod_count() const { return pods_.size(); }

 private:
  enum class Kind { kHbone, kPlaintext, kSocks5, kCapture };
  struct Listener {
    tcp::acceptor acceptor;
    Kind kind;
  };
  // Everything of one pod on this worker. Members are destroyed in reverse: the listeners
  // and the proxies before the task group their coroutines ran in.
  struct Pod {
    Pod(ProxyContext& ctx, std::shared_ptr<const PodScope> s, asio::any_io_executor ex,
        std::shared_ptr<ConnectionTracker> tracker)
        : scope(s),
          tasks(ex),
          inbound(ctx, s, tasks, std::move(tracker)),
          outbound(ctx, s, ex, tasks) {}
    std::shared_ptr<const PodScope> scope;
    async::TaskGroup tasks;
    Inbound inbound;
    Outbound outbound;
    std::vector<Listener> listeners;
  };

  void start_pod(Pod& pod);
  void close_listeners(Pod& pod);
  awaitable<void> run_remove(Pod* pod, std::chrono::milliseconds deadline);
  awaitable<void> run_drain(std::chrono::milliseconds deadline, std::function<void()> done);

  ProxyContext& ctx_;
  int index_;
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  async::TaskGroup tasks_;  // worker-level: pod removals and the drain
  std::shared_ptr<ConnectionTracker> tracker_;
  std::map<uint64_t, std::shared_ptr<Pod>> pods_;
  // Pods being removed, until their connections are gone.
  std::vector<std::shared_ptr<Pod>> removing_;
  bool started_ = false;
  bool draining_ = false;
  std::thread thread_;
};

}  // namespace zt::proxy
