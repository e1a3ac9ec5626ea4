// Request -> route rule -> backend, with the Gateway API semantics a mesh (GAMMA) route has:
// HTTPRoutes attach to a Service (parentRefs kind Service, optionally one port) and apply to
// requests for that service whatever their Host header (hostnames are not used for Service
// parents). Among all matches of all routes of a service the winner is the first in this order
// (Gateway API HTTPRouteRule precedence; regex ranking is implementation-specific):
//   1. path match type: Exact, then PathPrefix, then RegularExpression;
//   2. longer path value (characters) first;
//   3. a method match before none;
//   4. more header matches; 5. more query-parameter matches;
//   6. the older route (metadata.creationTimestamp), then "<namespace>/<name>" alphabetically;
//   7. rule order in the route, then match order in the rule.
// VirtualServices come after a service's HTTPRoutes: their rules and matches in the order
// written, the oldest VirtualService first; those with a wildcard host ("*", "*.<suffix>") after
// those naming the service.
// No match -> 404 (response flag NR). A matched rule without any backend of non-zero weight and
// without a redirect -> 500.
//
// Everything is a pure function of (table, request, injected Random).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "waypoint/base/random.h"
#include "waypoint/config/model.h"
#include "waypoint/http/headers.h"

namespace zt::waypoint::route {

// One route rule's match, ready to test.
struct Candidate {
  const config::HttpRoute* route = nullptr;
  const config::RouteRule* rule = nullptr;
  const config::RouteMatch* match = nullptr;
  size_t rule_index = 0;
  size_t match_index = 0;
  std::optional<uint16_t> port;  // the parentRef port; nullopt = every port of the service
};

struct Selection {
  const config::HttpRoute* route = nullptr;
  const config::RouteRule* rule = nullptr;
  const config::RouteMatch* match = nullptr;
  size_t rule_index = 0;

  explicit operator bool() const { return rule != nullptr; }
};

// True when `match` (path, method, headers, query) accepts the request.
bool matches(const config::RouteMatch& match, const http::RequestHead& head);
// ... and the candidate's ports and the client's namespace (a VirtualService sourceNamespace).
bool matches(const Candidate& candidate, uint16_t port, std::string_view source_namespace,
             const http::RequestHead& head);

// Every attached route's matches per service host, sorted by precedence. Keeps the config
// snapshot alive.
class RouteTable {
 public:
  RouteTable() = default;
  explicit RouteTable(std::shared_ptr<const config::WaypointConfig> config);

  // The winning rule for a request to service `host` (FQDN, case-insensitive) on `port` from a
  // client in `source_namespace`.
  Selection select(std::string_view host, uint16_t port, const http::RequestHead& head,
                   std::string_view source_namespace = {}) const;

  // Whether any route applies to requests for `host` on `port` (else the waypoint's default
  // route: the service itself).
  bool attached(std::string_view host, uint16_t port) const;

  // The candidates naming `host` in precedence order, without wildcard VirtualServices (for
  // tests and config dumps).
  const std::vector<Candidate>* candidates(std::string_view host) const;
  const config::WaypointConfig& config() const { return *config_; }

 private:
  // Calls `fn` on every candidate for `host` in order until it returns true.
  template <class Fn>
  bool each_candidate(std::string_view host, Fn&& fn) const;

  std::shared_ptr<const config::WaypointConfig> config_;
  std::unordered_map<std::string, std::vector<Candidate>> by_host_;
  std::unordered_map<std::string, std::vector<Candidate>> wildcard_;  // VirtualService "*..." hosts
  std::vector<std::string> wildcard_order_;                           // their first-seen order
};

// Weighted random choice among the rule's backends; nullptr when none has weight > 0.
const config::BackendRef* pick_backend(const config::RouteRule& rule, Random& random);

// Gateway API header modifier: remove, then set (overwrite), then add (append ",value").
void apply_header_modifier(const config::HeaderModifier& modifier, http::HeaderList& headers);

// The new request target (query kept) after a path modifier; `match` is the rule's match that
// selected the request (ReplacePrefixMatch replaces exactly its prefix, on a segment boundary;
// kRewriteMatched what it matched).
std::string modified_target(const config::PathModifier& modifier, const config::RouteMatch& match,
                            std::string_view target);

struct Redirect {
  int status = 302;
  std::string location;
};

// The redirect response for a RequestRedirect rule. `service_port` is the port the request was
// addressed to (the "listener port" of a mesh route).
Redirect redirect_for(const config::RequestRedirect& redirect, const config::RouteMatch& match,
                      const http::RequestHead& head, uint16_t service_port);

// Envoy's shadow host: "-shadow" appended to the host part ("svc:80" -> "svc-shadow:80").
std::string shadow_authority(std::string_view authority);

// The outcome of routing one request.
struct RouteDecision {
  enum class Kind {
    kForward,    // send to `backend` (head already rewritten)
    kRedirect,   // answer `redirect`
    kDirect,     // answer the rule's direct_response
    kNoRoute,    // 404, flag NR
    kNoBackend,  // 500: the rule has no usable backend
  };
  Kind kind = Kind::kNoRoute;
  Selection selection;
  const config::BackendRef* backend = nullptr;
  Redirect redirect;
  std::vector<const config::RequestMirror*> mirrors;  // mirrors chosen for this request
  std::string original_target;                        // before URLRewrite (x-envoy-original-path)
};

// Selects, redirects or forwards: on kForward applies the rule's RequestHeaderModifier and
// URLRewrite to `head`, picks the backend and decides each mirror's percentage.
RouteDecision route_request(const RouteTable& table, std::string_view host, uint16_t port,
                            http::RequestHead& head, Random& random,
                            std::string_view source_namespace = {});

// CORS, as Envoy's filter does it with a route's policy, from the request as it came (before any
// route edit).
struct CorsRequest {
  std::string_view method;
  std::optional<std::string> origin;
  std::optional<std::string> request_method;   // Access-Control-Request-Method
  std::optional<std::string> request_headers;  // Access-Control-Request-Headers
};
struct CorsDecision {
  bool preflight = false;             // OPTIONS with Origin and Access-Control-Request-Method
  std::optional<std::string> origin;  // the Origin, when the policy allows it
  // A preflight the waypoint answers itself (200, with `headers`); else the request goes on and
  // `headers` go on every answer it gets.
  bool answer = false;
  http::HeaderList headers;
};
// An origin is allowed when a match accepts it, or accepts "*" (Envoy's rule: `exact: "*"`
// allows every origin). A preflight's answer has allow-origin (for an allowed origin), then
// allow-credentials, allow-methods and allow-headers ("*" answers with what the preflight asks
// for), max-age; with unmatchedPreflights IGNORE another origin's preflight is answered with those
// but allow-origin. Another request gets allow-origin, allow-credentials and expose-headers.
CorsDecision decide_cors(const config::CorsPolicy& cors, const CorsRequest& request);

// The chosen destination's response header edits (a VirtualService's), then the rule's
// ResponseHeaderModifier, on the response headers.
void apply_response_filters(const config::RouteRule& rule, const config::BackendRef* backend,
                            http::HeaderList& response_headers);

}  // namespace zt::waypoint::route
