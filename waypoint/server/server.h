// The waypoint's HBONE listener (port 15008): mTLS with the waypoint's own certificate (a client
// certificate is required and verified against the mesh roots; the peer identity is its SPIFFE
// SAN), HTTP/2, one CONNECT stream per proxied connection. Per stream, in order:
//   1. request checks: method CONNECT, authority "ip:port" (400 otherwise). Unlike ztunnel's
//      inbound side, the authority is not our own address: the waypoint serves others.
//   2. binding: the authority's IP is a service VIP whose `waypoint` names us (Self::is), or a
//      workload IP whose `waypoint` names us. Unknown addresses are refused with 503, addresses
//      bound to no waypoint or another one with 401; no byte is relayed, an access log line and
//      waypoint_hbone_streams{direction="inbound",result="refused"} record it.
//   3. 200, then the first bytes decide: the HTTP/2 preface -> http2::serve_http2, an HTTP/1.x
//      request line -> http1::serve_http1 (both call Pipeline::handle per request), anything
//      else (or nothing within the sniff timeout: server-first protocols) -> Pipeline::relay_tcp.
//
// One HboneWorker per worker thread: its own io_context, SO_REUSEPORT acceptor, TaskGroup and
// Pipeline; nothing is shared between workers except the WaypointContext.
#pragma once

#include <chrono>
#include <functional>
#include <list>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "common/async/asio.h"
#include "common/async/task_group.h"
#include "common/base/result.h"
#include "common/h2/connection.h"
#include "waypoint/proxy/context.h"
#include "waypoint/proxy/pipeline.h"
#include "waypoint/server/binding.h"

namespace zt::waypoint::server {

struct ServerOptions {
  // Wait at most this long for the first byte of a stream; silence means a server-first
  // protocol (relayed as TCP).
  std::chrono::milliseconds first_byte_timeout{1'000};
  // Then at most this long (and kMaxSniffBytes) for a request line to complete.
  std::chrono::milliseconds request_line_timeout{5'000};
};

class HboneWorker {
 public:
  HboneWorker(proxy::WaypointContext& ctx, int index, ServerOptions options = {});
  ~HboneWorker();
  HboneWorker(const HboneWorker&) = delete;
  HboneWorker& operator=(const HboneWorker&) = delete;

  // Binds the HBONE listener (before start()). Returns the bound address (port 0 resolved):
  // later workers bind that one so they share the port. Worker 0 logs
  // "listening component=hbone address=<ip:port>".
  Result<tcp::endpoint> bind(const tcp::endpoint& at);

  // Starts accepting and runs the io_context on the worker's thread.
  void start();

  // Thread-safe. Stops accepting, sends GOAWAY on every connection, lets streams finish for
  // `deadline`, then cancels what is left. `done` runs on the worker's thread at the end.
  void drain(std::chrono::milliseconds deadline, std::function<void()> done);
  void join();

  asio::io_context& io() { return io_; }

 private:
  struct PeerInfo {
    tcp::endpoint peer;
    tcp::endpoint local;
    std::string identity;  // SPIFFE URI proven by the handshake
  };
  awaitable<void> serve_connection(tcp::socket sock);
  awaitable<void> serve_stream(std::shared_ptr<h2::Stream> stream, PeerInfo peer);
  awaitable<void> run_drain(std::chrono::milliseconds deadline, std::function<void()> done);

  proxy::WaypointContext& ctx_;
  int index_;
  ServerOptions options_;
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  async::TaskGroup tasks_;       // the pipeline's: upstream connections, attempts, mirrors
  async::TaskGroup downstream_;  // the accept loop, HBONE connections and their streams
  async::TaskGroup control_;     // the drain itself
  std::unique_ptr<proxy::Pipeline> pipeline_;
  std::optional<tcp::acceptor> acceptor_;
  std::list<std::weak_ptr<h2::Connection>> connections_;
  bool draining_ = false;
  std::thread thread_;
};

}  // namespace zt::waypoint::server
