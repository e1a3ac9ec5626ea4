#include "waypoint/config/model.h"

#include <re2/re2.h>

#include "waypoint/base/strings.h"

namespace zt::waypoint::config {

Result<Regex> Regex::compile(std::string_view pattern) {
  RE2::Options options;
  options.set_log_errors(false);
  auto re = std::make_shared<re2::RE2>(re2::StringPiece(pattern.data(), pattern.size()), options);
  if (!re->ok()) return failf("invalid regular expression \"{}\": {}", pattern, re->error());
  Regex out;
  out.re_ = std::move(re);
  out.pattern_ = std::string(pattern);
  return out;
}

bool Regex::full_match(std::string_view text) const {
  return re_ && RE2::FullMatch(re2::StringPiece(text.data(), text.size()), *re_);
}

std::string Regex::replace_all(std::string_view text, std::string_view rewrite) const {
  std::string out(text);
  if (re_) RE2::GlobalReplace(&out, *re_, re2::StringPiece(rewrite.data(), rewrite.size()));
  return out;
}

Status Regex::check_rewrite(std::string_view rewrite) const {
  std::string error;
  if (!re_ || !re_->CheckRewriteString(re2::StringPiece(rewrite.data(), rewrite.size()), &error)) {
    return failf("invalid rewrite \"{}\": {}", rewrite, error);
  }
  return {};
}

std::string BackendRef::hostname(std::string_view cluster_domain) const {
  if (!host.empty()) return host;
  return fmt::format("{}.{}.svc.{}", name, namespace_name, cluster_domain);
}

RetryPolicy RetryPolicy::istio_default() {
  return RetryPolicy{
      .attempts = 2,
      .retry_on = kRetryOnConnectFailure | kRetryOnRefusedStream | kRetryOnUnavailable |
                  kRetryOnCancelled | kRetryOnRetriableStatusCodes,
  };
}

RetryPolicy RouteRule::effective_retry() const {
  RetryPolicy policy = retry ? *retry : RetryPolicy::istio_default();
  if (!policy.per_try_timeout && timeouts.backend_request) {
    policy.per_try_timeout = timeouts.backend_request;
  }
  return policy;
}

namespace {

// The sections `p` gives replace those of `out`.
void apply_sections(const PortTrafficPolicy& p, TrafficPolicy& out) {
  if (p.load_balancer) out.load_balancer = *p.load_balancer;
  if (p.connection_pool) out.connection_pool = *p.connection_pool;
  if (p.outlier_detection) out.outlier_detection = *p.outlier_detection;
}

// The portLevelSettings entry for `port`, if any.
const PortTrafficPolicy* entry_for(const std::vector<PortTrafficPolicy>& entries, uint16_t port) {
  for (const auto& p : entries) {
    if (p.port == port) return &p;
  }
  return nullptr;
}

}  // namespace

TrafficPolicy DestinationPolicy::for_port(uint16_t port, const Subset* subset) const {
  // Istio: a portLevelSettings entry is the whole policy of its port; a section it leaves out is
  // the default, not the top level's (GetPortLevelTrafficPolicy, MergeSubsetTrafficPolicy).
  TrafficPolicy out = policy;
  if (const auto* entry = entry_for(port_level, port)) {
    out = TrafficPolicy{};
    apply_sections(*entry, out);
  }
  if (!subset) return out;
  if (const auto* entry = entry_for(subset->port_level, port)) {
    out = TrafficPolicy{};
    apply_sections(*entry, out);
  } else {
    apply_sections(subset->policy, out);
  }
  return out;
}

const Subset* DestinationPolicy::subset(std::string_view name) const {
  for (const auto& s : subsets) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

const DestinationPolicy* WaypointConfig::destination(std::string_view host) const {
  for (const auto& d : destinations) {
    if (iequals(d.host, host)) return &d;
  }
  return nullptr;
}

}  // namespace zt::waypoint::config
