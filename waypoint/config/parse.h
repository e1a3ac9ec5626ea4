// YAML -> WaypointConfig. Accepts Kubernetes objects as `kubectl get -o yaml` writes them:
//
//   - a stream of documents, a `kind: List` with `items`, or a waypoint document
//       { clusterDomain: cluster.local, httpRoutes: [<HTTPRoute>...],
//         virtualServices: [<VirtualService>...], destinationRules: [<DestinationRule>...] };
//   - HTTPRoute (gateway.networking.k8s.io): metadata {name, namespace, creationTimestamp} and
//     `spec` exactly as Gateway API defines it (parentRefs, hostnames, rules with matches,
//     filters, backendRefs, timeouts, retry);
//   - GRPCRoute (gateway.networking.k8s.io/v1): parentRefs, hostnames, rules with matches (method
//     {type, service, method} as a path match on "/<service>/<method>", headers), filters (header
//     modifiers, RequestMirror), backendRefs; read into the HTTPRoute model and ranked with
//     HTTPRoute's precedence (Exact path, then PathPrefix, then regular expression), not
//     GRPCRoute's (characters of service, then method); no rules: no default rule;
//   - VirtualService (networking.istio.io): see parse_virtual_service;
//   - DestinationRule (networking.istio.io): spec.host and spec.trafficPolicy (loadBalancer,
//     connectionPool, outlierDetection, portLevelSettings);
//   - Istio VirtualService-style `retries` and `fault` blocks (HTTPRetry, HTTPFaultInjection, as
//     Istio writes them) as an extension on an HTTPRoute rule (`rules[i].retries`,
//     `rules[i].fault`) or on the whole route (`istio: {retries, fault}` next to `spec`, used by
//     rules without their own). A rule's Gateway API `retry` wins over `retries`.
//
// Strictness: inside a `spec`, an unknown key, a wrong type or an out-of-range value is an error
// whose message starts with the path of the field ("httpRoutes[0].spec.rules[1].matches[0].path
// .type: ..."); other kinds and metadata/status fields are ignored. Errors are values; no exception
// escapes these functions.
#pragma once

#include <string_view>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "common/base/result.h"
#include "waypoint/config/model.h"

namespace zt::waypoint::config {

// Go/Istio durations: "10s", "1.5s", "250ms", "1m30s", "1h", "100us", "0". Sub-millisecond
// remainders round up to the next millisecond.
Result<Duration> parse_duration(std::string_view text);

// "2026-01-02T03:04:05Z" (fraction and numeric offsets accepted) -> seconds since the epoch.
Result<int64_t> parse_rfc3339(std::string_view text);

// The whole configuration from YAML text.
Result<WaypointConfig> parse_waypoint_config(std::string_view yaml);

// The same in two steps, so one text is loaded once for every parser that reads it (routes
// here, AuthorizationPolicies in authz/parse.h: state/config_store.cc). load_documents refuses
// texts over 16 MiB and answers a syntax error as "invalid YAML at line L, column C: ...".
Result<std::vector<YAML::Node>> load_documents(std::string_view yaml);
Result<WaypointConfig> parse_waypoint_config(const std::vector<YAML::Node>& docs);

// One HTTPRoute or GRPCRoute object (metadata + spec). `path` prefixes error messages.
Result<HttpRoute> parse_http_route(const YAML::Node& object, std::string_view path = "HTTPRoute");

// One VirtualService object, as an Istio waypoint applies it: read into the route model (kind
// "VirtualService"), its rules tried in the order written, after the HTTPRoutes of the same
// service (Istio puts a namespace's HTTPRoutes first and warns that mixing the two is
// unsupported). Several VirtualServices of one service are tried oldest first, as Istio 1.30
// and later concatenate them (earlier releases used only the first).
// Where this departs from Istio: sourceNamespace is the client's namespace (Istio compares the
// waypoint's own, which makes it match everything or nothing).
//   - spec.hosts: short names are services of the VirtualService's namespace; "*" and
//     "*.<suffix>" wildcards. `gateways` without "mesh": it routes nothing here. `exportTo` is
//     meshd's business; `tcp` and `tls` routes are not applied (the waypoint routes HTTP).
//   - http[].match: uri (`prefix` is a plain string prefix, as in Istio), scheme, method,
//     authority, headers, withoutHeaders, queryParams (StringMatch exact / prefix / regex; `{}`
//     or, for headers, `regex: "*"` means present), port (the service port), ignoreUriCase,
//     sourceNamespace (the client's, from its identity). A match with sourceLabels, or with
//     `gateways` that do not name "mesh", is dropped, as Istio does at a waypoint; a rule whose
//     matches are all dropped is left out. No match: every request.
//   - http[].route[]: destination {host (a Kubernetes Service; another host answers 500 NC),
//     subset (a DestinationRule subset), port.number (else the service's only port, else the
//     request's)}, weight (one destination takes everything; several need weights that do not
//     add up to 0), headers. http[].redirect (redirectCode 301 by default, derivePort),
//     directResponse (body.string), rewrite {uri (Envoy's prefix_rewrite; "" rewrites nothing),
//     authority, uriRegexRewrite}, headers {request, response} (setting ":authority"/"host"
//     rewrites the authority, for the rule or for one destination), timeout (none by default),
//     retries, fault, mirror + mirrorPercentage, mirrors,
//     corsPolicy (Envoy's CORS filter: route::decide_cors).
//   - Refused with an error naming the field: delegate, directResponse body.bytes,
//     JWT-claim header matches, rewrite or redirect paths with spaces, control characters or '#'.
//
// A DestinationRule's subsets {name, labels, trafficPolicy} are read too, and a SubsetEndpoints
// document (apiVersion ambientmesh.io/v1, the control plane's, named as its DestinationRule)
// gives each subset its workloads, which the waypoint cannot pick by label itself:
//   {metadata: {name, namespace}, spec: {subsets: [{name, workloads: ["<ns>/<pod>", ...]}]}}.
// A subset without one has no endpoints.
Result<HttpRoute> parse_virtual_service(const YAML::Node& object, std::string_view cluster_domain,
                                        std::string_view path = "VirtualService");

// One DestinationRule object; a short spec.host is qualified with the rule's namespace.
Result<DestinationPolicy> parse_destination_rule(const YAML::Node& object,
                                                 std::string_view cluster_domain,
                                                 std::string_view path = "DestinationRule");

// DestinationRule spec.trafficPolicy.
Result<TrafficPolicy> parse_traffic_policy(const YAML::Node& node,
                                           std::string_view path = "trafficPolicy");

// VirtualService HTTPRetry: {attempts, perTryTimeout, retryOn, backoff}.
Result<RetryPolicy> parse_istio_retries(const YAML::Node& node, std::string_view path = "retries");

// VirtualService HTTPFaultInjection: {delay{fixedDelay, percentage{value} | percent},
// abort{httpStatus | grpcStatus, percentage{value} | percent}}.
Result<FaultInjection> parse_istio_fault(const YAML::Node& node, std::string_view path = "fault");

// A retryOn string ("5xx,gateway-error,503"): sets the bits and the status codes.
Status parse_retry_on(std::string_view text, RetryPolicy& out, std::string_view path = "retryOn");

}  // namespace zt::waypoint::config
