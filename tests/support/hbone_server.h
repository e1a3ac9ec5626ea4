// An HBONE server for tests: mTLS on a loopback address with the given credentials, HTTP/2
// (common/h2), and every request stream handed to the test with the client's SPIFFE id. What the
// stream answers and carries is the test's business.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/async/asio.h"
#include "common/async/task_group.h"
#include "common/h2/connection.h"
#include "common/identity/credentials.h"
#include "common/tls/context.h"

namespace zt::testing {

class HboneTestServer {
 public:
  // Called for every stream whose request head is complete; must not block (spawn on `tasks`).
  using OnStream =
      std::function<void(std::shared_ptr<h2::Stream> stream, const std::string& client_identity)>;

  // Listens on `where` (port 0: any); `settings`, when given, is read at each accept and must
  // outlive the server.
  HboneTestServer(asio::io_context& io, async::TaskGroup& tasks, const tcp::endpoint& where,
                  std::shared_ptr<identity::WorkloadCredentials> creds, OnStream on_stream,
                  const h2::Settings* settings = nullptr)
      : tasks_(tasks),
        acceptor_(io),
        creds_(std::move(creds)),
        on_stream_(std::move(on_stream)),
        settings_(settings) {
    acceptor_.open(where.protocol());
    acceptor_.set_option(tcp::acceptor::reuse_address(true));
    acceptor_.bind(where);
    acceptor_.listen();
    tasks_.spawn(accept_loop(), "hbone-test-accept");
  }

  tcp::endpoint endpoint() const { return acceptor_.local_endpoint(); }
  // Every connection accepted, in order.
  const std::vector<std::weak_ptr<h2::Connection>>& connections() const { return conns_; }

  // Stops accepting and closes every connection.
  void close() {
    error_code ec;
    acceptor_.close(ec);
    for (auto& w : conns_) {
      if (auto c = w.lock()) c->close();
    }
  }

 private:
  awaitable<void> accept_loop() {
    for (;;) {
      auto [ec, s] = co_await acceptor_.async_accept(kTuple);
      if (ec) co_return;
      tasks_.spawn(serve(std::move(s)), "hbone-test-serve");
    }
  }

  awaitable<void> serve(tcp::socket s) {
    s.set_option(tcp::no_delay(true));
    h2::TlsStream tls(std::move(s), *creds_->server_ctx);
    auto [ec] = co_await tls.async_handshake(asio::ssl::stream_base::server, kTuple);
    if (ec) co_return;
    auto peer = tls::peer_identity(tls.native_handle());
    const std::string client = peer ? peer->uri() : std::string("<none>");
    auto conn = h2::Connection::create(
        std::move(tls), h2::Role::kServer, settings_ ? *settings_ : h2::Settings{},
        [this, client](std::shared_ptr<h2::Stream> st) { on_stream_(std::move(st), client); });
    if (!conn) co_return;
    conns_.push_back(*conn);
    co_await (*conn)->run();
  }

  async::TaskGroup& tasks_;
  tcp::acceptor acceptor_;
  std::shared_ptr<identity::WorkloadCredentials> creds_;
  OnStream on_stream_;
  const h2::Settings* settings_;
  std::vector<std::weak_ptr<h2::Connection>> conns_;
};

}  // namespace zt::testing
