// RequestAuthentication (security.istio.io) as the waypoint enforces it (facts S4): each request
// to a destination with policies attached is checked for JWTs in the places their jwtRules name.
//
// - Places: a rule's fromHeaders (name + value prefix), fromParams (query parameters) and
//   fromCookies; a rule naming none of them takes "Authorization: Bearer <token>" and the query
//   parameter access_token, as Istio's default. As Envoy reads them: in a header the token is the
//   first run of base64url characters and dots after the prefix's first occurrence
//   (case-sensitive; without such a run, the whole value, which fails); the first value of a query
//   parameter, names and values percent-decoded (an empty one fails too).
// - No token anywhere: the request goes on without a request identity (AuthorizationPolicy
//   decides, e.g. with requestPrincipals ["*"]). A token that fails (bad form, signature, time,
//   audience, or an issuer no rule of the attached policies names): 401, with Envoy's message as
//   the body and a `www-authenticate: Bearer realm="<url>", error="invalid_token"` header. Every
//   token found must verify.
// - A verified token gives the request principal "<iss>/<sub>", its audiences ("aud"),
//   presenter ("azp") and claims for authorization (request.auth.*). Unless its rule sets
//   forwardOriginalToken, the header that carried it is removed before forwarding;
//   outputPayloadToHeader and outputClaimToHeaders set headers from it. Those output headers are
//   removed from a request whose token does not set them, so a client cannot forge them.
// - A rule with a jwksUri the waypoint was not given keys for fails every token of its issuer
//   (as Istio does when it cannot fetch a JWKS): keys come inline (`jwks`).
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "waypoint/authz/jwt.h"
#include "waypoint/authz/policy.h"
#include "waypoint/http/headers.h"

namespace zt::waypoint::authz {

struct JwtRule {
  struct FromHeader {
    std::string name;    // lower-case
    std::string prefix;  // e.g. "Bearer "
  };
  struct ClaimToHeader {
    std::string header;  // lower-case
    std::string claim;
  };
  std::string issuer;
  std::vector<std::string> audiences;
  std::shared_ptr<const Jwks> jwks;  // null: jwksUri only, keys not available here
  std::string jwks_uri;
  std::vector<FromHeader> from_headers;
  std::vector<std::string> from_params;
  std::vector<std::string> from_cookies;
  bool forward_original_token = false;
  std::string output_payload_to_header;  // lower-case; "" = none
  std::vector<ClaimToHeader> output_claim_to_headers;
};

struct RequestAuthentication {
  std::string name;
  std::string namespace_name;
  std::vector<JwtRule> rules;
  std::vector<TargetRef> target_refs;
  bool has_selector = false;  // a `selector` policy: waypoints ignore it

  std::string key() const { return namespace_name + "/" + name; }
};

// What a verified token tells authorization.
struct JwtIdentity {
  std::string principal;  // "<iss>/<sub>"
  nlohmann::json claims;  // the token's payload (an object)
};

struct AuthnResult {
  bool rejected = false;
  std::string reason;                   // rejected: Envoy's message, e.g. "Jwt is expired"
  std::optional<JwtIdentity> identity;  // the first verified token's
};

// Checks the request's tokens against the rules of `policies`, and edits `head` as above.
AuthnResult authenticate(std::span<const RequestAuthentication* const> policies,
                         http::RequestHead& head, std::chrono::system_clock::time_point now);

// The claim at `path` (["a"] for claims[a], ["a", "b"] for claims[a][b]) as strings: a string
// claim gives itself, a list its strings; anything else gives nothing.
std::vector<std::string> claim_strings(const nlohmann::json& claims,
                                       const std::vector<std::string>& path);

}  // namespace zt::waypoint::authz
