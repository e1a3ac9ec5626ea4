// Server: a small HTTP/1.1 server (Boost.Beast, C++20 coroutines) for the admin, metrics and
// readiness endpoints. Keep-alive; limits on header and body size; a deadline on every read
// and write; errors from clients are values (as_tuple) that end their connection, never the
// server.
//
// Threading: the server runs on a strand of the executor it is given, so handlers of one server
// never run concurrently (handlers of different servers may, on a multi-threaded executor). The
// Server object may be destroyed at any time before its execution context; coroutines still in
// flight keep the shared state alive and finish on their own. stop() is safe from any thread;
// after it returns no new request reaches the handler. start() and stop() must not race each
// other.
//
// May use: common/async, common/base, common/stats, Boost.Beast.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

#include "common/async/asio.h"
#include "common/base/result.h"
#include "common/http/message.h"

namespace zt::stats {
class Registry;
}

namespace zt::http {

struct ServerOptions {
  // Names the server in logs ("listening component=<name> ..."), bind errors and metrics.
  std::string name = "http";
  // Deadline for reading one whole request (and for an idle keep-alive connection to send the
  // next one); a client that sends nothing is closed after it.
  std::chrono::steady_clock::duration read_timeout = std::chrono::seconds(10);
  std::chrono::steady_clock::duration write_timeout = std::chrono::seconds(10);
  size_t header_limit = 16 * 1024;  // beyond: 431
  size_t body_limit = 64 * 1024;    // beyond: 413
  size_t max_connections = 64;      // beyond: new connections are closed at once
  // When set: http_server_requests_total{server,code} and http_server_errors_total{server,reason}.
  stats::Registry* registry = nullptr;
};

class Server {
 public:
  // Opens, binds and listens; fails with e.g. "address already in use: 127.0.0.1:15000 (admin)".
  static Result<std::unique_ptr<Server>> bind(asio::any_io_executor executor,
                                              const tcp::endpoint& endpoint, Handler handler,
                                              ServerOptions options = {});
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // The bound address (the real port when bound to port 0).
  tcp::endpoint local_endpoint() const;
  // Starts accepting and logs "listening component=<name> address=<ip:port>" at info level.
  void start();
  // Stops accepting and closes every connection. Idempotent.
  void stop();

  struct Impl;

 private:
  explicit Server(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<Impl> impl_;
};

// "127.0.0.1:15000", "[::1]:15000".
std::string to_string(const tcp::endpoint& endpoint);

}  // namespace zt::http
