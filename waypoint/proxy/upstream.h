// The waypoint's upstream side, one per worker: byte streams to endpoints (HBONE CONNECT to
// <endpoint ip>:15008 with the waypoint's own identity, through an h2::Pool keyed as ztunnel's
// outbound keys it; plain TCP for a workload whose tunnel protocol is TCP), idle HTTP/1.1
// keep-alive clients per endpoint (bounded) and one shared HTTP/2 client per endpoint.
// Single-threaded: lives on its worker's executor.
#pragma once

#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/async/task_group.h"
#include "common/base/result.h"
#include "common/h2/pool.h"
#include "waypoint/http1/http1.h"
#include "waypoint/http2/http2.h"
#include "waypoint/proxy/context.h"

namespace zt::waypoint::proxy {

// One endpoint of a destination: the workload and where its application listens.
struct EndpointTarget {
  std::shared_ptr<const zt::state::Workload> workload;
  asio::ip::address ip;
  uint16_t port = 0;                    // target port on the workload
  std::vector<std::string> identities;  // SANs its ztunnel may present, the workload's first
  // "<ip>:<port>": the CONNECT authority. Formatted on first use and kept (a target is used by
  // one worker; the pipeline keeps resolved targets while the state snapshot stays).
  const std::string& key() const;
  bool hbone() const;

  mutable std::string key_cache{};  // key() once formatted; set ip and port before the first use
};

// What the HBONE CONNECT tells the endpoint's ztunnel about the request.
struct TunnelInfo {
  asio::ip::address client_ip;                        // forwarded: for=
  std::string service_host;                           // forwarded: host=
  std::shared_ptr<const zt::state::Workload> source;  // baggage
};

// An idle HTTP/1.1 upstream connection; `on_close` runs when it is dropped (pool accounting).
struct IdleHttp1 {
  std::unique_ptr<http1::Http1Client> client;
  std::function<void()> on_close;
  uint32_t served = 0;  // requests sent on it (maxRequestsPerConnection)
};

class Upstream {
 public:
  Upstream(WaypointContext& ctx, asio::any_io_executor ex, async::TaskGroup& tasks);
  ~Upstream();
  Upstream(const Upstream&) = delete;
  Upstream& operator=(const Upstream&) = delete;

  // A new byte stream to the endpoint's application.
  awaitable<Result<Duplex>> open(const EndpointTarget& target, const TunnelInfo& info);

  // Idle keep-alive HTTP/1.1 clients of one endpoint (most recent first).
  bool has_idle_http1(const std::string& key) const;
  std::optional<IdleHttp1> take_idle_http1(const std::string& key);
  // Keeps `idle` for reuse unless the endpoint already has kMaxIdlePerEndpoint (then drops it).
  void put_idle_http1(const std::string& key, IdleHttp1 idle);

  // The endpoint's shared HTTP/2 client, opened on first use and replaced when !usable().
  bool has_http2(const std::string& key) const;
  awaitable<Result<std::shared_ptr<http2::Http2Client>>> http2_client(const EndpointTarget& target,
                                                                      const TunnelInfo& info);

  // Drops idle HTTP/1.1 clients, closes HTTP/2 clients without streams (and replaced ones),
  // drains the pool.
  void close_idle();

  static constexpr size_t kMaxIdlePerEndpoint = 16;

 private:
  awaitable<Result<std::shared_ptr<h2::Connection>>> dial(const h2::PoolKey& key);
  static void drop(IdleHttp1& idle);

  WaypointContext& ctx_;
  asio::any_io_executor ex_;
  h2::Pool pool_;
  std::mt19937_64 rng_;
  std::unordered_map<std::string, std::deque<IdleHttp1>> idle_http1_;
  std::unordered_map<std::string, std::shared_ptr<http2::Http2Client>> http2_;
  // Replaced HTTP/2 clients whose streams are still running (closed once they have none).
  std::vector<std::shared_ptr<http2::Http2Client>> draining_http2_;
};

}  // namespace zt::waypoint::proxy
