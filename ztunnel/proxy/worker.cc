#include "ztunnel/proxy/worker.h"

#include "common/base/log.h"
#include "common/net/address.h"
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
      inbound_(ctx, tasks_),
      outbound_(ctx, io_.get_executor(), tasks_) {}

Worker::~Worker() {
  io_.stop();
  join();
}

Result<ListenAddresses> Worker::bind(const ListenAddresses& at) {
  ListenAddresses bound;
  auto add = [&](const tcp::endpoint& ep, Kind kind,
                 std::string_view name) -> Result<tcp::endpoint> {
    auto a = bind_listener(io_.get_executor(), ep, name);
    if (!a) return tl::unexpected(a.error());
    auto local = a->local_endpoint();
    if (index_ == 0) {
      ZT_LOG_INFO("listening component={} address={}", name, net::format_endpoint(local));
    }
    listeners_.push_back(Listener{std::move(*a), kind});
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
  return bound;
}

void Worker::start() {
  for (auto& l : listeners_) {
    switch (l.kind) {
      case Kind::kHbone:
        tasks_.spawn(accept_loop(l.acceptor, "hbone",
                                 [this](tcp::socket s) {
                                   tasks_.spawn(inbound_.serve_connection(std::move(s)),
                                                "inbound-connection");
                                 }),
                     "hbone-accept");
        break;
      case Kind::kPlaintext:
        tasks_.spawn(accept_loop(l.acceptor, "inbound_plaintext",
                                 [this](tcp::socket s) {
                                   error_code ec;
                                   auto original_dst = s.local_endpoint(ec);
                                   tasks_.spawn(serve_plaintext(std::move(s), original_dst, ctx_,
                                                                &inbound_.tracker()),
                                                "inbound-plaintext");
                                 }),
                     "plaintext-accept");
        break;
      case Kind::kSocks5:
        tasks_.spawn(accept_loop(l.acceptor, "socks5",
                                 [this](tcp::socket s) {
                                   tasks_.spawn(serve_socks5(std::move(s), ctx_, outbound_),
                                                "socks5-connection");
                                 }),
                     "socks5-accept");
        break;
    }
  }
  thread_ = std::thread([this] { io_.run(); });
}

void Worker::drain(std::chrono::milliseconds deadline, std::function<void()> done) {
  async::spawn_logged(io_.get_executor(), run_drain(deadline, std::move(done)), "worker-drain");
}

awaitable<void> Worker::run_drain(std::chrono::milliseconds deadline, std::function<void()> done) {
  error_code ec;
  for (auto& l : listeners_) l.acceptor.close(ec);
  inbound_.drain_all();
  outbound_.pool().drain_all();
  if (!co_await tasks_.wait_empty(deadline)) {
    ZT_LOG_WARN("component=drain worker={} msg=\"deadline passed, closing {} open tasks\"", index_,
                tasks_.size());
    tasks_.cancel_all(asio::cancellation_type::terminal);
    co_await tasks_.wait_empty(std::chrono::seconds(2));
  }
  work_.reset();
  if (done) done();
}

void Worker::join() {
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

}  // namespace zt::proxy
