#include "waypoint/resilience/outlier.h"

#include <algorithm>

namespace zt::waypoint::resilience {

void OutlierDetector::set_hosts(const std::vector<std::string>& hosts) {
  std::unordered_map<std::string, HostState> next;
  for (const auto& h : hosts) {
    auto it = hosts_.find(h);
    next[h] = it == hosts_.end() ? HostState{} : it->second;
  }
  hosts_ = std::move(next);
}

OutlierDetector::HostState* OutlierDetector::find(std::string_view host) {
  auto it = hosts_.find(std::string(host));
  return it == hosts_.end() ? nullptr : &it->second;
}

const OutlierDetector::HostState* OutlierDetector::find(std::string_view host) const {
  auto it = hosts_.find(std::string(host));
  return it == hosts_.end() ? nullptr : &it->second;
}

void OutlierDetector::report_status(std::string_view host, int status, TimePoint now) {
  HostState* s = find(host);
  if (!s || s->ejected) return;
  if (status >= 500 && status <= 599) {
    ++s->consecutive_5xx;
    if (status == 502 || status == 503 || status == 504) {
      ++s->consecutive_gateway;
    } else {
      s->consecutive_gateway = 0;
    }
  } else {
    s->consecutive_5xx = 0;
    s->consecutive_gateway = 0;
  }
  if (config_.split_external_local_origin_errors) s->consecutive_local = 0;
  maybe_eject(*s, now);
}

void OutlierDetector::report_local_failure(std::string_view host, TimePoint now) {
  HostState* s = find(host);
  if (!s || s->ejected) return;
  if (config_.split_external_local_origin_errors) {
    ++s->consecutive_local;
    maybe_eject(*s, now);
    return;
  }
  report_status(host, 503, now);
}

void OutlierDetector::maybe_eject(HostState& s, TimePoint now) {
  const bool by_5xx = config_.consecutive_5xx > 0 && s.consecutive_5xx >= config_.consecutive_5xx;
  const bool by_gateway = config_.consecutive_gateway_errors > 0 &&
                          s.consecutive_gateway >= config_.consecutive_gateway_errors;
  const bool by_local = config_.split_external_local_origin_errors &&
                        config_.consecutive_local_origin_failures > 0 &&
                        s.consecutive_local >= config_.consecutive_local_origin_failures;
  if (!by_5xx && !by_gateway && !by_local) return;
  s.consecutive_5xx = 0;
  s.consecutive_gateway = 0;
  s.consecutive_local = 0;
  const size_t ejected = ejected_count();
  const size_t total = hosts_.size();
  // Envoy: allowed while the share of ejected hosts stays within the limit, and always for the
  // first host.
  if (ejected > 0 &&
      100 * (ejected + 1) > static_cast<size_t>(config_.max_ejection_percent) * total) {
    return;
  }
  ++s.multiplier;
  s.ejected = true;
  s.ejected_at = now;
  s.ejected_since_sweep = true;
  const auto base = config_.base_ejection_time;
  const auto cap = std::max<config::Duration>(config::Duration(300'000), base);
  s.until = now + std::min<config::Duration>(base * s.multiplier, cap);
}

void OutlierDetector::sweep(TimePoint now) {
  for (auto& [host, s] : hosts_) {
    if (s.ejected) {
      if (now >= s.until) {
        s.ejected = false;
        s.consecutive_5xx = s.consecutive_gateway = s.consecutive_local = 0;
      }
    } else if (s.multiplier > 0 && !s.ejected_since_sweep) {
      --s.multiplier;
    }
    s.ejected_since_sweep = false;
  }
}

bool OutlierDetector::ejected(std::string_view host) const {
  const HostState* s = find(host);
  return s && s->ejected;
}

size_t OutlierDetector::ejected_count() const {
  return static_cast<size_t>(std::count_if(hosts_.begin(), hosts_.end(),
                                           [](const auto& kv) { return kv.second.ejected; }));
}

uint32_t OutlierDetector::ejection_multiplier(std::string_view host) const {
  const HostState* s = find(host);
  return s ? s->multiplier : 0;
}

std::optional<OutlierDetector::TimePoint> OutlierDetector::ejected_until(
    std::string_view host) const {
  const HostState* s = find(host);
  if (!s || !s->ejected) return std::nullopt;
  return s->until;
}

bool OutlierDetector::panic() const {
  if (config_.min_health_percent == 0 || hosts_.empty()) return false;
  const size_t healthy = hosts_.size() - ejected_count();
  return 100 * healthy < static_cast<size_t>(config_.min_health_percent) * hosts_.size();
}

}  // namespace zt::waypoint::resilience
