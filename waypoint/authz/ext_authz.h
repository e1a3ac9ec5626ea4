// CUSTOM authorization (facts S3): an AuthorizationPolicy with `action: CUSTOM` and
// `provider.name` sends each request it matches to an external authorizer, one of MeshConfig's
// `extensionProviders`, before DENY and ALLOW policies are looked at. Two kinds, as Envoy's
// ext_authz filter speaks them:
//
// - envoyExtAuthzHttp: the check is an HTTP request to the provider with the original method,
//   :authority and path (after `pathPrefix`), the headers Envoy always sends (Authorization) and
//   those `includeRequestHeadersInCheck` names, then `includeAdditionalHeadersInCheck`; a body
//   only with `includeRequestBodyInCheck`. Exactly 200 allows; a 5xx is an error; any other status
//   denies, and the client gets the provider's status, body and headers (all but Host, or the
//   ones `headersToDownstreamOnDeny` names plus WWW-Authenticate and Location).
// - envoyExtAuthzGrpc: envoy.service.auth.v3.Authorization/Check over HTTP/2 with a CheckRequest
//   (source and destination peers, the request's headers, path, host, protocol, body); a
//   CheckResponse whose status code is OK allows, any other denies (with its denied_response's
//   status, 403 by default, or 401 for UNAUTHENTICATED, headers and body); a failed call or an
//   error_response is an error.
//
// On an error (no answer within `timeout`, a refused connection, a 5xx, a failed call) the
// request is refused with `statusOnError` (403) and an empty body, or goes on unchecked with
// `failOpen`. On allow, headers the provider returns may be set on the request
// (`headersToUpstreamOnAllow`, or the gRPC ok_response's headers), removed from it
// (`x-envoy-auth-headers-to-remove`, ok_response.headers_to_remove) or added to the response
// (`headersToDownstreamOnAllow`, ok_response.response_headers_to_add).
//
// Header name patterns are Istio's: "abc" exact, "abc*" prefix, "*abc" suffix, case-insensitive.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/async/asio.h"
#include "common/base/result.h"
#include "waypoint/http/headers.h"

namespace zt::waypoint::authz {

struct HeaderPattern {
  enum class Kind { kExact, kPrefix, kSuffix };
  Kind kind = Kind::kExact;
  std::string text;  // lower-case, without the '*'

  // Refuses "", "*" and a '*' anywhere but at one end.
  static Result<HeaderPattern> parse(std::string_view pattern);
  bool matches(std::string_view name) const;  // name in any case
};

bool any_matches(const std::vector<HeaderPattern>& patterns, std::string_view name);

struct ExtAuthzProvider {
  enum class Kind { kHttp, kGrpc };
  std::string name;
  Kind kind = Kind::kHttp;
  std::string service;            // the hostname, e.g. "ext-authz.foo.svc.cluster.local"
  std::string service_namespace;  // from "<namespace>/<hostname>"; "" = any
  uint16_t port = 0;
  std::chrono::milliseconds timeout{600'000};
  bool fail_open = false;
  int status_on_error = 403;
  // includeRequestBodyInCheck: the body (up to max_body_bytes) goes with the check.
  struct Body {
    uint32_t max_bytes = 0;
    bool allow_partial = false;  // else a longer body is refused with 413
    bool pack_as_bytes = false;  // gRPC: raw_body instead of body
  };
  std::optional<Body> body;
  // HTTP only.
  std::string path_prefix;
  std::vector<HeaderPattern> include_request_headers;
  std::vector<std::pair<std::string, std::string>> include_additional_headers;  // lower-case
  std::vector<HeaderPattern> headers_to_upstream_on_allow;
  std::vector<HeaderPattern> headers_to_downstream_on_allow;
  std::vector<HeaderPattern> headers_to_downstream_on_deny;
};

// What the check tells the provider about a request, beyond its head.
struct CheckInput {
  const http::RequestHead* head = nullptr;
  std::string_view body;       // what goes with the check (already cut to max_bytes)
  bool body_partial = false;   // the request's body is longer than `body`
  bool body_included = false;  // includeRequestBodyInCheck applies
  std::string_view protocol;   // "HTTP/1.1", "HTTP/2"
  std::string_view request_id;
  asio::ip::address source_ip;
  std::string source_principal;  // SPIFFE URI of the peer, "" when none
  asio::ip::address destination_ip;
  uint16_t destination_port = 0;
  std::string destination_principal;  // the waypoint's own SPIFFE URI
  std::chrono::system_clock::time_point now{};
};

// Edits a provider asks for on the request (on allow) or on the response.
struct HeaderEdits {
  http::HeaderList set;         // replace every header of each name here by those given here
  http::HeaderList append;      // added after any of the same name
  http::HeaderList if_absent;   // added only when there is none of the name
  http::HeaderList if_present;  // replace headers of the same name, never added
  std::vector<std::string> remove;
  // Removals first, then set, append, if_absent, if_present in that order. Pseudo-headers and
  // Host are never in an edit (the readers drop them).
  void apply(http::HeaderList& headers) const;
  bool empty() const {
    return set.empty() && append.empty() && if_absent.empty() && if_present.empty() &&
           remove.empty();
  }
};

// The provider's answer.
struct ExtAuthzVerdict {
  enum class Kind { kAllowed, kDenied, kError };
  Kind kind = Kind::kError;
  std::string reason;  // for the access log: why denied or failed
  // Denied or error (when not failing open): the answer to the client.
  int status = 403;
  std::string body;
  http::HeaderList headers;
  // Allowed: edits to the request, and to the answer the client gets.
  HeaderEdits upstream;
  HeaderEdits downstream;
};

// The HTTP check request's head (method, target, authority, headers) for `input`.
http::RequestHead http_check_head(const ExtAuthzProvider& provider, const CheckInput& input);
// Reads the HTTP provider's answer.
ExtAuthzVerdict read_http_check_answer(const ExtAuthzProvider& provider, int status,
                                       const http::HeaderList& headers, std::string body);

inline constexpr std::string_view kCheckMethodPath = "/envoy.service.auth.v3.Authorization/Check";
// The serialized envoy.service.auth.v3.CheckRequest for `input` (not gRPC-framed); the body as
// raw_body with packAsBytes.
std::string grpc_check_request(const ExtAuthzProvider& provider, const CheckInput& input);
// Reads a serialized CheckResponse.
ExtAuthzVerdict read_grpc_check_answer(std::string_view message);

// The verdict when the provider could not be asked or answered with an error: allowed with
// failOpen, else refused with statusOnError and an empty body.
ExtAuthzVerdict check_failed(const ExtAuthzProvider& provider, std::string reason);

// (Routing comes after authorization: a route matching on a header sees the provider's request
// edits, as Envoy's clearRouteCache would have it.)

// The status codes Envoy's StatusCode enum names (what statusOnError may be).
bool is_envoy_status_code(int code);

inline constexpr std::string_view kPartialBody = "x-envoy-auth-partial-body";
// Headers a message's framing and connection own (the hop-by-hop ones, Content-Length,
// Upgrade, Trailer): never copied from one message to another.
bool framing_header(std::string_view name);
// A header a provider may hand on: a token name (not a framing one, a pseudo-header or Host) and
// a value without control characters. Anything else is dropped (no header injection).
bool usable_provider_header(std::string_view name, std::string_view value);

}  // namespace zt::waypoint::authz
