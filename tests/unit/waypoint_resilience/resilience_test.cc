// Retries, outlier detection, connection-pool admission, fault injection and endpoint pickers:
// state machines driven with an explicit clock and a seeded RNG.
#include <map>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "waypoint/config/parse.h"
#include "waypoint/resilience/fault.h"
#include "waypoint/resilience/load_balancer.h"
#include "waypoint/resilience/outlier.h"
#include "waypoint/resilience/pool.h"
#include "waypoint/resilience/retry.h"

namespace zt::waypoint::resilience {
namespace {

using namespace std::chrono_literals;
using config::RetryPolicy;
using K = AttemptResult::Kind;
using D = RetryState::Decision::Kind;

const TimePoint kT0 = TimePoint(std::chrono::hours(1000));

RetryPolicy policy(uint32_t attempts, std::string_view retry_on) {
  RetryPolicy p;
  p.attempts = attempts;
  EXPECT_TRUE(config::parse_retry_on(retry_on, p));
  return p;
}

// Runs scripted outcomes through a RetryState; returns how many attempts reached the backend and
// the final decision.
std::pair<uint32_t, D> run(const RetryPolicy& p, const std::vector<AttemptResult>& script,
                           std::optional<config::Duration> timeout = std::nullopt) {
  SeededRandom random(5);
  RetryState state(p, kT0, timeout);
  TimePoint now = kT0;
  for (const auto& result : script) {
    auto d = state.on_attempt(result, now, random);
    if (d.kind != D::kRetry) return {state.attempts(), d.kind};
    now += d.backoff;
  }
  return {state.attempts(), D::kRetry};
}

TEST(RetryTest, Scripted503s503sThen200TakesThreeAttempts) {
  const std::vector<AttemptResult> script = {
      AttemptResult::response(503), AttemptResult::response(503), AttemptResult::response(200)};
  for (const char* on : {"5xx", "gateway-error", "503", "retriable-status-codes,503"}) {
    auto [attempts, kind] = run(policy(3, on), script);
    EXPECT_EQ(attempts, 3u) << on;
    EXPECT_EQ(kind, D::kDone) << on;
  }
  // Istio's default policy does not retry an application's 503.
  auto [attempts, kind] = run(RetryPolicy::istio_default(), script);
  EXPECT_EQ(attempts, 1u);
  EXPECT_EQ(kind, D::kDone);
}

TEST(RetryTest, ExhaustsAfterAttemptsRetries) {
  const std::vector<AttemptResult> script(10, AttemptResult::response(503));
  auto [attempts, kind] = run(policy(2, "5xx"), script);
  EXPECT_EQ(attempts, 3u);  // 1 + 2 retries
  EXPECT_EQ(kind, D::kExhausted);
  auto [a0, k0] = run(policy(0, "5xx"), script);
  EXPECT_EQ(a0, 1u);
  EXPECT_EQ(k0, D::kDone);  // attempts 0 disables retries
}

TEST(RetryTest, WhichOutcomesRetry) {
  struct Case {
    const char* retry_on;
    AttemptResult result;
    bool retriable;
  };
  const std::vector<Case> cases = {
      {"5xx", AttemptResult::response(500), true},
      {"5xx", AttemptResult::response(404), false},
      {"5xx", AttemptResult::failure(K::kReset), true},
      {"5xx", AttemptResult::failure(K::kConnectFailure), true},
      {"5xx", AttemptResult::failure(K::kPerTryTimeout), true},
      {"gateway-error", AttemptResult::response(500), false},
      {"gateway-error", AttemptResult::response(502), true},
      {"gateway-error", AttemptResult::response(504), true},
      {"gateway-error", AttemptResult::failure(K::kPerTryTimeout), true},
      {"connect-failure", AttemptResult::failure(K::kConnectFailure), true},
      {"connect-failure", AttemptResult::failure(K::kReset), false},
      {"connect-failure", AttemptResult::response(503), false},
      {"reset", AttemptResult::failure(K::kReset), true},
      {"reset", AttemptResult::response(503), false},
      {"reset-before-request", AttemptResult::failure(K::kConnectFailure), true},
      {"reset-before-request", AttemptResult::failure(K::kReset), false},
      {"refused-stream", AttemptResult::failure(K::kRefusedStream), true},
      {"refused-stream", AttemptResult::failure(K::kReset), false},
      {"retriable-4xx", AttemptResult::response(409), true},
      {"retriable-4xx", AttemptResult::response(429), false},
      {"retriable-status-codes,418", AttemptResult::response(418), true},
      {"418", AttemptResult::response(503), false},
      // A reset the proxy turns into 503 is not the backend's 503.
      {"503", AttemptResult::failure(K::kReset), false},
      {"unavailable", AttemptResult::response(200, 14), true},
      {"unavailable", AttemptResult::response(200, 13), false},
      {"cancelled,deadline-exceeded,internal,resource-exhausted", AttemptResult::response(200, 8),
       true},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(is_retriable(policy(1, c.retry_on), c.result), c.retriable)
        << c.retry_on << " kind=" << static_cast<int>(c.result.kind)
        << " status=" << c.result.status;
  }
}

TEST(RetryTest, PerTryAndRequestDeadlines) {
  RetryPolicy p = policy(5, "5xx");
  p.per_try_timeout = 100ms;
  RetryState state(p, kT0, 250ms);
  EXPECT_EQ(state.attempt_deadline(kT0), kT0 + 100ms);
  EXPECT_EQ(state.attempt_deadline(kT0 + 200ms), kT0 + 250ms);  // capped by the route timeout
  SeededRandom random(1);
  EXPECT_EQ(state.on_attempt(AttemptResult::failure(K::kPerTryTimeout), kT0 + 100ms, random).kind,
            D::kRetry);
  // The route timeout covers every attempt: past it, no more retries.
  EXPECT_EQ(state.on_attempt(AttemptResult::response(503), kT0 + 250ms, random).kind, D::kTimedOut);
  RetryState late(p, kT0, 250ms);
  EXPECT_EQ(late.on_attempt(AttemptResult::response(200), kT0 + 300ms, random).kind, D::kDone);
  RetryState untimed(RetryPolicy::istio_default(), kT0, std::nullopt);
  EXPECT_EQ(untimed.attempt_deadline(kT0), std::nullopt);
}

TEST(RetryTest, JitteredExponentialBackoff) {
  SeededRandom random(9);
  for (int i = 0; i < 1000; ++i) {
    EXPECT_LT(backoff_for(25ms, 1, random), 25ms);
    EXPECT_LT(backoff_for(25ms, 2, random), 75ms);
    EXPECT_LT(backoff_for(25ms, 3, random), 175ms);
    EXPECT_LT(backoff_for(25ms, 10, random), 250ms);  // capped at 10 x base
  }
  EXPECT_EQ(backoff_for(0ms, 3, random), 0ms);
}

config::OutlierDetection outlier_config() {
  config::OutlierDetection c;
  c.consecutive_5xx = 3;
  c.interval = 1s;
  c.base_ejection_time = 10s;
  c.max_ejection_percent = 100;
  return c;
}

TEST(OutlierTest, EjectsAfterConsecutive5xxAndReturnsAfterEjectionTime) {
  OutlierDetector od(outlier_config());
  od.set_hosts({"a", "b", "c"});
  TimePoint now = kT0;
  od.report_status("a", 503, now);
  od.report_status("a", 500, now);
  od.report_status("a", 200, now);  // a success resets the streak
  od.report_status("a", 503, now);
  od.report_status("a", 503, now);
  EXPECT_FALSE(od.ejected("a"));
  od.report_status("a", 503, now);  // third in a row: ejected inline
  EXPECT_TRUE(od.ejected("a"));
  EXPECT_EQ(od.ejected_count(), 1u);
  // Sweeps before base ejection time keep it out; the first sweep after brings it back.
  for (int s = 1; s < 10; ++s) {
    od.sweep(kT0 + std::chrono::seconds(s));
    EXPECT_TRUE(od.ejected("a")) << s;
  }
  od.sweep(kT0 + 10s);
  EXPECT_FALSE(od.ejected("a"));
  // A second ejection in a row lasts twice as long.
  now = kT0 + 10s;
  for (int i = 0; i < 3; ++i) od.report_status("a", 502, now);
  EXPECT_TRUE(od.ejected("a"));
  EXPECT_EQ(od.ejection_multiplier("a"), 2u);
  EXPECT_EQ(od.ejected_until("a"), now + 20s);
  od.sweep(now + 19s);
  EXPECT_TRUE(od.ejected("a"));
  od.sweep(now + 20s);
  EXPECT_FALSE(od.ejected("a"));
  // Healthy sweeps decay the multiplier.
  od.sweep(now + 21s);
  EXPECT_EQ(od.ejection_multiplier("a"), 1u);
}

TEST(OutlierTest, LocalFailuresCountAsGatewayErrors) {
  auto c = outlier_config();
  c.consecutive_5xx = 0;
  c.consecutive_gateway_errors = 2;
  OutlierDetector od(c);
  od.set_hosts({"a", "b"});
  od.report_status("a", 500, kT0);  // not a gateway error
  od.report_local_failure("a", kT0);
  EXPECT_FALSE(od.ejected("a"));
  od.report_local_failure("a", kT0);
  EXPECT_TRUE(od.ejected("a"));
}

TEST(OutlierTest, MaxEjectionPercentButAlwaysOne) {
  auto c = outlier_config();
  c.max_ejection_percent = 10;
  OutlierDetector od(c);
  od.set_hosts({"a", "b", "c"});
  for (const char* h : {"a", "b"}) {
    for (int i = 0; i < 3; ++i) od.report_status(h, 503, kT0);
  }
  EXPECT_TRUE(od.ejected("a"));   // the first is always allowed (33% > 10%)
  EXPECT_FALSE(od.ejected("b"));  // a second would exceed the limit
  c.max_ejection_percent = 67;
  OutlierDetector od2(c);
  od2.set_hosts({"a", "b", "c"});
  for (const char* h : {"a", "b", "c"}) {
    for (int i = 0; i < 3; ++i) od2.report_status(h, 503, kT0);
  }
  EXPECT_EQ(od2.ejected_count(), 2u);
}

TEST(OutlierTest, HostSetChangesKeepState) {
  OutlierDetector od(outlier_config());
  od.set_hosts({"a", "b"});
  for (int i = 0; i < 3; ++i) od.report_status("a", 503, kT0);
  od.set_hosts({"a", "c"});
  EXPECT_TRUE(od.ejected("a"));
  EXPECT_FALSE(od.ejected("b"));
  od.report_status("unknown", 503, kT0);  // ignored
  EXPECT_EQ(od.host_count(), 2u);
  auto pc = outlier_config();
  pc.min_health_percent = 60;
  OutlierDetector panic(pc);
  panic.set_hosts({"a", "b"});
  EXPECT_FALSE(panic.panic());
  for (int i = 0; i < 3; ++i) panic.report_status("a", 503, kT0);
  EXPECT_TRUE(panic.panic());
}

TEST(ConnectionPoolTest, OverflowAnswers503UO) {
  config::ConnectionPool limits;
  limits.max_connections = 1;
  limits.http1_max_pending_requests = 1;
  ConnectionPoolLimiter pool(limits);
  using A = ConnectionPoolLimiter::Admission;
  EXPECT_EQ(pool.admit(false), A::kNewConnection);
  EXPECT_EQ(pool.admit(false), A::kQueued);
  EXPECT_EQ(pool.admit(false), A::kOverflow);
  EXPECT_EQ(pool.overflows(), 1u);
  EXPECT_EQ(kOverflowStatus, 503);
  EXPECT_EQ(kOverflowFlag, "UO");
  // The first request completes; its connection takes the queued one.
  pool.finish_request();
  EXPECT_TRUE(pool.dispatch_pending());
  EXPECT_EQ(pool.pending_requests(), 0u);
  EXPECT_EQ(pool.admit(false), A::kQueued);
  pool.cancel_pending();
  EXPECT_EQ(pool.pending_requests(), 0u);
}

TEST(ConnectionPoolTest, MaxRequestsAndRetryBudget) {
  config::ConnectionPool limits;
  limits.http2_max_requests = 2;
  limits.max_retries = 1;
  limits.max_requests_per_connection = 2;
  ConnectionPoolLimiter pool(limits);
  using A = ConnectionPoolLimiter::Admission;
  EXPECT_EQ(pool.admit(true), A::kReuseConnection);
  EXPECT_EQ(pool.admit(false), A::kNewConnection);
  EXPECT_EQ(pool.admit(true), A::kOverflow);  // two active requests already
  pool.finish_request();
  EXPECT_EQ(pool.admit(true), A::kReuseConnection);
  EXPECT_TRUE(pool.try_start_retry());
  EXPECT_FALSE(pool.try_start_retry());
  pool.finish_retry();
  EXPECT_TRUE(pool.try_start_retry());
  EXPECT_TRUE(pool.connection_reusable(1));
  EXPECT_FALSE(pool.connection_reusable(2));
  ConnectionPoolLimiter unlimited{config::ConnectionPool{}};
  for (int i = 0; i < 10000; ++i) EXPECT_NE(unlimited.admit(false), A::kOverflow);
}

TEST(FaultTest, AbortAtFiftyPercentAbortsAboutHalf) {
  config::FaultInjection fault;
  fault.abort = config::FaultInjection::Abort{.http_status = 503, .percent = 50};
  SeededRandom random(42);
  int aborted = 0;
  for (int i = 0; i < 1000; ++i) {
    auto d = decide_fault(fault, random);
    if (d.aborts()) {
      ++aborted;
      EXPECT_EQ(*d.abort_status, 503);
      EXPECT_EQ(d.flags(), "FI");
    }
    EXPECT_FALSE(d.delay);
  }
  EXPECT_GE(aborted, 450);
  EXPECT_LE(aborted, 550);
}

TEST(FaultTest, DelayPercentagesAndFlags) {
  SeededRandom random(3);
  config::FaultInjection always;
  always.delay = config::FaultInjection::Delay{.fixed = 7s, .percent = 100};
  for (int i = 0; i < 100; ++i) EXPECT_EQ(decide_fault(always, random).delay, 7s);
  config::FaultInjection none;  // no percentage: no fault
  none.delay = config::FaultInjection::Delay{.fixed = 7s};
  none.abort = config::FaultInjection::Abort{.http_status = 500};
  for (int i = 0; i < 100; ++i) {
    auto d = decide_fault(none, random);
    EXPECT_FALSE(d.delay);
    EXPECT_FALSE(d.aborts());
  }
  config::FaultInjection both = always;
  both.abort = config::FaultInjection::Abort{.http_status = 200, .grpc_status = 14, .percent = 100};
  auto d = decide_fault(both, random);
  EXPECT_EQ(d.flags(), "DI,FI");
  EXPECT_EQ(d.abort_grpc_status, 14);
  config::FaultInjection tenth;
  tenth.abort = config::FaultInjection::Abort{.http_status = 503, .percent = 0.1};
  int n = 0;
  for (int i = 0; i < 100000; ++i) n += decide_fault(tenth, random).aborts();
  EXPECT_GT(n, 50);
  EXPECT_LT(n, 150);
}

TEST(LoadBalancerTest, RoundRobinSkipsUnavailable) {
  std::vector<HostView> hosts(3);
  hosts[1].available = false;
  uint64_t cursor = 0;
  std::vector<size_t> picks;
  for (int i = 0; i < 4; ++i) picks.push_back(*pick_round_robin(hosts, cursor));
  EXPECT_EQ(picks, (std::vector<size_t>{0, 2, 0, 2}));
  for (auto& h : hosts) h.available = false;
  EXPECT_FALSE(pick_round_robin(hosts, cursor));
  SeededRandom random(1);
  EXPECT_FALSE(pick_random(hosts, random));
  EXPECT_FALSE(pick_least_request(hosts, random));
}

TEST(LoadBalancerTest, LeastRequestPrefersIdleHosts) {
  std::vector<HostView> hosts = {{true, 10}, {true, 0}, {true, 10}, {true, 10}};
  SeededRandom random(4);
  std::map<size_t, int> counts;
  for (int i = 0; i < 1000; ++i) ++counts[*pick_least_request(hosts, random)];
  // P2C picks host 1 whenever it is one of the two draws: 1 - (3/4)^2 = 43.75%.
  EXPECT_GT(counts[1], 380);
  EXPECT_LT(counts[1], 500);
  for (size_t h : {0, 2, 3}) EXPECT_LT(counts[h], 250);
}

TEST(LoadBalancerTest, RingHashIsStableAndMovesFewKeys) {
  const std::vector<std::string> keys = {"10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80",
                                         "10.0.0.4:80"};
  RingHash ring(keys, 1024);
  EXPECT_EQ(ring.ring_size(), 1024u);
  std::vector<HostView> all(4);
  std::map<size_t, int> load;
  std::vector<size_t> before;
  for (int i = 0; i < 2000; ++i) {
    const auto h = *ring.pick(hash64("user-" + std::to_string(i)), all);
    EXPECT_EQ(*ring.pick(hash64("user-" + std::to_string(i)), all), h);  // deterministic
    before.push_back(h);
    ++load[h];
  }
  for (const auto& [h, n] : load) EXPECT_GT(n, 300) << h;  // roughly balanced
  // Ejecting host 2 moves only its keys.
  std::vector<HostView> without = all;
  without[2].available = false;
  for (int i = 0; i < 2000; ++i) {
    const auto h = *ring.pick(hash64("user-" + std::to_string(i)), without);
    EXPECT_NE(h, 2u);
    if (before[i] != 2) {
      EXPECT_EQ(h, before[i]);
    }
  }
}

TEST(LoadBalancerTest, ConsistentHashKeys) {
  http::RequestHead head;
  head.target = "/p?user=bob&x=1";
  head.headers = {{"x-user", "alice"}, {"Cookie", "a=1; session=s123; b=2"}};
  config::ConsistentHash h;
  h.source = config::ConsistentHash::Source::kHeader;
  h.name = "X-User";
  EXPECT_EQ(consistent_hash_key(h, head, "10.1.1.1"), "alice");
  h.source = config::ConsistentHash::Source::kCookie;
  h.name = "session";
  EXPECT_EQ(consistent_hash_key(h, head, ""), "s123");
  h.source = config::ConsistentHash::Source::kQueryParameter;
  h.name = "user";
  EXPECT_EQ(consistent_hash_key(h, head, ""), "bob");
  h.source = config::ConsistentHash::Source::kSourceIp;
  EXPECT_EQ(consistent_hash_key(h, head, "10.1.1.1"), "10.1.1.1");
  h.source = config::ConsistentHash::Source::kCookie;
  h.name = "missing";
  EXPECT_EQ(consistent_hash_key(h, head, ""), std::nullopt);

  config::LoadBalancer lb;
  lb.algorithm = config::LbAlgorithm::kConsistentHash;
  lb.hash =
      config::ConsistentHash{.source = config::ConsistentHash::Source::kHeader, .name = "x-user"};
  EndpointPicker picker(lb, {"a", "b", "c"});
  std::vector<HostView> hosts(3);
  SeededRandom random(1);
  const auto first = picker.pick(hosts, head, "", random);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(picker.pick(hosts, head, "", random), first);
  config::LoadBalancer rr;
  rr.algorithm = config::LbAlgorithm::kRoundRobin;
  EndpointPicker rr_picker(rr, {"a", "b"});
  EXPECT_EQ(rr_picker.pick(hosts, head, "", random), 0u);
  EXPECT_EQ(rr_picker.pick(hosts, head, "", random), 1u);
}

}  // namespace
}  // namespace zt::waypoint::resilience
