// L7 AuthorizationPolicy (security.istio.io) as the waypoint enforces it (facts §3.1-3.3):
// a pure function of (policies attached to the destination, request attributes).
//
// - Order: CUSTOM (ask the provider; its "deny" denies) -> DENY (any match denies) -> ALLOW
//   (no ALLOW policy: allow; else some ALLOW must match). AUDIT never decides. Dry-run policies
//   (annotation istio.io/dry-run: "true") only add notes.
// - A policy without rules never matches (ALLOW `spec: {}` = allow nothing); an empty rule
//   always matches (`rules: [{}]` = allow all). A rule = any `from` x any `to` x all `when`;
//   inside a source/operation every set field must pass: a positive list when one element
//   matches, a not* list when none does.
// - Strings: "abc" exact, "abc*" prefix, "*abc" suffix, "*" present (non-empty). Hosts compare
//   case-insensitively (and "example.com" does not match "example.com:8080"). Paths also accept
//   templates: "{*}" one segment, "{**}" any rest (must be the last operator); paths compare
//   without the query and after normalisation (normalize.h).
// - Principals are "td/ns/N/sa/S" (no "spiffe://"); namespaces match N of the principal; both
//   fail (and their not* lists pass) for a request without a peer identity.
// - request.headers[...] conditions see repeated headers joined with ",".
// - request.auth.* conditions and requestPrincipals see the JWT that RequestAuthentication
//   verified (request_authn.h); without one they fail (and their not* lists pass). A claim or
//   audience that is a list matches when one element does (notValues: when none does).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/base/result.h"
#include "common/net/address.h"
#include "waypoint/http/headers.h"

namespace zt::waypoint::authz {

struct JwtIdentity;  // request_authn.h

struct StringMatch {
  enum class Kind { kExact, kPrefix, kSuffix, kPresence };
  Kind kind = Kind::kExact;
  std::string value;

  // Istio's rules: "*" presence, leading '*' suffix, trailing '*' prefix, else exact.
  static StringMatch parse(std::string_view text);
  bool matches(std::string_view input, bool ignore_case = false) const;
};

// A `paths` entry: a StringMatch or a URI template with {*} / {**}.
class PathPattern {
 public:
  static Result<PathPattern> parse(std::string_view text);
  bool matches(std::string_view path) const;  // `path` without the query

 private:
  bool is_template_ = false;
  StringMatch string_;
  std::vector<std::string> segments_;  // template: literal segments, "{*}" or "{**}"
};

struct Source {
  std::vector<StringMatch> principals, not_principals;
  std::vector<StringMatch> request_principals, not_request_principals;
  std::vector<StringMatch> namespaces, not_namespaces;
  std::vector<net::Cidr> ip_blocks, not_ip_blocks;
  std::vector<net::Cidr> remote_ip_blocks, not_remote_ip_blocks;
};

struct Operation {
  std::vector<StringMatch> hosts, not_hosts;
  std::vector<std::string> ports, not_ports;
  std::vector<StringMatch> methods, not_methods;
  std::vector<PathPattern> paths, not_paths;
};

struct Condition {
  enum class Key {
    kRequestHeader,     // request.headers[<name>]
    kSourceIp,          // source.ip
    kRemoteIp,          // remote.ip
    kSourceNamespace,   // source.namespace
    kSourcePrincipal,   // source.principal
    kRequestPrincipal,  // request.auth.principal
    kDestinationIp,     // destination.ip
    kDestinationPort,   // destination.port
    kRequestAudiences,  // request.auth.audiences (the JWT's "aud", a string or a list)
    kRequestPresenter,  // request.auth.presenter (the JWT's "azp")
    kRequestClaim,      // request.auth.claims[a] or claims[a][b]...: a string or a list of them
    kUnavailable,       // connection.sni: not known here
  };
  Key key = Key::kRequestHeader;
  std::string key_text;                 // as written, for messages
  std::string header_name;              // kRequestHeader
  std::vector<std::string> claim_path;  // kRequestClaim: {"a"} for claims[a]
  std::vector<StringMatch> values, not_values;
  std::vector<net::Cidr> ip_values, not_ip_values;  // IP keys
};

struct Rule {
  std::vector<Source> from;
  std::vector<Operation> to;
  std::vector<Condition> when;
};

enum class Action { kAllow, kDeny, kAudit, kCustom };

struct TargetRef {
  std::string group;
  std::string kind;
  std::string name;
  std::string namespace_name;
};

struct Policy {
  std::string name;
  std::string namespace_name;
  Action action = Action::kAllow;
  std::string provider;  // CUSTOM
  std::vector<Rule> rules;
  bool dry_run = false;
  std::vector<TargetRef> target_refs;
  bool has_selector = false;  // a `selector` policy: waypoints ignore it

  std::string key() const { return namespace_name + "/" + name; }
};

// What a policy can see of a request at the waypoint.
struct RequestInfo {
  std::string_view method;
  std::string_view path;  // normalised; a query, if present, is ignored
  std::string_view host;  // :authority / Host as sent
  uint16_t destination_port = 0;
  const http::HeaderList* headers = nullptr;
  std::optional<std::string> principal;          // "td/ns/N/sa/S" of the HBONE peer
  std::optional<std::string> request_principal;  // "<iss>/<sub>" of a validated JWT
  const JwtIdentity* jwt = nullptr;              // that JWT (claims), when there is one
  asio::ip::address source_ip{};
  std::optional<asio::ip::address> remote_ip;  // from x-forwarded-for; defaults to source_ip
  asio::ip::address destination_ip{};
};

struct Decision {
  enum class Outcome {
    kNoAllowPolicies,  // allowed: no ALLOW policy applies
    kAllowed,          // allowed by `policy`
    kDenied,           // denied by DENY `policy`
    kDeniedByCustom,   // the CUSTOM `policy`'s provider denied (or could not be asked)
    kNoAllowMatched,   // denied: ALLOW policies exist, none matched
  };
  Outcome outcome = Outcome::kNoAllowPolicies;
  std::string policy;                // "ns/name" of the deciding policy, "" when none
  std::vector<std::string> dry_run;  // "dry-run deny matched: ns/name", ...

  bool allowed() const {
    return outcome == Outcome::kNoAllowPolicies || outcome == Outcome::kAllowed;
  }
  // 403 with body "RBAC: access denied" for denials, as Envoy answers.
  int status() const { return allowed() ? 200 : 403; }
};

// Asks a CUSTOM policy's provider (ext_authz). The proxy resolves the (asynchronous) check first
// and passes its answer here; without a callback a matching CUSTOM policy denies (fail closed).
using CustomCheck = std::function<bool(const Policy& policy)>;

bool policy_matches(const Policy& policy, const RequestInfo& request);

Decision evaluate(std::span<const Policy> policies, const RequestInfo& request,
                  const CustomCheck& custom = {});

// The first enforced CUSTOM policy matching the request (what the proxy must ask about), or null.
const Policy* matching_custom_policy(std::span<const Policy> policies, const RequestInfo& request);

}  // namespace zt::waypoint::authz
