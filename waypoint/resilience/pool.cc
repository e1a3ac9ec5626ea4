#include "waypoint/resilience/pool.h"

namespace zt::waypoint::resilience {

ConnectionPoolLimiter::Admission ConnectionPoolLimiter::admit(bool idle_connection) {
  if (active_ >= limits_.http2_max_requests) {
    ++overflows_;
    return Admission::kOverflow;
  }
  if (idle_connection) {
    ++active_;
    return Admission::kReuseConnection;
  }
  if (connections_ < limits_.max_connections) {
    ++connections_;
    ++active_;
    return Admission::kNewConnection;
  }
  if (pending_ < limits_.http1_max_pending_requests) {
    ++pending_;
    return Admission::kQueued;
  }
  ++overflows_;
  return Admission::kOverflow;
}

bool ConnectionPoolLimiter::dispatch_pending() {
  if (pending_ == 0 || active_ >= limits_.http2_max_requests) return false;
  --pending_;
  ++active_;
  return true;
}

void ConnectionPoolLimiter::cancel_pending() {
  if (pending_ > 0) --pending_;
}

void ConnectionPoolLimiter::finish_request() {
  if (active_ > 0) --active_;
}

void ConnectionPoolLimiter::connection_closed() {
  if (connections_ > 0) --connections_;
}

bool ConnectionPoolLimiter::connection_reusable(uint32_t served) const {
  return limits_.max_requests_per_connection == 0 || served < limits_.max_requests_per_connection;
}

bool ConnectionPoolLimiter::try_start_retry() {
  if (retries_ >= limits_.max_retries) return false;
  ++retries_;
  return true;
}

void ConnectionPoolLimiter::finish_retry() {
  if (retries_ > 0) --retries_;
}

}  // namespace zt::waypoint::resilience
