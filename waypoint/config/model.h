// The waypoint's configuration model: what HTTPRoutes (Gateway API), VirtualServices and
// DestinationRule traffic policies (Istio) mean once parsed and validated.
// Plain values, immutable once built; the proxy publishes one WaypointConfig snapshot and every
// worker reads it. Parsing from YAML lives in parse.h; how routes are chosen in waypoint/route.
//
// Units: every duration is std::chrono::milliseconds (Istio's minimum granularity for these
// knobs is 1 ms). A "disabled" timeout is nullopt, never zero.
#pragma once

#include <chrono>
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/base/result.h"
#include "waypoint/http/headers.h"

namespace re2 {
class RE2;
}

namespace zt::waypoint::config {

using Duration = std::chrono::milliseconds;

// An RE2 regular expression (linear time, no backreferences: what Envoy uses), compiled once
// when the config is parsed. Matching is always against the whole input.
class Regex {
 public:
  static Result<Regex> compile(std::string_view pattern);
  bool full_match(std::string_view text) const;
  // Every match in `text` replaced by `rewrite` (\1 ... \9 name groups).
  std::string replace_all(std::string_view text, std::string_view rewrite) const;
  // Whether `rewrite` is one replace_all can use (its groups exist).
  Status check_rewrite(std::string_view rewrite) const;
  const std::string& pattern() const { return pattern_; }

 private:
  std::shared_ptr<const re2::RE2> re_;
  std::string pattern_;
};

// ---- HTTPRoute (gateway.networking.k8s.io/v1) ---------------------------------------------

// kPathPrefix is Gateway API's (per segment); kPrefix is a VirtualService's `uri.prefix`, a
// plain string prefix ("/abc" matches "/abcd").
enum class PathMatchType { kExact, kPathPrefix, kRegularExpression, kPrefix };

struct PathMatch {
  PathMatchType type = PathMatchType::kPathPrefix;
  std::string value = "/";  // for kPathPrefix: without a trailing '/' unless it is "/"
  std::optional<Regex> regex;
  bool ignore_case = false;  // VirtualService ignoreUriCase (exact and prefix matches)
};

// kPrefix and kPresent come from VirtualService StringMatches (`prefix`, and `{}` or
// `regex: "*"` for "the header is present").
enum class ValueMatchType { kExact, kRegularExpression, kPrefix, kPresent };

// A header (name case-insensitive) or query parameter (name case-sensitive) condition. The
// header names ":method", ":scheme" and ":authority" (or "host") test the request line.
struct ValueMatch {
  ValueMatchType type = ValueMatchType::kExact;
  std::string name;
  std::string value;
  std::optional<Regex> regex;
  // VirtualService withoutHeaders: the condition holds when the match does not; a missing
  // header reads as "" (Envoy's treat_missing_header_as_empty), except for kPresent.
  bool invert = false;
};

struct RouteMatch {
  PathMatch path;
  std::vector<ValueMatch> headers;
  std::vector<ValueMatch> query_params;
  std::optional<std::string> method;
  std::optional<uint16_t> port;                 // VirtualService match.port: the service port
  std::optional<std::string> source_namespace;  // VirtualService sourceNamespace: the client's
};

struct HeaderModifier {
  http::HeaderList set;
  http::HeaderList add;
  std::vector<std::string> remove;
};

// kReplacePrefixMatch is Gateway API's (on a segment boundary); kRewriteMatched is Envoy's
// prefix_rewrite, a VirtualService's `rewrite.uri`: the part of the path its match matched (a
// prefix, or the whole path for an exact or regular-expression match) becomes `value`;
// kRegexReplace is `rewrite.uriRegexRewrite`: every match of `regex` in the path is replaced
// by `value` (\1 names a group).
enum class PathModifierType {
  kReplaceFullPath,
  kReplacePrefixMatch,
  kRewriteMatched,
  kRegexReplace
};

struct PathModifier {
  PathModifierType type = PathModifierType::kReplaceFullPath;
  std::string value;
  std::optional<Regex> regex;  // kRegexReplace
};

struct UrlRewrite {
  std::optional<std::string> hostname;
  std::optional<PathModifier> path;
};

struct RequestRedirect {
  // Without `port`: kListener is Gateway API's (the scheme's default port when `scheme` is given,
  // else the port the request was addressed to); kServicePort is derivePort FROM_REQUEST_PORT
  // (the port the request was addressed to); kRequest is a VirtualService's otherwise (Envoy's):
  // the request Host's port, none when the redirect names a host, and none when it changes the
  // scheme and that port is the old scheme's default (80 for http, 443 for https).
  enum class PortRule { kListener, kServicePort, kRequest };
  std::optional<std::string> scheme;  // "http" | "https"
  std::optional<std::string> hostname;
  std::optional<PathModifier> path;
  std::optional<uint16_t> port;
  PortRule port_rule = PortRule::kListener;
  int status_code = 302;  // 301, 302, 303, 307, 308
};

// VirtualService corsPolicy: Envoy's CORS filter with the route's policy (route::decide_cors).
// A request whose Origin `allow_origins` accepts gets Access-Control-Allow-Origin (and
// -Credentials, -Expose-Headers) on its answer; its preflight (OPTIONS with
// Access-Control-Request-Method) is answered 200 by the waypoint. A preflight from another origin
// is forwarded, or with `forward_unmatched_preflights` false answered 200 without allow-origin.
struct CorsPolicy {
  std::vector<ValueMatch> allow_origins;  // StringMatches on the Origin header
  std::string allow_methods;              // header values, joined with ","
  std::string allow_headers;
  std::string expose_headers;
  std::optional<Duration> max_age;
  bool allow_credentials = false;
  bool forward_unmatched_preflights = true;  // unmatchedPreflights FORWARD (default) | IGNORE
};

// VirtualService directResponse: the waypoint answers itself.
struct DirectResponse {
  int status = 200;
  std::string body;
};

struct BackendRef {
  std::string group;  // "" = core
  std::string kind = "Service";
  std::string name;
  std::string namespace_name;  // defaulted to the route's namespace
  std::optional<uint16_t> port;
  uint32_t weight = 1;
  // A VirtualService destination: its host as an FQDN (then `name` is empty and
  // `namespace_name` is where the host is looked up first), its DestinationRule subset (""
  // for the whole service), and its own header edits.
  std::string host;
  std::string subset;
  std::optional<std::string> rewrite_host;  // its headers' request authority: a host rewrite
  std::optional<HeaderModifier> request_headers;
  std::optional<HeaderModifier> response_headers;

  // `host` when set, else "<name>.<namespace>.svc.<cluster_domain>" for a Service.
  std::string hostname(std::string_view cluster_domain) const;
};

struct RequestMirror {
  BackendRef backend;
  double percent = 100;  // 0-100; from `percent` or `fraction`
};

// ---- Istio traffic knobs --------------------------------------------------------------------

// Envoy/Istio retryOn conditions (facts §3.4).
enum RetryOn : uint32_t {
  kRetryOn5xx = 1u << 0,
  kRetryOnGatewayError = 1u << 1,
  kRetryOnConnectFailure = 1u << 2,
  kRetryOnReset = 1u << 3,
  kRetryOnRetriable4xx = 1u << 4,
  kRetryOnRefusedStream = 1u << 5,
  kRetryOnRetriableStatusCodes = 1u << 6,
  kRetryOnResetBeforeRequest = 1u << 7,
  // gRPC, from the grpc-status response header.
  kRetryOnCancelled = 1u << 8,
  kRetryOnDeadlineExceeded = 1u << 9,
  kRetryOnInternal = 1u << 10,
  kRetryOnResourceExhausted = 1u << 11,
  kRetryOnUnavailable = 1u << 12,
};

struct RetryPolicy {
  uint32_t attempts = 2;  // retries after the first try; 0 disables
  std::optional<Duration> per_try_timeout;
  uint32_t retry_on = 0;  // RetryOn bits
  std::vector<int> retriable_status_codes;
  Duration backoff_base = Duration(25);  // jittered exponential, capped at 10x

  // Istio's default route retry: 2 retries on
  // connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes (no codes).
  static RetryPolicy istio_default();
  static RetryPolicy disabled() { return RetryPolicy{.attempts = 0}; }
};

struct FaultInjection {
  struct Delay {
    Duration fixed{0};
    double percent = 0;  // 0-100; absent percentage = no fault
  };
  struct Abort {
    int http_status = 0;
    std::optional<int> grpc_status;  // gRPC abort: HTTP 200 + grpc-status
    double percent = 0;
  };
  std::optional<Delay> delay;
  std::optional<Abort> abort;
};

struct Timeouts {
  std::optional<Duration> request;          // whole request including retries -> 504
  std::optional<Duration> backend_request;  // each try (Istio: perTryTimeout)
};

struct RouteRule {
  std::string name;                 // optional rule name
  std::vector<RouteMatch> matches;  // never empty: absent = one {PathPrefix "/"}
  std::optional<HeaderModifier> request_headers;
  std::optional<HeaderModifier> response_headers;
  std::optional<UrlRewrite> rewrite;
  std::optional<RequestRedirect> redirect;
  std::optional<DirectResponse> direct_response;
  std::optional<CorsPolicy> cors;
  std::vector<RequestMirror> mirrors;
  std::vector<BackendRef> backends;
  Timeouts timeouts;
  std::optional<RetryPolicy> retry;  // HTTPRoute `retry` or Istio `retries`; nullopt = default
  std::optional<FaultInjection> fault;

  // The retry policy in force: `retry` or Istio's default, with timeouts.backendRequest as the
  // per-try timeout when the policy has none.
  RetryPolicy effective_retry() const;
};

struct ParentRef {
  std::string group;  // "" for a core Service
  std::string kind = "Gateway";
  std::string name;
  std::string namespace_name;  // defaulted to the route's namespace
  std::optional<uint16_t> port;
  std::string section_name;

  bool is_service() const { return (group.empty() || group == "core") && kind == "Service"; }
};

// An HTTPRoute, or a GRPCRoute or VirtualService read into the same model. A GRPCRoute's
// method matches are path matches; it has no timeouts or retries. A VirtualService (kind
// "VirtualService") has no parents: it applies to the services its `hostnames` name (FQDNs, or
// "*" / "*.<suffix>"), and its rules are tried in the order written.
struct HttpRoute {
  std::string kind = "HTTPRoute";
  std::string name;
  std::string namespace_name = "default";
  // Seconds since the epoch from metadata.creationTimestamp; routes without one sort last.
  int64_t created = std::numeric_limits<int64_t>::max();
  std::vector<std::string> hostnames;
  std::vector<ParentRef> parents;
  std::vector<RouteRule> rules;

  std::string key() const { return namespace_name + "/" + name; }
  bool is_virtual_service() const { return kind == "VirtualService"; }
};

// ---- DestinationRule trafficPolicy (networking.istio.io) ------------------------------------

enum class LbAlgorithm { kLeastRequest, kRoundRobin, kRandom, kPassthrough, kConsistentHash };

struct ConsistentHash {
  enum class Source { kHeader, kCookie, kSourceIp, kQueryParameter };
  Source source = Source::kHeader;
  std::string name;  // header / cookie / query parameter name
  std::optional<Duration> cookie_ttl;
  std::string cookie_path;
  uint64_t minimum_ring_size = 1024;
  bool operator==(const ConsistentHash&) const = default;
};

struct LoadBalancer {
  LbAlgorithm algorithm = LbAlgorithm::kLeastRequest;  // Istio's default
  std::optional<ConsistentHash> hash;                  // set iff kConsistentHash
  bool operator==(const LoadBalancer&) const = default;
};

struct ConnectionPool {
  static constexpr uint32_t kUnlimited = std::numeric_limits<uint32_t>::max();
  uint32_t max_connections = kUnlimited;             // tcp.maxConnections
  Duration connect_timeout = Duration(10'000);       // tcp.connectTimeout
  uint32_t http1_max_pending_requests = kUnlimited;  // http.http1MaxPendingRequests
  uint32_t http2_max_requests = kUnlimited;          // http.http2MaxRequests (all protocols)
  uint32_t max_requests_per_connection = 0;          // 0 = unlimited
  uint32_t max_retries = kUnlimited;                 // concurrent retries
  std::optional<Duration> idle_timeout;
  bool operator==(const ConnectionPool&) const = default;
};

struct OutlierDetection {
  uint32_t consecutive_5xx = 5;             // 0 disables
  uint32_t consecutive_gateway_errors = 0;  // 0 disables
  uint32_t consecutive_local_origin_failures = 5;
  bool split_external_local_origin_errors = false;
  Duration interval = Duration(10'000);
  Duration base_ejection_time = Duration(30'000);
  uint32_t max_ejection_percent = 10;
  uint32_t min_health_percent = 0;
  bool operator==(const OutlierDetection&) const = default;
};

struct TrafficPolicy {
  LoadBalancer load_balancer;
  ConnectionPool connection_pool;
  std::optional<OutlierDetection> outlier_detection;
  // Equal policies keep a destination's state (outlier ejections, pool counts) across a
  // configuration change.
  bool operator==(const TrafficPolicy&) const = default;
};

struct PortTrafficPolicy {
  uint16_t port = 0;
  std::optional<LoadBalancer> load_balancer;
  std::optional<ConnectionPool> connection_pool;
  std::optional<OutlierDetection> outlier_detection;
};

// A DestinationRule subset: the service's endpoints whose pods carry `labels`, with its own
// traffic policy over the rule's. The waypoint knows no pod labels: the control plane resolves
// them into `members` ("<namespace>/<name>" of each workload) and sends them as a SubsetEndpoints
// document (parse.h); nullptr when none came, and then the subset has no endpoints.
struct Subset {
  std::string name;
  std::map<std::string, std::string> labels;
  PortTrafficPolicy policy;  // its trafficPolicy's sections (`port` unused)
  std::vector<PortTrafficPolicy> port_level;
  std::shared_ptr<const std::set<std::string>> members;
};

struct DestinationPolicy {
  std::string host;  // FQDN the policy applies to
  std::string name;
  std::string namespace_name;
  TrafficPolicy policy;
  std::vector<PortTrafficPolicy> port_level;
  std::vector<Subset> subsets;

  // The policy for one port, as Istio resolves it: a portLevelSettings entry for the port is all
  // of it (a section the entry leaves out is the default, not the top level's). For a subset:
  // its own entry for the port, if it has one, is all of it; else each section of its
  // trafficPolicy replaces the rule's.
  TrafficPolicy for_port(uint16_t port, const Subset* subset = nullptr) const;
  const Subset* subset(std::string_view name) const;  // nullptr when the rule has none so named
};

// ---- The whole snapshot -------------------------------------------------------------------

struct WaypointConfig {
  std::string cluster_domain = "cluster.local";
  std::vector<HttpRoute> routes;
  std::vector<DestinationPolicy> destinations;

  // The DestinationRule for `host` (FQDN), nullptr when none.
  const DestinationPolicy* destination(std::string_view host) const;
};

}  // namespace zt::waypoint::config
