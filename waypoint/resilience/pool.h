// Connection-pool limits (DestinationRule connectionPool, Envoy circuit breakers) as admission
// counters for one destination (per waypoint worker: the proxy keeps one per worker and divides
// nothing, like Envoy's per-cluster breakers are per process but checked without locks).
//
// A request is admitted in this order: over http2MaxRequests active requests -> overflow; an idle
// connection -> dispatch on it; fewer than tcp.maxConnections connections -> dispatch on a new
// one; fewer than http1MaxPendingRequests waiting -> queue; else overflow. Overflow is answered
// 503 with response flag UO and never reaches the backend.
#pragma once

#include <cstdint>
#include <string_view>

#include "waypoint/config/model.h"

namespace zt::waypoint::resilience {

inline constexpr std::string_view kOverflowFlag = "UO";
inline constexpr int kOverflowStatus = 503;

class ConnectionPoolLimiter {
 public:
  explicit ConnectionPoolLimiter(config::ConnectionPool limits) : limits_(limits) {}

  enum class Admission {
    kReuseConnection,  // send now on an idle connection
    kNewConnection,    // send now on a new connection (counted from here on)
    kQueued,           // wait for a connection: dispatch_pending() or cancel_pending() later
    kOverflow,         // 503 UO
  };

  // A new request; `idle_connection` says whether the pool has an idle reusable connection.
  Admission admit(bool idle_connection);
  // A queued request leaves the queue to be sent on a connection that became free.
  // False (it stays queued) while active requests are at the limit.
  bool dispatch_pending();
  // A queued request gave up (client went away, timeout).
  void cancel_pending();
  // A dispatched request completed (response done or failed).
  void finish_request();
  // An upstream connection closed.
  void connection_closed();
  // May a connection that has served `served` requests take another?
  bool connection_reusable(uint32_t served) const;
  // Retry budget (connectionPool.http.maxRetries concurrent retries). False: do not retry.
  bool try_start_retry();
  void finish_retry();

  uint32_t active_requests() const { return active_; }
  uint32_t pending_requests() const { return pending_; }
  uint32_t connections() const { return connections_; }
  uint32_t active_retries() const { return retries_; }
  uint64_t overflows() const { return overflows_; }

 private:
  config::ConnectionPool limits_;
  uint32_t active_ = 0;
  uint32_t pending_ = 0;
  uint32_t connections_ = 0;
  uint32_t retries_ = 0;
  uint64_t overflows_ = 0;
};

}  // namespace zt::waypoint::resilience
