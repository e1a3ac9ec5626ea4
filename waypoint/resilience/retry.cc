#include "waypoint/resilience/retry.h"

#include <algorithm>

namespace zt::waypoint::resilience {

bool is_retriable(const config::RetryPolicy& policy, const AttemptResult& result) {
  const uint32_t on = policy.retry_on;
  using K = AttemptResult::Kind;
  if (result.kind != K::kResponse) {
    if (on & (config::kRetryOn5xx | config::kRetryOnGatewayError | config::kRetryOnReset)) {
      return true;
    }
    const bool not_sent = result.kind == K::kConnectFailure || result.kind == K::kRefusedStream;
    if (not_sent && (on & config::kRetryOnResetBeforeRequest)) return true;
    if (result.kind == K::kConnectFailure && (on & config::kRetryOnConnectFailure)) return true;
    if (result.kind == K::kRefusedStream && (on & config::kRetryOnRefusedStream)) return true;
    return false;
  }
  const int s = result.status;
  if ((on & config::kRetryOn5xx) && s >= 500 && s <= 599) return true;
  if ((on & config::kRetryOnGatewayError) && (s == 502 || s == 503 || s == 504)) return true;
  if ((on & config::kRetryOnRetriable4xx) && s == 409) return true;
  if ((on & config::kRetryOnRetriableStatusCodes) &&
      std::find(policy.retriable_status_codes.begin(), policy.retriable_status_codes.end(), s) !=
          policy.retriable_status_codes.end()) {
    return true;
  }
  if (result.grpc_status) {
    switch (*result.grpc_status) {
      case 1:
        return (on & config::kRetryOnCancelled) != 0;
      case 4:
        return (on & config::kRetryOnDeadlineExceeded) != 0;
      case 8:
        return (on & config::kRetryOnResourceExhausted) != 0;
      case 13:
        return (on & config::kRetryOnInternal) != 0;
      case 14:
        return (on & config::kRetryOnUnavailable) != 0;
      default:
        break;
    }
  }
  return false;
}

Duration backoff_for(Duration base, uint32_t retry, Random& random) {
  if (base.count() <= 0 || retry == 0) return Duration(0);
  const int64_t cap = base.count() * 10;
  const uint32_t shift = std::min<uint32_t>(retry, 20);
  const int64_t upper = std::min<int64_t>(base.count() * ((int64_t{1} << shift) - 1), cap);
  return Duration(static_cast<int64_t>(random.below(static_cast<uint64_t>(upper))));
}

RetryState::RetryState(config::RetryPolicy policy, TimePoint start,
                       std::optional<Duration> request_timeout)
    : policy_(std::move(policy)), request_timeout_(request_timeout) {
  if (request_timeout) deadline_ = start + *request_timeout;
}

std::optional<TimePoint> RetryState::attempt_deadline(TimePoint now) const {
  std::optional<TimePoint> out = deadline_;
  if (policy_.per_try_timeout) {
    const TimePoint per_try = now + *policy_.per_try_timeout;
    if (!out || per_try < *out) out = per_try;
  }
  return out;
}

RetryState::Decision RetryState::on_attempt(const AttemptResult& result, TimePoint now,
                                            Random& random) {
  ++attempts_;
  using D = Decision::Kind;
  // An outcome we would not retry is returned as it is, even at the deadline.
  if (policy_.attempts == 0 || !is_retriable(policy_, result)) return {D::kDone, Duration(0)};
  if (deadline_ && now >= *deadline_) return {D::kTimedOut, Duration(0)};
  if (retries() >= policy_.attempts) return {D::kExhausted, Duration(0)};
  const Duration backoff = backoff_for(policy_.backoff_base, attempts_, random);
  if (deadline_ && now + backoff >= *deadline_) return {D::kTimedOut, Duration(0)};
  return {D::kRetry, backoff};
}

}  // namespace zt::waypoint::resilience
