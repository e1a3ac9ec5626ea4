#include "ztunnel/proxy/worker.h"

#include "common/base/log.h"
#include "common/net/address.h"
#include "ztunnel/proxy/capture.h"
#include "ztunnel/proxy/inbound_plaintext.h"
#include "ztunnel/proxy/listener.h"
#include "ztunnel/proxy/socks5_server.h"

namespace zt::proxy {

Worker::Worker(ProxyContext& ctx, int index)
    : ctx_(ctx),
      index_(index),
      io_(1),
      work_(io_.get_executor()),
      tasks_(io_.get_executor()),
      tracker_(ConnectionTracker::create(io_.get_executor(), ctx.state)) {}

Worker::~Worker() {
  tracker_->stop();
  io_.stop();
  join();
}

Result<ListenAddresses> Worker::bind(std::shared_ptr<const PodScope> scope,
                                     const ListenAddresses& at) {
  auto pod = std::make_shared<Pod>(ctx_, scope, io_.get_executor(), tracker_);
  ListenAddresses bound;
  auto add = [&](const tcp::endpoint& ep, Kind kind,
                 std::string_view name) -> Result<tcp::endpoint> {
    auto a = scope->listen(io_.get_executor(), ep, name);
    if (!a) return tl::unexpected(a.error());
    auto local = a->local_endpoint();
    if (index_ == 0) {
      ZT_LOG_INFO("listening component={} address={}", name, net::format_endpoint(local));
    }
    pod->listeners.push_back(Listener{std::move(*a), kind});
    return local;
  };
  for (const auto& ep : at.hbone) {
    auto b = add(ep, Kind::kHbone, "hbone");
    if (!b) return tl::unexpected(b.error());
    bound.hbone.push_back(*b);
  }
  for (const auto& ep : at.plaintext) {
    auto b = add(ep, Kind::kPlaintext, "inbound_plaintext");
    if (!b) return tl::unexpected(b.error());
    bound.plaintext.push_back(*b);
  }
  if (at.socks5) {
    auto b = add(*at.socks5, Kind::kSocks5, "socks5");
    if (!b) return tl::unexpected(b.error());
    bound.socks5 = *b;
  }
  pods_[0] = std::move(pod);
  return bound;
}

Status Worker::add_pod(uint64_t id, std::shared_ptr<const PodScope> scope, bool register_maps) {
  if (draining_) return fail("the worker is draining");
  if (pods_.count(id) != 0) return {};
  auto pod = std::make_shared<Pod>(ctx_, scope, io_.get_executor(), tracker_);
  bool v4 = false, v6 = false;
  for (const auto& ip : scope->local.ips) (ip.is_v4() ? v4 : v6) = true;
  if (!v4 && !v6) v4 = true;  // no address known yet: the outbound listener still works
  struct Want {
    asio::ip::address at;
    uint16_t port;
    Kind kind;
    const char* name;
  };
  std::vector<Want> want;
  for (bool is_v4 : {true, false}) {
    if (is_v4 ? !v4 : !v6) continue;
    asio::ip::address lo = is_v4 ? asio::ip::address(asio::ip::address_v4::loopback())
                                 : asio::ip::address(asio::ip::address_v6::loopback());
    want.push_back({lo, kOutboundPort, Kind::kCapture, "outbound"});
    want.push_back({lo, kInboundPlaintextPort, Kind::kPlaintext, "inbound_plaintext"});
    want.push_back({lo, kHbonePort, Kind::kHbone, "hbone"});
  }
  for (const auto& w : want) {
    auto a = scope->listen(io_.get_executor(), tcp::endpoint(w.at, w.port), w.name);
    if (!a) return tl::unexpected(a.error());  // `pod` and its sockets go away
    pod->listeners.push_back(Listener{std::move(*a), w.kind});
  }
  if (register_maps && scope->maps) {
    for (const auto& ip : scope->local.ips) {
      for (auto& l : pod->listeners) {
        bool family = l.acceptor.local_endpoint().address().is_v4() == ip.is_v4();
        if (!family || (l.kind != Kind::kHbone && l.kind != Kind::kPlaintext)) continue;
        auto kind =
            l.kind == Kind::kHbone ? bpf::ListenerKind::kHbone : bpf::ListenerKind::kPlaintext;
        if (auto st = scope->maps->set_listener(ip, kind, l.acceptor.native_handle()); !st) {
          return tl::unexpected(
              wrap(st.error(), fmt::format("registering the listener for {}", ip.to_string())));
        }
      }
    }
  }
  auto& stored = pods_[id];
  stored = std::move(pod);
  if (started_) start_pod(*stored);
  return {};
}

void Worker::remove_pod(uint64_t id, std::chrono::milliseconds deadline) {
  auto it = pods_.find(id);
  if (it == pods_.end()) return;
  Pod* pod = it->second.get();
  removing_.push_back(std::move(it->second));
  pods_.erase(it);
  close_listeners(*pod);
  tasks_.spawn(run_remove(pod, deadline), "pod-remove");
}

// `pod` is owned by removing_ until its tasks are gone (not by a coroutine parameter: g++ 12
// mishandles non-trivial by-value coroutine parameters).
awaitable<void> Worker::run_remove(Pod* pod, std::chrono::milliseconds deadline) {
  if (!co_await pod->tasks.wait_empty(deadline)) {
    ZT_LOG_INFO("component=drain worker={} pod={} msg=\"deadline passed, closing {} open tasks\"",
                index_, pod->scope->uid, pod->tasks.size());
    pod->tasks.cancel_all(asio::cancellation_type::terminal);
    // Connections that ignore even that stay in removing_ (never freed under a running task).
    if (!co_await pod->tasks.wait_empty(std::chrono::seconds(2))) co_return;
  }
  std::erase_if(removing_, [pod](const std::shared_ptr<Pod>& p) { return p.get() == pod; });
}

void Worker::close_listeners(Pod& pod) {
  error_code ec;
  for (auto& l : pod.listeners) l.acceptor.close(ec);
  pod.inbound.drain_all();
  pod.outbound.pool().drain_all();
}

void Worker::start_pod(Pod& pod) {
  for (auto& l : pod.listeners) {
    switch (l.kind) {
      case Kind::kHbone:
        pod.tasks.spawn(accept_loop(l.acceptor, "hbone",
                                    [&pod](tcp::socket s) {
                                      pod.tasks.spawn(pod.inbound.serve_connection(std::move(s)),
                                                      "inbound-connection");
                                    }),
                        "hbone-accept");
        break;
      case Kind::kPlaintext:
        pod.tasks.spawn(accept_loop(l.acceptor, "inbound_plaintext",
                                    [this, &pod](tcp::socket s) {
                                      error_code ec;
                                      auto original_dst = s.local_endpoint(ec);
                                      pod.tasks.spawn(
                                          serve_plaintext(std::move(s), original_dst, ctx_,
                                                          pod.scope, tracker_.get()),
                                          "inbound-plaintext");
                                    }),
                        "plaintext-accept");
        break;
      case Kind::kSocks5:
        pod.tasks.spawn(accept_loop(l.acceptor, "socks5",
                                    [this, &pod](tcp::socket s) {
                                      pod.tasks.spawn(
                                          serve_socks5(std::move(s), ctx_, pod.outbound),
                                          "socks5-connection");
                                    }),
                        "socks5-accept");
        break;
      case Kind::kCapture:
        pod.tasks.spawn(accept_loop(l.acceptor, "outbound",
                                    [this, &pod](tcp::socket s) {
                                      pod.tasks.spawn(
                                          serve_captured(std::move(s), ctx_, pod.outbound),
                                          "outbound-connection");
                                    }),
                        "outbound-accept");
        break;
    }
  }
}

void Worker::start() {
  started_ = true;
  for (auto& [id, pod] : pods_) start_pod(*pod);
  thread_ = std::thread([this] { io_.run(); });
}

void Worker::drain(std::chrono::milliseconds deadline, std::function<void()> done) {
  async::spawn_logged(io_.get_executor(), run_drain(deadline, std::move(done)), "worker-drain");
}

awaitable<void> Worker::run_drain(std::chrono::milliseconds deadline, std::function<void()> done) {
  draining_ = true;
  for (auto& [id, pod] : pods_) close_listeners(*pod);
  auto until = std::chrono::steady_clock::now() + deadline;
  size_t open = 0;
  for (auto& [id, pod] : pods_) {
    auto left = until - std::chrono::steady_clock::now();
    if (left < std::chrono::steady_clock::duration::zero()) left = {};
    if (!co_await pod->tasks.wait_empty(left)) open += pod->tasks.size();
  }
  if (open > 0) {
    ZT_LOG_WARN("component=drain worker={} msg=\"deadline passed, closing {} open tasks\"", index_,
                open);
    for (auto& [id, pod] : pods_) pod->tasks.cancel_all(asio::cancellation_type::terminal);
    for (auto& [id, pod] : pods_) co_await pod->tasks.wait_empty(std::chrono::seconds(2));
  }
  // Pods removed before the drain finish on their own deadline (they own their tasks; not
  // cancelled from here so none is freed under a running connection).
  co_await tasks_.wait_empty(deadline + std::chrono::seconds(3));
  work_.reset();
  if (done) done();
}

void Worker::join() {
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

}  // namespace zt::proxy
