// The Kubernetes list/watch protocol without sockets, so every rule is unit-testable
// (https://kubernetes.io/docs/reference/using-api/api-concepts/):
//   LIST  GET <path>?limit=N[&continue=T][&fieldSelector=F][&labelSelector=L]
//         -> {"metadata":{"resourceVersion","continue"},"items"}
//   WATCH GET <path>?watch=1&resourceVersion=RV&allowWatchBookmarks=true&timeoutSeconds=S[&...]
//         -> one JSON event per line: {"type":"ADDED|MODIFIED|DELETED|BOOKMARK|ERROR","object":{}}
// JSON is YAML, so bodies are read with yaml-cpp and objects go to manifest::convert().
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "common/base/result.h"

namespace zt::meshd::kube {

// One resource type the sources watch.
struct ResourceType {
  std::string kind;         // "Pod"
  std::string api_version;  // "v1", "security.istio.io/v1"
  std::string plural;       // "pods"
  // Served only in an older version (CRDs older than the version read), the kind counts as not
  // installed instead of holding the source back. Only for a kind whose absence cannot open
  // anything up: GRPCRoute (gateway.networking.k8s.io/v1 since Gateway API 1.1), VirtualService
  // (networking.istio.io/v1 since Istio 1.22). Not
  // RequestAuthentication: without it, bad tokens would no longer be refused (401).
  bool older_version_is_none = false;
  // A fieldSelector every list and watch of the kind carries: ConfigMap reads only `istio`
  // (MeshConfig), which is also all its RBAC rule grants (resourceNames). The label selector
  // (KubeConfig) does not apply to such a kind.
  std::string field_selector = {};
  // Read in this namespace only (ConfigMap: meshd's root namespace, istio-system); "" = all.
  std::string namespace_ = {};
  // A LIST answered 403 (RBAC older than the kind) counts as none, checked again later, while
  // nothing was listed, instead of holding everything back. Only for a kind whose absence
  // opens nothing up: without the MeshConfig, a CUSTOM policy's provider is unknown and what it
  // matches is denied; VirtualServices only route (authorization is AuthorizationPolicy's).
  bool forbidden_is_none = false;
  // "/api/v1/pods", "/apis/security.istio.io/v1/authorizationpolicies" (all namespaces),
  // "/api/v1/namespaces/istio-system/configmaps" (one).
  std::string path() const;
  // "security.istio.io"; "" for the core group ("v1").
  std::string group() const;
  // Defined by a CustomResourceDefinition, which a cluster may not have installed: a group that is
  // not one of Kubernetes' own (those have no dot or end in ".k8s.io"), or Gateway API's.
  bool custom() const;
};

// The resource names of an APIResourceList (discovery: GET /apis/<group>/<version>), e.g.
// "authorizationpolicies", "authorizationpolicies/status".
Result<std::vector<std::string>> parse_resource_names(std::string_view body);
// The group versions an APIGroup lists (discovery: GET /apis/<group>), e.g.
// "security.istio.io/v1", "security.istio.io/v1beta1".
Result<std::vector<std::string>> parse_group_versions(std::string_view body);

// Namespaces, Pods, Services, ServiceAccounts, AuthorizationPolicies, PeerAuthentications and
// RequestAuthentications (security.istio.io/v1), Gateways, HTTPRoutes and GRPCRoutes
// (gateway.networking.k8s.io/v1), DestinationRules and VirtualServices (networking.istio.io/v1),
// and the ConfigMap istio of istio-system.
const std::vector<ResourceType>& resource_types();

struct Selectors {
  std::string field;  // "spec.nodeName=node-0"
  std::string label;  // "app=web"
};

// Percent-encodes a query value (RFC 3986 unreserved characters stay).
std::string url_encode(std::string_view value);

std::string list_target(const std::string& base_path, const ResourceType& type,
                        const Selectors& selectors, uint32_t limit,
                        const std::string& continue_token);
std::string watch_target(const std::string& base_path, const ResourceType& type,
                         const Selectors& selectors, const std::string& resource_version,
                         uint32_t timeout_seconds);

// metav1.Status (the body of an error response, the object of an ERROR event).
struct ApiStatus {
  int code = 0;        // 410, 500, ...
  std::string reason;  // "Expired", "Gone", ...
  std::string message;
  std::string describe() const;  // "410 Expired: too old resource version: 1 (5)"
};
// Reads a Status from a JSON body; nullopt when it is not one.
std::optional<ApiStatus> parse_status(std::string_view body);

struct ListPage {
  std::vector<YAML::Node> items;  // without kind/apiVersion, as the API server sends them
  std::string resource_version;   // metadata.resourceVersion
  std::string continue_token;     // metadata.continue ("" on the last page)
};
Result<ListPage> parse_list(std::string_view body);

enum class EventType { kAdded, kModified, kDeleted, kBookmark, kError };
std::string_view to_string(EventType type);

struct WatchEvent {
  EventType type = EventType::kAdded;
  YAML::Node object;                // ADDED/MODIFIED/DELETED/BOOKMARK
  std::string resource_version;     // object.metadata.resourceVersion ("" for ERROR)
  std::optional<ApiStatus> status;  // ERROR
};
// One line of a watch stream.
Result<WatchEvent> parse_watch_event(std::string_view line);

// Splits a byte stream into lines ('\n'; a trailing '\r' is dropped; empty lines are skipped).
// A line longer than `max_line` is an error (a stream that never ends a line).
class LineSplitter {
 public:
  explicit LineSplitter(size_t max_line = 64u << 20) : max_line_(max_line) {}
  // Appends `data` and calls `on_line` for each complete line; false when a line is too long.
  bool feed(std::string_view data, const std::function<void(std::string_view)>& on_line);
  size_t pending() const { return buffer_.size(); }

 private:
  size_t max_line_;
  std::string buffer_;
};

// Exponential backoff with jitter: initial, doubling up to max; each delay is drawn uniformly
// from [d/2, d] so a fleet of agents does not retry in step. reset() after a success.
class Backoff {
 public:
  Backoff(std::chrono::milliseconds initial, std::chrono::milliseconds max,
          uint64_t seed = std::random_device{}());
  std::chrono::milliseconds next();
  void reset() { current_ = initial_; }
  std::chrono::milliseconds ceiling() const { return current_; }  // bound of the next delay

 private:
  std::chrono::milliseconds initial_, max_, current_;
  std::mt19937_64 rng_;
};

// How one WATCH request ended, and what the type's loop does next.
struct WatchOutcome {
  int http_status = 0;                    // 0: no response (connect/TLS/send failed)
  std::optional<int> error_event;         // code of an ERROR event, when one ended the stream
  size_t events = 0;                      // events received (any type)
  bool transport_error = false;           // the connection failed or dropped mid-stream
  std::chrono::milliseconds duration{0};  // from sending the request to the end
};
enum class NextStep {
  kWatch,              // re-watch now from the last resourceVersion (the server ended the
                       // watch, or it dropped after progress)
  kWatchAfterBackoff,  // re-watch from the last resourceVersion after a backoff delay
  kRelist,             // resourceVersion too old (410 Gone): LIST again now
};
// 410 (HTTP or ERROR event) -> kRelist; a clean end or a drop after at least one event ->
// kWatch (a clean end with no event within a second also backs off: a server that closes at
// once must not make us spin); anything else -> kWatchAfterBackoff.
NextStep next_step(const WatchOutcome& outcome);

// After a failed LIST page: a 410 on a continue token means the snapshot expired; restart the
// list without it. Every other failure backs off and restarts the list too.
bool list_restart_now(int http_status);

}  // namespace zt::meshd::kube
