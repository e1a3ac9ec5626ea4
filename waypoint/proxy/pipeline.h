// The per-request path of the waypoint, after the HBONE stream was accepted and bound:
// normalise -> authorize (L7 AuthorizationPolicy) -> route (HTTPRoute) -> fault -> pick an
// endpoint (load balancer minus outlier ejections) -> connection-pool admission -> HBONE stream
// to <endpoint ip>:15008 with the waypoint's identity, HTTP/1.1 or HTTP/2 as the client spoke
// -> retries and timeouts -> response filters; mirrors fire and forget; one metric sample and
// one access log line per request.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "common/async/asio.h"
#include "common/async/task_group.h"
#include "waypoint/message/message.h"
#include "waypoint/proxy/context.h"
#include "ztunnel/state/types.h"

namespace zt::waypoint::proxy {

// One accepted HBONE CONNECT stream at the waypoint: who sent it and what it is for.
struct StreamContext {
  std::string peer_identity;  // SPIFFE URI of the HBONE client (the source ztunnel's pod)
  std::optional<std::string> principal;  // the same without "spiffe://", as policies match it
  std::string source_namespace;          // the namespace in that identity ("" when it has none)
  asio::ip::address source_ip;  // the original client (HBONE `forwarded: for=`), else the peer
  asio::ip::address peer_ip;    // the HBONE connection's peer address
  std::shared_ptr<const zt::state::Workload> source_workload;  // by source_ip, may be null
  std::string authority;             // the CONNECT :authority, "10.96.0.20:80"
  asio::ip::address destination_ip;  // the authority's address
  uint16_t port = 0;                 // the authority's port (service port or workload port)
  // The bound target: exactly one is set. A service VIP whose waypoint is us, or a workload
  // (pod ip) whose waypoint is us.
  std::shared_ptr<const zt::state::Service> service;
  std::shared_ptr<const zt::state::Workload> workload;
};

// One per worker; lives on that worker's executor (not thread-safe). Keeps the upstream
// connections (per endpoint), outlier and pool state of the destinations it talked to.
class Pipeline {
 public:
  Pipeline(WaypointContext& ctx, asio::any_io_executor ex, async::TaskGroup& tasks);
  ~Pipeline();
  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;

  // One HTTP request (any version) for the stream's target. Never throws; errors are responses.
  awaitable<Response> handle(std::shared_ptr<const StreamContext> stream, Request request);

  // Bytes that are not HTTP (a TCP service behind the waypoint): connect to an endpoint of the
  // target over HBONE and relay both ways (`already_read` first), with an L4 access log line.
  awaitable<void> relay_tcp(std::shared_ptr<const StreamContext> stream, Duplex downstream,
                            std::string already_read);

  // Closes idle upstream connections (drain).
  void close_idle();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace zt::waypoint::proxy
