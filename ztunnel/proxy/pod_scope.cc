#include "ztunnel/proxy/pod_scope.h"

#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>

#include "common/async/timeout.h"
#include "common/base/log.h"
#include "common/net/address.h"

#ifndef IP_TRANSPARENT
#define IP_TRANSPARENT 19
#endif
#ifndef IPV6_TRANSPARENT
#define IPV6_TRANSPARENT 75
#endif
#ifndef IPV6_FREEBIND
#define IPV6_FREEBIND 78
#endif

namespace zt::proxy {
namespace {

error_code last_error() { return error_code(errno, boost::system::system_category()); }

Status set_int_option(int fd, int level, int name, const char* what) {
  int one = 1;
  if (::setsockopt(fd, level, name, &one, sizeof(one)) != 0) return fail(last_error(), what);
  return {};
}

// Logged once per process: every delivery would otherwise repeat it.
std::atomic<bool> fallback_logged{false};

}  // namespace

Result<tcp::socket> PodScope::open_socket(const asio::any_io_executor& ex,
                                          const tcp& protocol) const {
  tcp::socket sock(ex);
  error_code ec;
  if (!netns) {
    sock.open(protocol, ec);
    if (ec) return fail(ec, "cannot open a socket");
    return sock;
  }
  auto fd = netns->socket(protocol.family(), SOCK_STREAM, mark);
  if (!fd) return tl::unexpected(wrap(fd.error(), "socket in the pod's netns"));
  sock.assign(protocol, fd->get(), ec);
  if (ec) return fail(ec, "cannot adopt the pod socket");
  fd->release();
  return sock;
}

Result<tcp::acceptor> PodScope::listen(const asio::any_io_executor& ex, const tcp::endpoint& at,
                                       std::string_view name) const {
  tcp::acceptor a(ex);
  error_code ec;
  auto what = [&](std::string_view step) {
    return fail(ec, fmt::format("{} {} ({}{}{})", step, net::format_endpoint(at), name,
                                netns ? " in the netns of pod " : "", netns ? uid : ""));
  };
  if (netns) {
    auto fd = netns->socket(at.protocol().family(), SOCK_STREAM, mark);
    if (!fd) return tl::unexpected(wrap(fd.error(), fmt::format("listener {}", name)));
    a.assign(at.protocol(), fd->get(), ec);
    if (ec) return what("cannot adopt the socket for");
    fd->release();
  } else {
    a.open(at.protocol(), ec);
    if (ec) return what("cannot open socket for");
  }
  a.set_option(tcp::acceptor::reuse_address(true), ec);
  if (auto st = set_int_option(a.native_handle(), SOL_SOCKET, SO_REUSEPORT, "SO_REUSEPORT"); !st) {
    return tl::unexpected(
        wrap(st.error(), fmt::format("listener {} at {}", name, net::format_endpoint(at))));
  }
  a.bind(at, ec);
  if (ec) return what("cannot bind");
  a.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return what("cannot listen on");
  return a;
}

std::shared_ptr<const state::Workload> PodScope::find_workload(const state::State& snapshot) const {
  for (const auto& ip : local.ips) {
    if (auto w = snapshot.find_workload(local.network, ip)) return w;
  }
  if (!in_pod()) return nullptr;
  // Not found by address: a pod the configuration lists by name only, or before its IPs are
  // known. A scan, but only on this miss path.
  for (const auto& w : snapshot.workloads()) {
    if (w->namespace_name == local.ns && w->name == local.name) return w;
  }
  return nullptr;
}

Status AppConnection::open(const asio::ip::address& client_ip, const tcp::endpoint& app) {
  if (!scope_.in_pod()) {
    error_code ec;
    socket_.open(app.protocol(), ec);
    if (ec) return fail(ec, "cannot open a socket to the app");
    return {};
  }
  if (client_ip.is_v4() == app.address().is_v4()) {
    auto st = open_transparent(client_ip, app);
    if (st) return st;
    if (!fallback_logged.exchange(true)) {
      ZT_LOG_WARN(
          "component=inbound msg=\"cannot deliver with the client's source IP, the app will see "
          "the pod's own IP (logged once)\" pod={} error=\"{}\"",
          scope_.uid, st.error().describe());
    }
    error_code ignored;
    socket_.close(ignored);
  }
  return open_fallback(app);
}

Status AppConnection::open_transparent(const asio::ip::address& client_ip,
                                       const tcp::endpoint& app) {
  bool v4 = app.address().is_v4();
  auto fd = scope_.netns->socket(v4 ? AF_INET : AF_INET6, SOCK_STREAM, netns::kDeliverMark);
  if (!fd) return tl::unexpected(fd.error());
  if (auto st = set_int_option(fd->get(), v4 ? SOL_IP : SOL_IPV6,
                               v4 ? IP_TRANSPARENT : IPV6_TRANSPARENT, "IP_TRANSPARENT");
      !st) {
    return st;
  }
  if (auto st = set_int_option(fd->get(), v4 ? SOL_IP : SOL_IPV6, v4 ? IP_FREEBIND : IPV6_FREEBIND,
                               "IP_FREEBIND");
      !st) {
    return st;
  }
  error_code ec;
  socket_.assign(app.protocol(), fd->get(), ec);
  if (ec) return fail(ec, "cannot adopt the delivery socket");
  fd->release();
  socket_.bind(tcp::endpoint(client_ip, 0), ec);
  if (ec) return fail(ec, fmt::format("cannot bind the client's IP {}", client_ip.to_string()));
  auto local = socket_.local_endpoint(ec);
  if (ec) return fail(ec, "getsockname of the delivery socket");
  if (scope_.maps) {
    if (auto st = scope_.maps->add_bypass(local, app); !st) {
      // Without the entry the SYN would come back to our own listener: a loop.
      return tl::unexpected(wrap(st.error(), "delivery bypass"));
    }
    bypass_.emplace(local, app);
  }
  spoofed_ = true;
  return {};
}

Status AppConnection::open_fallback(const tcp::endpoint& app) {
  auto sock = scope_.open_socket(socket_.get_executor(), app.protocol());
  if (!sock) return tl::unexpected(sock.error());
  socket_ = std::move(*sock);
  error_code ec;
  // Bound to the pod's own address (the destination) so the 4-tuple is known for the bypass.
  socket_.bind(tcp::endpoint(app.address(), 0), ec);
  if (ec) return fail(ec, fmt::format("cannot bind {}", app.address().to_string()));
  auto local = socket_.local_endpoint(ec);
  if (ec) return fail(ec, "getsockname of the delivery socket");
  if (scope_.maps) {
    if (auto st = scope_.maps->add_bypass(local, app); !st) {
      return tl::unexpected(wrap(st.error(), "delivery bypass"));
    }
    bypass_.emplace(local, app);
  }
  return {};
}

awaitable<error_code> AppConnection::connect(const tcp::endpoint& app,
                                             std::chrono::milliseconds timeout) {
  auto connected = co_await async::with_timeout(socket_.async_connect(app, kTuple), timeout);
  clear_bypass();
  if (!connected) co_return error_code(asio::error::timed_out);
  co_return std::get<0>(*connected);
}

void AppConnection::clear_bypass() {
  if (bypass_ && scope_.maps) scope_.maps->remove_bypass(bypass_->first, bypass_->second);
  bypass_.reset();
}

}  // namespace zt::proxy
