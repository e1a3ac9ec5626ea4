// Retry decisions (Envoy router semantics as Istio configures them, facts §3.4) as a state
// machine driven by the proxy: it reports each attempt's outcome with the current time and gets
// back "done", "retry after this backoff", "retries exhausted" or "out of time". No clocks or
// timers inside: `now` is always passed in.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>

#include "waypoint/base/random.h"
#include "waypoint/config/model.h"

namespace zt::waypoint::resilience {

using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;
using config::Duration;

// How one upstream attempt ended.
struct AttemptResult {
  enum class Kind {
    kResponse,        // response headers arrived with `status` (and maybe grpc-status)
    kConnectFailure,  // no connection (before the request was sent)
    kRefusedStream,   // HTTP/2 REFUSED_STREAM (the request was not processed)
    kReset,           // connection reset / closed after the request was sent, before headers
    kPerTryTimeout,   // no response headers within the per-try timeout
  };
  Kind kind = Kind::kResponse;
  int status = 0;
  std::optional<int> grpc_status;

  static AttemptResult response(int status, std::optional<int> grpc_status = std::nullopt) {
    return {Kind::kResponse, status, grpc_status};
  }
  static AttemptResult failure(Kind kind) { return {kind, 0, std::nullopt}; }
};

// Does `policy.retry_on` cover this outcome? 5xx covers any 5xx status and every failure;
// gateway-error 502/503/504 and every failure; reset every failure; connect-failure only
// connection failures; refused-stream only REFUSED_STREAM; reset-before-request failures where
// the request was never sent (connect failure, refused stream); retriable-4xx 409;
// retriable-status-codes the listed statuses the *backend* returned; the gRPC conditions the
// grpc-status of the response headers.
bool is_retriable(const config::RetryPolicy& policy, const AttemptResult& result);

// Envoy's fully jittered exponential backoff for retry number `retry` (1-based): uniform in
// [0, base * (2^retry - 1)), capped at 10 * base.
Duration backoff_for(Duration base, uint32_t retry, Random& random);

class RetryState {
 public:
  // `request_timeout` (the route timeout) bounds all attempts together; nullopt = none.
  RetryState(config::RetryPolicy policy, TimePoint start, std::optional<Duration> request_timeout);

  // When the attempt starting at `now` must have its response headers: the per-try timeout
  // and the request deadline, whichever is first; nullopt when neither is set.
  std::optional<TimePoint> attempt_deadline(TimePoint now) const;
  std::optional<TimePoint> request_deadline() const { return deadline_; }
  // Starts the route timeout at `start` instead (a streamed request's: once its body has
  // ended, as in Envoy).
  void start_clock(TimePoint start) {
    if (request_timeout_) deadline_ = start + *request_timeout_;
  }
  // No route deadline until start_clock().
  void pause_clock() { deadline_.reset(); }
  // Whether any timeout applies (route or per try).
  bool timed() const { return request_timeout_ || policy_.per_try_timeout; }

  struct Decision {
    enum class Kind {
      kDone,       // return this attempt's outcome to the client
      kRetry,      // start another attempt after `backoff`
      kExhausted,  // retriable but no retries left: return the outcome, flag URX
      kTimedOut,   // the request deadline passed or would pass during backoff: 504, flag UT
    };
    Kind kind = Kind::kDone;
    Duration backoff{0};
  };

  // Reports the attempt that just ended at `now`.
  Decision on_attempt(const AttemptResult& result, TimePoint now, Random& random);

  uint32_t attempts() const { return attempts_; }  // tries made so far (first try included)
  uint32_t retries() const { return attempts_ == 0 ? 0 : attempts_ - 1; }

 private:
  config::RetryPolicy policy_;
  std::optional<Duration> request_timeout_;
  std::optional<TimePoint> deadline_;
  uint32_t attempts_ = 0;
};

}  // namespace zt::waypoint::resilience
