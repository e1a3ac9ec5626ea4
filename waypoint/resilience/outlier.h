// Outlier detection (Envoy's consecutive-5xx / consecutive-gateway-failure ejection as Istio
// configures it from DestinationRule outlierDetection, facts §3.5), a state machine over the
// endpoints of one destination with the time passed in:
// - report() after every response or local-origin failure; ejection happens inline, as soon as
//   a counter reaches its threshold, if fewer than maxEjectionPercent of the hosts would then be
//   ejected (one host can always be ejected);
// - sweep() every `interval`: a host whose ejection time (baseEjectionTime x times ejected,
//   capped at max(300 s, base)) has passed returns; a healthy host's ejection multiplier decays
//   by one per sweep.
// Without splitExternalLocalOriginErrors, a local-origin failure (connect failure, reset,
// timeout) counts as a 503 (both a 5xx and a gateway error).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "waypoint/config/model.h"

namespace zt::waypoint::resilience {

class OutlierDetector {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;

  explicit OutlierDetector(config::OutlierDetection config) : config_(config) {}

  // Replaces the endpoint set (EDS update): state of hosts that stay is kept.
  void set_hosts(const std::vector<std::string>& hosts);

  // A response with `status` from `host`.
  void report_status(std::string_view host, int status, TimePoint now);
  // A local-origin failure talking to `host` (connect failure, reset, timeout).
  void report_local_failure(std::string_view host, TimePoint now);

  // The interval timer.
  void sweep(TimePoint now);

  bool ejected(std::string_view host) const;
  size_t ejected_count() const;
  size_t host_count() const { return hosts_.size(); }
  // How many times `host` has been ejected in a row (the ejection-time multiplier).
  uint32_t ejection_multiplier(std::string_view host) const;
  // When an ejected host becomes eligible to return (it returns at the first sweep after).
  std::optional<TimePoint> ejected_until(std::string_view host) const;
  // Panic mode (minHealthPercent): too few healthy hosts, so route to all of them.
  bool panic() const;

  const config::OutlierDetection& config() const { return config_; }

 private:
  struct HostState {
    uint32_t consecutive_5xx = 0;
    uint32_t consecutive_gateway = 0;
    uint32_t consecutive_local = 0;
    bool ejected = false;
    uint32_t multiplier = 0;
    TimePoint ejected_at{};
    TimePoint until{};
    bool ejected_since_sweep = false;
  };

  void maybe_eject(HostState& state, TimePoint now);
  HostState* find(std::string_view host);
  const HostState* find(std::string_view host) const;

  config::OutlierDetection config_;
  std::unordered_map<std::string, HostState> hosts_;
};

}  // namespace zt::waypoint::resilience
