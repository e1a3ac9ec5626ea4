#include "sim/echo/echo_server.h"

#include <cstdlib>
#include <memory>
#include <thread>

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "common/async/asio.h"

namespace zt::sim::echo {
namespace beast = boost::beast;
namespace http = beast::http;

namespace {

std::string endpoint_text(const tcp::endpoint& ep) {
  auto a = ep.address();
  if (a.is_v6() && a.to_v6().is_v4_mapped()) {
    a = asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6());
  }
  if (a.is_v6()) return fmt::format("[{}]:{}", a.to_string(), ep.port());
  return fmt::format("{}:{}", a.to_string(), ep.port());
}

awaitable<void> serve(tcp::socket socket, std::string pod, bool ext_authz) {
  error_code ec;
  auto peer = socket.remote_endpoint(ec);
  auto local = socket.local_endpoint(ec);
  if (ec) co_return;
  const auto peer_text = endpoint_text(peer), local_text = endpoint_text(local);
  beast::flat_buffer buffer;
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.body_limit(64u << 20);
    auto [rec, n] = co_await http::async_read(socket, buffer, parser, kTuple);
    if (rec) break;
    auto& req = parser.get();
    http::response<http::string_body> res{http::status::ok, req.version()};
    res.set(http::field::server, "http-echo");
    res.set(http::field::content_type, "text/plain");
    res.keep_alive(req.keep_alive());
    if (ext_authz) {
      const bool allow = req["x-ext-authz"] == "allow";
      res.set("x-ext-authz-check-result", allow ? "allowed" : "denied");
      if (!allow) {
        res.result(http::status::forbidden);
        res.body() = kExtAuthzDenied;
      }
    } else {
      res.body() = echo_body(peer_text, local_text, pod, req.body());
    }
    res.prepare_payload();
    auto [wec, m] = co_await http::async_write(socket, res, kTuple);
    if (wec || !res.keep_alive()) break;
  }
  socket.shutdown(tcp::socket::shutdown_send, ec);
}

awaitable<void> accept_loop(tcp::acceptor& acceptor, std::string pod, bool ext_authz) {
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(kTuple);
    if (ec) {
      if (ec == asio::error::operation_aborted) co_return;
      continue;  // EMFILE and friends: keep serving the others
    }
    socket.set_option(tcp::no_delay(true), ec);
    asio::co_spawn(acceptor.get_executor(), serve(std::move(socket), pod, ext_authz),
                   asio::detached);
  }
}

}  // namespace

std::string echo_body(const std::string& peer, const std::string& local, const std::string& pod,
                      const std::string& request_body) {
  return fmt::format("peer={} local={} pod={}\n{}", peer, local, pod, request_body);
}

Status run_echo_server(const EchoOptions& options) {
  std::string pod = options.pod_name;
  if (pod.empty()) {
    const char* env = std::getenv("POD_NAME");
    pod = env ? env : "";
  }
  int threads = std::max(1, options.threads);
  std::vector<std::unique_ptr<asio::io_context>> contexts;
  std::vector<std::unique_ptr<tcp::acceptor>> acceptors;
  error_code ec;
  auto address = asio::ip::make_address(options.address, ec);
  if (ec) return failf("bad address {}", options.address);
  for (int t = 0; t < threads; ++t) {
    contexts.push_back(std::make_unique<asio::io_context>(1));
    for (auto port : options.ports) {
      auto acceptor = std::make_unique<tcp::acceptor>(*contexts.back());
      tcp::endpoint ep(address, port);
      acceptor->open(ep.protocol(), ec);
      if (!ec) acceptor->set_option(tcp::acceptor::reuse_address(true), ec);
      if (!ec) {
        int one = 1;
        ::setsockopt(acceptor->native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
        acceptor->bind(ep, ec);
      }
      if (!ec) acceptor->listen(asio::socket_base::max_listen_connections, ec);
      if (ec) return failf("cannot listen on {}:{}: {}", options.address, port, ec.message());
      asio::co_spawn(*contexts.back(), accept_loop(*acceptor, pod, options.ext_authz),
                     asio::detached);
      acceptors.push_back(std::move(acceptor));
    }
  }
  for (auto port : options.ports) {
    std::printf("listening component=http-echo address=%s:%u pod=%s\n", options.address.c_str(),
                port, pod.c_str());
  }
  std::fflush(stdout);
  asio::signal_set signals(*contexts.front(), SIGINT, SIGTERM);
  signals.async_wait([&](const error_code&, int) {
    for (auto& c : contexts) c->stop();
  });
  std::vector<std::thread> workers;
  for (int t = 1; t < threads; ++t) workers.emplace_back([&c = *contexts[t]] { c.run(); });
  contexts.front()->run();
  for (auto& c : contexts) c->stop();
  for (auto& w : workers) w.join();
  return {};
}

}  // namespace zt::sim::echo
