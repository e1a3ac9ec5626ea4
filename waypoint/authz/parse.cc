#include "waypoint/authz/parse.h"

#include <fmt/format.h>

#include "common/yaml/load.h"
#include "waypoint/base/strings.h"
#include "waypoint/config/parse.h"
#include "waypoint/http/request_checks.h"

namespace zt::waypoint::authz {
namespace {

std::string join(std::string_view path, std::string_view key) {
  if (path.empty()) return std::string(key);
  return fmt::format("{}.{}", path, key);
}
std::string index(std::string_view path, size_t i) { return fmt::format("{}[{}]", path, i); }
tl::unexpected<Error> error_at(std::string_view path, std::string_view message) {
  return failf("{}: {}", path, message);
}
bool present(const YAML::Node& n) { return n && n.IsDefined() && !n.IsNull(); }

// Calls fn(key, value, path) for every entry; an unknown key is an error.
template <class Fn>
Status each_field(const YAML::Node& node, std::string_view path,
                  std::initializer_list<std::string_view> known, Fn&& fn) {
  if (!node.IsMap()) return error_at(path, "must be a map");
  for (auto it = node.begin(); it != node.end(); ++it) {
    if (!it->first.IsScalar()) return error_at(path, "keys must be plain strings");
    const std::string& key = it->first.Scalar();
    if (std::find(known.begin(), known.end(), key) == known.end()) {
      std::string expected;
      for (auto k : known) expected += fmt::format("{}{}", expected.empty() ? "" : ", ", k);
      return error_at(join(path, key),
                      fmt::format("unknown or unsupported field (expected one of: {})", expected));
    }
    if (it->second.IsNull()) continue;
    if (auto s = fn(key, it->second, join(path, key)); !s) return s;
  }
  return {};
}

Status read_string(const YAML::Node& n, std::string_view path, std::string& out) {
  if (!n.IsScalar()) return error_at(path, "must be a string");
  out = n.Scalar();
  return {};
}

// A bool as YAML writes it (true / false).
Status read_bool(const YAML::Node& n, std::string_view path, bool& out) {
  std::string b;
  if (auto s = read_string(n, path, b); !s) return s;
  if (b != "true" && b != "false") return error_at(path, "must be true or false");
  out = b == "true";
  return {};
}

Status read_strings(const YAML::Node& n, std::string_view path, std::vector<std::string>& out) {
  if (!n.IsSequence()) return error_at(path, "must be a list of strings");
  for (size_t i = 0; i < n.size(); ++i) {
    std::string s;
    if (auto st = read_string(n[i], index(path, i), s); !st) return st;
    if (s.empty()) return error_at(index(path, i), "must not be empty");
    out.push_back(std::move(s));
  }
  return {};
}

Status read_matches(const YAML::Node& n, std::string_view path, std::vector<StringMatch>& out) {
  std::vector<std::string> raw;
  if (auto s = read_strings(n, path, raw); !s) return s;
  for (const auto& r : raw) out.push_back(StringMatch::parse(r));
  return {};
}

Status read_principals(const YAML::Node& n, std::string_view path, std::vector<StringMatch>& out) {
  std::vector<std::string> raw;
  if (auto s = read_strings(n, path, raw); !s) return s;
  for (auto r : raw) {
    // Accept the URI form too: policies compare without "spiffe://".
    if (r.starts_with("spiffe://")) r = r.substr(9);
    out.push_back(StringMatch::parse(r));
  }
  return {};
}

Status read_cidrs(const YAML::Node& n, std::string_view path, std::vector<net::Cidr>& out) {
  std::vector<std::string> raw;
  if (auto s = read_strings(n, path, raw); !s) return s;
  for (size_t i = 0; i < raw.size(); ++i) {
    auto c = net::Cidr::parse(raw[i]);
    if (!c) return error_at(index(path, i), c.error().message);
    out.push_back(*c);
  }
  return {};
}

Status read_paths(const YAML::Node& n, std::string_view path, std::vector<PathPattern>& out) {
  std::vector<std::string> raw;
  if (auto s = read_strings(n, path, raw); !s) return s;
  for (size_t i = 0; i < raw.size(); ++i) {
    auto p = PathPattern::parse(raw[i]);
    if (!p) return error_at(index(path, i), p.error().message);
    out.push_back(std::move(*p));
  }
  return {};
}

Status read_source(const YAML::Node& node, std::string_view path, std::string_view policy_ns,
                   Source& s) {
  bool any = false;
  bool has_sa = false;
  Status st = each_field(
      node, path,
      {"principals", "notPrincipals", "requestPrincipals", "notRequestPrincipals", "namespaces",
       "notNamespaces", "ipBlocks", "notIpBlocks", "remoteIpBlocks", "notRemoteIpBlocks",
       "serviceAccounts", "notServiceAccounts"},
      [&](const std::string& key, const YAML::Node& v, const std::string& p) -> Status {
        any = true;
        if (key == "principals") return read_principals(v, p, s.principals);
        if (key == "notPrincipals") return read_principals(v, p, s.not_principals);
        if (key == "requestPrincipals") return read_matches(v, p, s.request_principals);
        if (key == "notRequestPrincipals") return read_matches(v, p, s.not_request_principals);
        if (key == "namespaces") return read_matches(v, p, s.namespaces);
        if (key == "notNamespaces") return read_matches(v, p, s.not_namespaces);
        if (key == "ipBlocks") return read_cidrs(v, p, s.ip_blocks);
        if (key == "notIpBlocks") return read_cidrs(v, p, s.not_ip_blocks);
        if (key == "remoteIpBlocks") return read_cidrs(v, p, s.remote_ip_blocks);
        if (key == "notRemoteIpBlocks") return read_cidrs(v, p, s.not_remote_ip_blocks);
        // serviceAccounts "ns/sa" or "sa" (policy namespace): any trust domain.
        has_sa = true;
        std::vector<std::string> raw;
        if (auto st2 = read_strings(v, p, raw); !st2) return st2;
        auto& list = key == "serviceAccounts" ? s.principals : s.not_principals;
        for (const auto& sa : raw) {
          if (sa.find('*') != sa.npos) return error_at(p, "serviceAccounts take no wildcards");
          const size_t slash = sa.find('/');
          const std::string ns = slash == sa.npos ? std::string(policy_ns) : sa.substr(0, slash);
          const std::string name = slash == sa.npos ? sa : sa.substr(slash + 1);
          list.push_back({StringMatch::Kind::kSuffix, fmt::format("/ns/{}/sa/{}", ns, name)});
        }
        return {};
      });
  if (!st) return st;
  if (!any) return error_at(path, "a source must set at least one field");
  if (has_sa && (present(node["principals"]) || present(node["namespaces"]) ||
                 present(node["notPrincipals"]) || present(node["notNamespaces"]))) {
    return error_at(path, "serviceAccounts cannot be combined with principals or namespaces");
  }
  return {};
}

Status read_operation(const YAML::Node& node, std::string_view path, Operation& o) {
  bool any = false;
  Status st = each_field(
      node, path,
      {"hosts", "notHosts", "ports", "notPorts", "methods", "notMethods", "paths", "notPaths"},
      [&](const std::string& key, const YAML::Node& v, const std::string& p) -> Status {
        any = true;
        if (key == "hosts") return read_matches(v, p, o.hosts);
        if (key == "notHosts") return read_matches(v, p, o.not_hosts);
        if (key == "ports") return read_strings(v, p, o.ports);
        if (key == "notPorts") return read_strings(v, p, o.not_ports);
        if (key == "methods") return read_matches(v, p, o.methods);
        if (key == "notMethods") return read_matches(v, p, o.not_methods);
        if (key == "paths") return read_paths(v, p, o.paths);
        return read_paths(v, p, o.not_paths);
      });
  if (!st) return st;
  if (!any) return error_at(path, "an operation must set at least one field");
  return {};
}

Status read_condition(const YAML::Node& node, std::string_view path, Condition& c) {
  std::vector<std::string> values, not_values;
  Status st =
      each_field(node, path, {"key", "values", "notValues"},
                 [&](const std::string& key, const YAML::Node& v, const std::string& p) -> Status {
                   if (key == "key") return read_string(v, p, c.key_text);
                   if (key == "values") return read_strings(v, p, values);
                   return read_strings(v, p, not_values);
                 });
  if (!st) return st;
  if (c.key_text.empty()) return error_at(path, "missing required field \"key\"");
  if (values.empty() && not_values.empty()) return error_at(path, "needs values or notValues");
  using K = Condition::Key;
  const std::string& k = c.key_text;
  bool ip_key = false;
  if (k.starts_with("request.headers[") && k.ends_with("]") && k.size() > 17) {
    c.key = K::kRequestHeader;
    c.header_name = k.substr(16, k.size() - 17);
  } else if (k == "source.ip") {
    c.key = K::kSourceIp;
    ip_key = true;
  } else if (k == "remote.ip") {
    c.key = K::kRemoteIp;
    ip_key = true;
  } else if (k == "destination.ip") {
    c.key = K::kDestinationIp;
    ip_key = true;
  } else if (k == "source.namespace") {
    c.key = K::kSourceNamespace;
  } else if (k == "source.principal") {
    c.key = K::kSourcePrincipal;
  } else if (k == "request.auth.principal") {
    c.key = K::kRequestPrincipal;
  } else if (k == "destination.port") {
    c.key = K::kDestinationPort;
  } else if (k == "request.auth.audiences") {
    c.key = K::kRequestAudiences;
  } else if (k == "request.auth.presenter") {
    c.key = K::kRequestPresenter;
  } else if (k.starts_with("request.auth.claims[")) {
    // claims[a], or claims[a][b] for a nested claim
    c.key = K::kRequestClaim;
    std::string_view rest = std::string_view(k).substr(19);
    while (!rest.empty()) {
      const size_t close = rest.find(']');
      if (rest.front() != '[' || close == rest.npos || close == 1) {
        return error_at(join(path, "key"),
                        fmt::format("\"{}\": a claim is written claims[name] or claims[a][b]", k));
      }
      c.claim_path.emplace_back(rest.substr(1, close - 1));
      rest.remove_prefix(close + 1);
    }
  } else if (k == "connection.sni") {
    c.key = K::kUnavailable;
  } else {
    return error_at(join(path, "key"), fmt::format("unsupported key \"{}\"", k));
  }
  if (ip_key) {
    for (size_t i = 0; i < values.size(); ++i) {
      auto cidr = net::Cidr::parse(values[i]);
      if (!cidr) return error_at(index(join(path, "values"), i), cidr.error().message);
      c.ip_values.push_back(*cidr);
    }
    for (size_t i = 0; i < not_values.size(); ++i) {
      auto cidr = net::Cidr::parse(not_values[i]);
      if (!cidr) return error_at(index(join(path, "notValues"), i), cidr.error().message);
      c.not_ip_values.push_back(*cidr);
    }
    return {};
  }
  for (auto v : values) {
    if (c.key == K::kSourcePrincipal && v.starts_with("spiffe://")) v = v.substr(9);
    c.values.push_back(StringMatch::parse(v));
  }
  for (auto v : not_values) {
    if (c.key == K::kSourcePrincipal && v.starts_with("spiffe://")) v = v.substr(9);
    c.not_values.push_back(StringMatch::parse(v));
  }
  return {};
}

template <class T, class Fn>
Status read_list(const YAML::Node& n, std::string_view path, std::vector<T>& out, Fn&& fn) {
  if (!n.IsSequence()) return error_at(path, "must be a list");
  for (size_t i = 0; i < n.size(); ++i) {
    T item;
    if (auto s = fn(n[i], index(path, i), item); !s) return s;
    out.push_back(std::move(item));
  }
  return {};
}

Status read_rule(const YAML::Node& node, std::string_view path, std::string_view ns, Rule& rule) {
  if (node.IsMap() && node.size() == 0) return {};  // `{}`: matches everything
  return each_field(
      node, path, {"from", "to", "when"},
      [&](const std::string& key, const YAML::Node& v, const std::string& p) -> Status {
        if (key == "from") {
          return read_list(v, p, rule.from,
                           [&](const YAML::Node& item, const std::string& ip, Source& s) {
                             return each_field(
                                 item, ip, {"source"},
                                 [&](const std::string&, const YAML::Node& sv,
                                     const std::string& sp) { return read_source(sv, sp, ns, s); });
                           });
        }
        if (key == "to") {
          return read_list(
              v, p, rule.to, [&](const YAML::Node& item, const std::string& ip, Operation& o) {
                return each_field(item, ip, {"operation"},
                                  [&](const std::string&, const YAML::Node& ov,
                                      const std::string& op) { return read_operation(ov, op, o); });
              });
        }
        return read_list(v, p, rule.when,
                         [](const YAML::Node& item, const std::string& ip, Condition& c) {
                           return read_condition(item, ip, c);
                         });
      });
}

Status read_target_ref(const YAML::Node& node, std::string_view path, std::string_view ns,
                       TargetRef& t) {
  Status st =
      each_field(node, path, {"group", "kind", "name", "namespace"},
                 [&](const std::string& key, const YAML::Node& v, const std::string& p) -> Status {
                   if (key == "group") return read_string(v, p, t.group);
                   if (key == "kind") return read_string(v, p, t.kind);
                   if (key == "name") return read_string(v, p, t.name);
                   return read_string(v, p, t.namespace_name);
                 });
  if (!st) return st;
  if (t.kind.empty() || t.name.empty()) return error_at(path, "needs kind and name");
  // (a policy attaches only in its own namespace: Istio's CRD refuses any namespace here; the
  // policy's own is accepted as meaning the same)
  if (!t.namespace_name.empty() && t.namespace_name != ns) {
    return error_at(join(path, "namespace"),
                    fmt::format("cross-namespace references are not supported (the policy is "
                                "in namespace {})",
                                ns));
  }
  if (t.namespace_name.empty()) t.namespace_name = std::string(ns);
  return {};
}

// metadata.name and metadata.namespace ("default" when absent).
Status read_name(const YAML::Node& object, std::string_view path, std::string& name,
                 std::string& namespace_name) {
  if (!object.IsMap()) return error_at(path, "must be a map");
  const YAML::Node meta = object["metadata"];
  if (!present(meta) || !meta.IsMap()) return error_at(path, "missing required field \"metadata\"");
  if (!present(meta["name"]))
    return error_at(join(path, "metadata"), "missing required field \"name\"");
  if (auto s = read_string(meta["name"], join(path, "metadata.name"), name); !s) return s;
  namespace_name = "default";
  if (present(meta["namespace"])) {
    if (auto s = read_string(meta["namespace"], join(path, "metadata.namespace"), namespace_name);
        !s)
      return s;
  }
  return {};
}

// spec.targetRef (one) or spec.targetRefs (a list), in the policy's namespace.
Status read_target_refs(const std::string& key, const YAML::Node& v, const std::string& path,
                        std::string_view ns, std::vector<TargetRef>& out) {
  if (key == "targetRef") {
    TargetRef t;
    if (auto s = read_target_ref(v, path, ns, t); !s) return s;
    out.push_back(std::move(t));
    return {};
  }
  return read_list(v, path, out, [&](const YAML::Node& item, const std::string& ip, TargetRef& t) {
    return read_target_ref(item, ip, ns, t);
  });
}

Status read_policy(const YAML::Node& object, std::string_view path, Policy& p) {
  if (auto s = read_name(object, path, p.name, p.namespace_name); !s) return s;
  const YAML::Node meta = object["metadata"];
  if (present(meta["annotations"]) && meta["annotations"].IsMap() &&
      present(meta["annotations"]["istio.io/dry-run"])) {
    std::string v;
    if (auto s = read_string(meta["annotations"]["istio.io/dry-run"],
                             join(path, "metadata.annotations[istio.io/dry-run]"), v);
        !s) {
      return s;
    }
    auto dry_run = parse_go_bool(v);
    if (!dry_run) {
      return error_at(join(path, "metadata.annotations[istio.io/dry-run]"),
                      fmt::format("must be true or false, got \"{}\"", v));
    }
    p.dry_run = *dry_run;
  }
  const YAML::Node spec = object["spec"];
  if (!present(spec)) return {};  // no spec: ALLOW with no rules = allow nothing
  std::string action = "ALLOW";
  bool has_provider = false;
  Status st = each_field(
      spec, join(path, "spec"),
      {"action", "provider", "rules", "selector", "targetRef", "targetRefs"},
      [&](const std::string& key, const YAML::Node& v, const std::string& fp) -> Status {
        if (key == "action") return read_string(v, fp, action);
        if (key == "provider") {
          has_provider = true;
          return each_field(v, fp, {"name"},
                            [&](const std::string&, const YAML::Node& nv, const std::string& np) {
                              return read_string(nv, np, p.provider);
                            });
        }
        if (key == "rules") {
          return read_list(v, fp, p.rules,
                           [&](const YAML::Node& item, const std::string& ip, Rule& r) {
                             return read_rule(item, ip, p.namespace_name, r);
                           });
        }
        if (key == "selector") {
          p.has_selector = true;
          return Status{};
        }
        return read_target_refs(key, v, fp, p.namespace_name, p.target_refs);
      });
  if (!st) return st;
  if (action == "ALLOW") {
    p.action = Action::kAllow;
  } else if (action == "DENY") {
    p.action = Action::kDeny;
  } else if (action == "AUDIT") {
    p.action = Action::kAudit;
  } else if (action == "CUSTOM") {
    p.action = Action::kCustom;
    if (!has_provider || p.provider.empty()) {
      return error_at(join(path, "spec.provider"), "CUSTOM needs provider.name");
    }
  } else {
    return error_at(
        join(path, "spec.action"),
        fmt::format("unknown action \"{}\" (expected ALLOW, DENY, AUDIT, CUSTOM)", action));
  }
  return {};
}

// A header name for fromHeaders / output headers: an HTTP token, kept lower-case.
Status read_header_name(const YAML::Node& n, std::string_view path, std::string& out) {
  if (auto s = read_string(n, path, out); !s) return s;
  if (out.empty() || !http::is_token(out)) return error_at(path, "must be an HTTP header name");
  out = to_lower(out);
  return {};
}

Status read_jwt_rule(const YAML::Node& node, std::string_view path, JwtRule& r) {
  std::string jwks;
  Status st = each_field(
      node, path,
      {"issuer", "audiences", "jwksUri", "jwks", "fromHeaders", "fromParams", "fromCookies",
       "outputPayloadToHeader", "forwardOriginalToken", "outputClaimToHeaders", "timeout"},
      [&](const std::string& key, const YAML::Node& v, const std::string& p) -> Status {
        if (key == "issuer") return read_string(v, p, r.issuer);
        if (key == "audiences") return read_strings(v, p, r.audiences);
        if (key == "jwksUri") return read_string(v, p, r.jwks_uri);
        if (key == "jwks") return read_string(v, p, jwks);
        if (key == "fromParams") return read_strings(v, p, r.from_params);
        if (key == "fromCookies") return read_strings(v, p, r.from_cookies);
        if (key == "outputPayloadToHeader")
          return read_header_name(v, p, r.output_payload_to_header);
        if (key == "timeout") return Status{};  // for fetching jwksUri, which istiod/meshd does
        if (key == "forwardOriginalToken") return read_bool(v, p, r.forward_original_token);
        if (key == "fromHeaders") {
          return read_list(
              v, p, r.from_headers,
              [](const YAML::Node& item, const std::string& ip, JwtRule::FromHeader& h) -> Status {
                Status hs = each_field(item, ip, {"name", "prefix"},
                                       [&](const std::string& k, const YAML::Node& hv,
                                           const std::string& hp) -> Status {
                                         if (k == "name") return read_header_name(hv, hp, h.name);
                                         return read_string(hv, hp, h.prefix);
                                       });
                if (!hs) return hs;
                if (h.name.empty()) return error_at(ip, "missing required field \"name\"");
                return Status{};
              });
        }
        return read_list(
            v, p, r.output_claim_to_headers,
            [](const YAML::Node& item, const std::string& ip, JwtRule::ClaimToHeader& c) -> Status {
              Status cs = each_field(
                  item, ip, {"header", "claim"},
                  [&](const std::string& k, const YAML::Node& cv, const std::string& cp) -> Status {
                    if (k == "header") return read_header_name(cv, cp, c.header);
                    return read_string(cv, cp, c.claim);
                  });
              if (!cs) return cs;
              if (c.header.empty() || c.claim.empty())
                return error_at(ip, "needs header and claim");
              return Status{};
            });
      });
  if (!st) return st;
  if (r.issuer.empty()) return error_at(path, "missing required field \"issuer\"");
  if (!jwks.empty() && !r.jwks_uri.empty()) {
    return error_at(path, "set jwks or jwksUri, not both");
  }
  if (jwks.empty() && r.jwks_uri.empty()) return error_at(path, "needs jwks or jwksUri");
  if (!r.jwks_uri.empty()) {
    if (auto problem = jwks_uri_problem(r.jwks_uri); !problem.empty()) {
      return error_at(join(path, "jwksUri"), problem);
    }
  }
  if (!jwks.empty()) {
    auto keys = Jwks::parse(jwks);
    if (!keys) return error_at(join(path, "jwks"), keys.error().describe());
    r.jwks = std::make_shared<const Jwks>(std::move(*keys));
  }
  return {};
}

Status read_request_authentication(const YAML::Node& object, std::string_view path,
                                   RequestAuthentication& a) {
  if (auto s = read_name(object, path, a.name, a.namespace_name); !s) return s;
  const YAML::Node spec = object["spec"];
  if (!present(spec)) return {};
  return each_field(
      spec, join(path, "spec"), {"jwtRules", "selector", "targetRef", "targetRefs"},
      [&](const std::string& key, const YAML::Node& v, const std::string& fp) -> Status {
        if (key == "jwtRules") {
          return read_list(v, fp, a.rules,
                           [](const YAML::Node& item, const std::string& ip, JwtRule& r) {
                             return read_jwt_rule(item, ip, r);
                           });
        }
        if (key == "selector") {
          a.has_selector = true;
          return Status{};
        }
        return read_target_refs(key, v, fp, a.namespace_name, a.target_refs);
      });
}

// A decimal number within [min, max], digits only.
std::optional<uint64_t> read_decimal(std::string_view text, uint64_t min, uint64_t max) {
  if (text.empty() || text.size() > 10) return std::nullopt;
  uint64_t n = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + static_cast<uint64_t>(c - '0');
  }
  if (n < min || n > max) return std::nullopt;
  return n;
}

Status read_header_patterns(const YAML::Node& n, std::string_view path,
                            std::vector<HeaderPattern>& out) {
  std::vector<std::string> raw;
  if (auto s = read_strings(n, path, raw); !s) return s;
  for (size_t i = 0; i < raw.size(); ++i) {
    auto p = HeaderPattern::parse(raw[i]);
    if (!p) return error_at(index(path, i), p.error().describe());
    out.push_back(std::move(*p));
  }
  return {};
}

// envoyExtAuthzHttp / envoyExtAuthzGrpc (MeshConfig), into `p`.
Status read_ext_authz(const YAML::Node& node, std::string_view path, ExtAuthzProvider& p) {
  const bool http = p.kind == ExtAuthzProvider::Kind::kHttp;
  std::initializer_list<std::string_view> http_fields = {"service",
                                                         "port",
                                                         "timeout",
                                                         "pathPrefix",
                                                         "failOpen",
                                                         "clearRouteCache",
                                                         "statusOnError",
                                                         "includeHeadersInCheck",
                                                         "includeRequestHeadersInCheck",
                                                         "includeAdditionalHeadersInCheck",
                                                         "includeRequestBodyInCheck",
                                                         "headersToUpstreamOnAllow",
                                                         "headersToDownstreamOnAllow",
                                                         "headersToDownstreamOnDeny"};
  std::initializer_list<std::string_view> grpc_fields = {"service",
                                                         "port",
                                                         "timeout",
                                                         "failOpen",
                                                         "clearRouteCache",
                                                         "statusOnError",
                                                         "includeRequestBodyInCheck"};
  std::vector<HeaderPattern> deprecated_include;
  std::string service;
  bool port_seen = false;
  auto fields = with_json_names(node, path);
  if (!fields) return tl::unexpected(fields.error());
  Status st = each_field(
      *fields, path, http ? http_fields : grpc_fields,
      [&](const std::string& key, const YAML::Node& v, const std::string& fp) -> Status {
        if (key == "service") return read_string(v, fp, service);
        if (key == "port") {
          std::string text;
          if (auto s = read_string(v, fp, text); !s) return s;
          auto port = read_decimal(text, 1, 65535);
          if (!port) return error_at(fp, "must be a port number (1-65535)");
          p.port = static_cast<uint16_t>(*port);
          port_seen = true;
          return Status{};
        }
        if (key == "timeout") {
          std::string text;
          if (auto s = read_string(v, fp, text); !s) return s;
          auto d = config::parse_duration(text);
          if (!d) return error_at(fp, d.error().describe());
          if (d->count() <= 0) return error_at(fp, "must be positive");
          p.timeout = *d;
          return Status{};
        }
        if (key == "pathPrefix") {
          if (auto s = read_string(v, fp, p.path_prefix); !s) return s;
          if (!p.path_prefix.empty() && p.path_prefix.front() != '/') {
            return error_at(fp, "must start with \"/\"");
          }
          for (char c : p.path_prefix) {
            if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f || c == '?' || c == '#') {
              return error_at(fp, "must be a path without spaces, control characters, ? or #");
            }
          }
          return Status{};
        }
        if (key == "failOpen") return read_bool(v, fp, p.fail_open);
        if (key == "clearRouteCache") {
          bool ignored = false;
          return read_bool(v, fp, ignored);  // (Istio does not use it either)
        }
        if (key == "statusOnError") {
          std::string text;
          if (auto s = read_string(v, fp, text); !s) return s;
          auto code = read_decimal(text, 200, 599);
          if (!code || !is_envoy_status_code(static_cast<int>(*code))) {
            return error_at(fp, "must be an HTTP status code of 200 or more, e.g. \"503\"");
          }
          p.status_on_error = static_cast<int>(*code);
          return Status{};
        }
        if (key == "includeHeadersInCheck") return read_header_patterns(v, fp, deprecated_include);
        if (key == "includeRequestHeadersInCheck") {
          return read_header_patterns(v, fp, p.include_request_headers);
        }
        if (key == "headersToUpstreamOnAllow") {
          return read_header_patterns(v, fp, p.headers_to_upstream_on_allow);
        }
        if (key == "headersToDownstreamOnAllow") {
          return read_header_patterns(v, fp, p.headers_to_downstream_on_allow);
        }
        if (key == "headersToDownstreamOnDeny") {
          return read_header_patterns(v, fp, p.headers_to_downstream_on_deny);
        }
        if (key == "includeAdditionalHeadersInCheck") {
          if (!v.IsMap()) return error_at(fp, "must be a map of header names to values");
          for (auto it = v.begin(); it != v.end(); ++it) {
            std::string name;
            std::string value;
            if (auto s = read_header_name(it->first, fp, name); !s) return s;
            if (auto s = read_string(it->second, join(fp, name), value); !s) return s;
            if (!http::is_field_value(value)) {
              return error_at(join(fp, name), "must be a header value (no line breaks)");
            }
            p.include_additional_headers.emplace_back(std::move(name), std::move(value));
          }
          return Status{};
        }
        // includeRequestBodyInCheck
        ExtAuthzProvider::Body body;
        auto body_fields = with_json_names(v, fp);
        if (!body_fields) return tl::unexpected(body_fields.error());
        Status bs = each_field(
            *body_fields, fp, {"maxRequestBytes", "allowPartialMessage", "packAsBytes"},
            [&](const std::string& k, const YAML::Node& bv, const std::string& bp) -> Status {
              if (k == "allowPartialMessage") return read_bool(bv, bp, body.allow_partial);
              if (k == "packAsBytes") return read_bool(bv, bp, body.pack_as_bytes);
              std::string text;
              if (auto s = read_string(bv, bp, text); !s) return s;
              auto n = read_decimal(text, 1, 0xffffffffULL);
              if (!n) return error_at(bp, "must be a byte count of 1 or more");
              body.max_bytes = static_cast<uint32_t>(*n);
              return Status{};
            });
        if (!bs) return bs;
        p.body = body;
        return Status{};
      });
  if (!st) return st;
  if (p.include_request_headers.empty()) p.include_request_headers = std::move(deprecated_include);
  if (service.empty()) return error_at(path, "missing required field \"service\"");
  if (!port_seen) return error_at(path, "missing required field \"port\"");
  if (auto slash = service.find('/'); slash != std::string::npos) {
    p.service_namespace = service.substr(0, slash);
    service.erase(0, slash + 1);
    if (p.service_namespace.empty() || service.empty() || service.find('/') != std::string::npos) {
      return error_at(join(path, "service"), "must be <hostname> or <namespace>/<hostname>");
    }
  }
  p.service = to_lower(service);
  return {};
}

Status read_extension_providers(const YAML::Node& n, std::string_view path,
                                std::vector<ExtAuthzProvider>& out) {
  if (!n.IsSequence()) return error_at(path, "must be a list");
  for (size_t i = 0; i < n.size(); ++i) {
    const std::string ip = index(path, i);
    auto named = with_json_names(n[i], ip);
    if (!named) return tl::unexpected(named.error());
    const YAML::Node item = *named;
    if (!item.IsMap()) return error_at(ip, "must be a map");
    if (!present(item["name"])) return error_at(ip, "missing required field \"name\"");
    ExtAuthzProvider p;
    if (auto s = read_string(item["name"], join(ip, "name"), p.name); !s) return s;
    if (p.name.empty()) return error_at(join(ip, "name"), "must not be empty");
    const YAML::Node http_node = item["envoyExtAuthzHttp"];
    const YAML::Node grpc_node = item["envoyExtAuthzGrpc"];
    if (present(http_node) && present(grpc_node)) {
      return error_at(ip, "set envoyExtAuthzHttp or envoyExtAuthzGrpc, not both");
    }
    // Other providers (tracing, access logs, metrics) are not the waypoint's authorization.
    if (!present(http_node) && !present(grpc_node)) continue;
    for (const auto& seen : out) {
      if (seen.name == p.name) return error_at(join(ip, "name"), "names another provider too");
    }
    p.kind = present(http_node) ? ExtAuthzProvider::Kind::kHttp : ExtAuthzProvider::Kind::kGrpc;
    const std::string fp = join(ip, present(http_node) ? "envoyExtAuthzHttp" : "envoyExtAuthzGrpc");
    if (auto s = read_ext_authz(present(http_node) ? http_node : grpc_node, fp, p); !s) return s;
    out.push_back(std::move(p));
  }
  return {};
}

struct Collected {
  std::vector<Policy>* policies = nullptr;
  std::vector<RequestAuthentication>* authentications = nullptr;
  std::vector<ExtAuthzProvider>* providers = nullptr;
};

// A ConfigMap holding Istio's MeshConfig: `istio`, key `mesh`.
bool is_mesh_config_map(const YAML::Node& node) {
  const YAML::Node meta = node["metadata"];
  if (!present(meta) || !meta.IsMap() || !present(meta["name"]) || !meta["name"].IsScalar()) {
    return false;
  }
  return meta["name"].Scalar() == "istio";
}

Status collect(const YAML::Node& node, const std::string& path, const Collected& out, int depth) {
  if (!node || node.IsNull()) return {};
  if (depth > 8) return error_at(path, "nested too deeply");
  if (node.IsSequence()) {
    for (size_t i = 0; i < node.size(); ++i) {
      if (auto s = collect(node[i], index(path, i), out, depth + 1); !s) return s;
    }
    return {};
  }
  if (!node.IsMap()) return error_at(path, "must be a Kubernetes object");
  if (!present(node["kind"])) {
    // The waypoint document: its extensionProviders (the rest is config/parse.h's).
    if (out.providers && depth == 0 && present(node["extensionProviders"])) {
      return read_extension_providers(node["extensionProviders"], join(path, "extensionProviders"),
                                      *out.providers);
    }
    return {};
  }
  if (!node["kind"].IsScalar()) return {};
  const std::string kind = node["kind"].Scalar();
  if (kind == "AuthorizationPolicy" && out.policies) {
    Policy p;
    if (auto s = read_policy(node, path, p); !s) return s;
    out.policies->push_back(std::move(p));
  } else if (kind == "RequestAuthentication" && out.authentications) {
    RequestAuthentication a;
    if (auto s = read_request_authentication(node, path, a); !s) return s;
    out.authentications->push_back(std::move(a));
  } else if (kind == "ConfigMap" && out.providers && is_mesh_config_map(node)) {
    const YAML::Node data = node["data"];
    if (!present(data) || !data.IsMap() || !present(data["mesh"])) return {};
    const std::string mp = join(path, "data.mesh");
    std::string text;
    if (auto s = read_string(data["mesh"], mp, text); !s) return s;
    YAML::Node mesh;
    try {
      mesh = YAML::Load(text);
    } catch (const YAML::Exception& e) {
      return error_at(mp, zt::yaml::describe(e, "MeshConfig"));
    }
    if (!present(mesh)) return {};
    if (!mesh.IsMap()) return error_at(mp, "must be a MeshConfig (a map)");
    auto named = with_json_names(mesh, mp);
    if (!named) return tl::unexpected(named.error());
    mesh = *named;
    if (!present(mesh["extensionProviders"])) return {};
    return read_extension_providers(mesh["extensionProviders"], join(mp, "extensionProviders"),
                                    *out.providers);
  } else if (kind.ends_with("List") && present(node["items"])) {
    return collect(node["items"], join(path, "items"), out, depth + 1);
  }
  return {};
}

// Every object of one kind in `docs`; `field` is where Collected gathers that kind.
template <class T>
Result<std::vector<T>> collect_all(const std::vector<YAML::Node>& docs,
                                   std::vector<T>* Collected::*field, std::string_view what) {
  try {
    std::vector<T> out;
    Collected into;
    into.*field = &out;
    for (size_t i = 0; i < docs.size(); ++i) {
      if (auto s = collect(docs[i], index("document", i), into, 0); !s) {
        return tl::unexpected(s.error());
      }
    }
    return out;
  } catch (const std::exception& e) {
    return fail(zt::yaml::describe(e, what));
  }
}

}  // namespace

std::optional<bool> parse_go_bool(std::string_view text) {
  for (std::string_view t : {"1", "t", "T", "TRUE", "true", "True"}) {
    if (text == t) return true;
  }
  for (std::string_view f : {"0", "f", "F", "FALSE", "false", "False"}) {
    if (text == f) return false;
  }
  return std::nullopt;
}

Result<Policy> parse_authorization_policy(const YAML::Node& object, std::string_view path) {
  try {
    Policy p;
    if (auto s = read_policy(object, path, p); !s) return tl::unexpected(s.error());
    return p;
  } catch (const std::exception& e) {
    return failf("{}: {}", path, e.what());
  }
}

Result<std::vector<Policy>> parse_authorization_policies(std::string_view yaml) {
  try {
    return parse_authorization_policies(zt::yaml::load_all(yaml));
  } catch (const std::exception& e) {
    return fail(zt::yaml::describe(e, "authorization policies"));
  }
}

Result<std::vector<Policy>> parse_authorization_policies(const std::vector<YAML::Node>& docs) {
  return collect_all(docs, &Collected::policies, "authorization policies");
}

Result<RequestAuthentication> parse_request_authentication(const YAML::Node& object,
                                                           std::string_view path) {
  try {
    RequestAuthentication a;
    if (auto s = read_request_authentication(object, path, a); !s) return tl::unexpected(s.error());
    return a;
  } catch (const std::exception& e) {
    return failf("{}: {}", path, e.what());
  }
}

Result<std::vector<RequestAuthentication>> parse_request_authentications(
    const std::vector<YAML::Node>& docs) {
  return collect_all(docs, &Collected::authentications, "request authentications");
}

Result<std::vector<RequestAuthentication>> parse_request_authentications(std::string_view yaml) {
  try {
    return parse_request_authentications(zt::yaml::load_all(yaml));
  } catch (const std::exception& e) {
    return fail(zt::yaml::describe(e, "request authentications"));
  }
}

Result<std::vector<ExtAuthzProvider>> parse_extension_providers(const YAML::Node& list,
                                                                std::string_view path) {
  try {
    std::vector<ExtAuthzProvider> out;
    if (auto s = read_extension_providers(list, path, out); !s) return tl::unexpected(s.error());
    return out;
  } catch (const std::exception& e) {
    return failf("{}: {}", path, e.what());
  }
}

Result<std::vector<ExtAuthzProvider>> parse_extension_providers(
    const std::vector<YAML::Node>& docs) {
  return collect_all(docs, &Collected::providers, "extension providers");
}

Result<YAML::Node> with_json_names(const YAML::Node& map, std::string_view path) {
  if (!map.IsMap()) return map;
  // A proto field name: lower-case words joined by '_'; anything else stays as written.
  auto proto_name = [](std::string_view k) {
    if (k.empty() || k.front() < 'a' || k.front() > 'z' || k.back() == '_') return false;
    bool underscore = false;
    for (size_t i = 0; i < k.size(); ++i) {
      const char c = k[i];
      if (c == '_') {
        if (k[i - 1] == '_') return false;
        underscore = true;
      } else if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))) {
        return false;
      }
    }
    return underscore;
  };
  YAML::Node out(YAML::NodeType::Map);
  for (auto it = map.begin(); it != map.end(); ++it) {
    if (!it->first.IsScalar()) return map;  // (each_field says what is wrong)
    std::string key = it->first.Scalar();
    if (proto_name(key)) {
      std::string json;
      for (size_t i = 0; i < key.size(); ++i) {
        if (key[i] == '_') {
          json += static_cast<char>(key[++i] >= 'a' && key[i] <= 'z' ? key[i] - 32 : key[i]);
        } else {
          json += key[i];
        }
      }
      key = std::move(json);
    }
    if (out[key]) {
      return error_at(join(path, key), "is set more than once (by either of its names)");
    }
    out[key] = it->second;
  }
  return out;
}

}  // namespace zt::waypoint::authz
