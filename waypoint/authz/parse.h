// AuthorizationPolicy objects (security.istio.io/v1) from YAML, as Kubernetes writes them:
// metadata {name, namespace, annotations["istio.io/dry-run"]} and spec {targetRefs | targetRef,
// selector, action, provider.name, rules[{from[{source}], to[{operation}], when[{key, values,
// notValues}]}]}. Errors name the field ("rules[0].to[0].operation.paths[1]: ...").
//
// Refused (instead of silently widened or narrowed): unknown fields, unknown `when` keys,
// invalid path templates and CIDRs, serviceAccounts together with principals/namespaces,
// CUSTOM without provider, a source/operation with no field set.
#pragma once

#include <optional>
#include <string_view>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "common/base/result.h"
#include "waypoint/authz/ext_authz.h"
#include "waypoint/authz/policy.h"
#include "waypoint/authz/request_authn.h"

namespace zt::waypoint::authz {

// A boolean as Go's strconv.ParseBool reads it (how Istio reads the istio.io/dry-run annotation):
// 1, t, T, TRUE, true, True; 0, f, F, FALSE, false, False; anything else is nullopt.
std::optional<bool> parse_go_bool(std::string_view text);

Result<Policy> parse_authorization_policy(const YAML::Node& object,
                                          std::string_view path = "AuthorizationPolicy");

// Every AuthorizationPolicy in a YAML stream (documents, lists, `kind: List`); other kinds skipped.
Result<std::vector<Policy>> parse_authorization_policies(std::string_view yaml);
// The same over documents already loaded (config::load_documents).
Result<std::vector<Policy>> parse_authorization_policies(const std::vector<YAML::Node>& docs);

// RequestAuthentication objects (security.istio.io/v1): metadata {name, namespace} and spec
// {targetRefs | targetRef, selector, jwtRules[{issuer, audiences, jwks | jwksUri,
// fromHeaders[{name, prefix}], fromParams, fromCookies, forwardOriginalToken,
// outputPayloadToHeader, outputClaimToHeaders[{header, claim}], timeout}]}. A rule needs an issuer
// and its keys (`jwks`, a JWKS with at least one usable key; or `jwksUri`), header names must be
// HTTP tokens.
Result<RequestAuthentication> parse_request_authentication(
    const YAML::Node& object, std::string_view path = "RequestAuthentication");
Result<std::vector<RequestAuthentication>> parse_request_authentications(std::string_view yaml);
Result<std::vector<RequestAuthentication>> parse_request_authentications(
    const std::vector<YAML::Node>& docs);

// MeshConfig extensionProviders (a list of {name, envoyExtAuthzHttp | envoyExtAuthzGrpc}): the
// ext_authz providers CUSTOM policies name. Entries of other kinds (tracing, logging) are skipped;
// unknown fields, a missing service or port, a bad timeout, pathPrefix, statusOnError or header
// pattern, and two providers of one name are errors.
Result<std::vector<ExtAuthzProvider>> parse_extension_providers(
    const YAML::Node& list, std::string_view path = "extensionProviders");
// Every provider in a YAML stream: the waypoint document's top-level `extensionProviders`, and a
// ConfigMap `istio` whose `data.mesh` is Istio's MeshConfig. As protobuf's JSON reader (istiod's)
// does, a field may be named by its proto name too (`envoy_ext_authz_http`, `path_prefix`).
//
// `map` with each key that is a proto name (`path_prefix`) turned into its JSON name
// (`pathPrefix`); anything but a map as it is. A field given twice (by either name) is an error
// at `path`. The result shares its values with `map` (read it, never write through it).
Result<YAML::Node> with_json_names(const YAML::Node& map, std::string_view path);
Result<std::vector<ExtAuthzProvider>> parse_extension_providers(
    const std::vector<YAML::Node>& docs);

}  // namespace zt::waypoint::authz
