#include "waypoint/authz/policy.h"

#include <algorithm>

#include <fmt/format.h>

#include "waypoint/authz/request_authn.h"
#include "waypoint/base/strings.h"

namespace zt::waypoint::authz {

// ---- strings and paths -------------------------------------------------------------------------

StringMatch StringMatch::parse(std::string_view text) {
  if (text == "*") return {Kind::kPresence, ""};
  if (text.starts_with('*')) return {Kind::kSuffix, std::string(text.substr(1))};
  if (text.ends_with('*')) return {Kind::kPrefix, std::string(text.substr(0, text.size() - 1))};
  return {Kind::kExact, std::string(text)};
}

bool StringMatch::matches(std::string_view input, bool ignore_case) const {
  const std::string lowered_input = ignore_case ? to_lower(input) : std::string();
  const std::string lowered_value = ignore_case ? to_lower(value) : std::string();
  const std::string_view in = ignore_case ? std::string_view(lowered_input) : input;
  const std::string_view v =
      ignore_case ? std::string_view(lowered_value) : std::string_view(value);
  switch (kind) {
    case Kind::kExact:
      return in == v;
    case Kind::kPrefix:
      return in.starts_with(v);
    case Kind::kSuffix:
      return in.ends_with(v);
    case Kind::kPresence:
      return !in.empty();
  }
  return false;
}

Result<PathPattern> PathPattern::parse(std::string_view text) {
  PathPattern p;
  if (text.find('{') == text.npos && text.find('}') == text.npos) {
    p.string_ = StringMatch::parse(text);
    return p;
  }
  // A URI template: operators fill whole segments; {**} is the last operator; no other '*'.
  if (!text.starts_with('/')) return failf("path template \"{}\" must start with '/'", text);
  p.is_template_ = true;
  bool seen_double = false;
  std::string literal;
  size_t start = 1;
  literal = "/";
  while (start <= text.size()) {
    size_t end = text.find('/', start);
    if (end == text.npos) end = text.size();
    const std::string_view seg = text.substr(start, end - start);
    if (seg == "{*}" || seg == "{**}") {
      if (seen_double) {
        return failf("path template \"{}\": {{**}} must be the last operator", text);
      }
      seen_double = seg == "{**}";
      p.segments_.push_back(literal);
      p.segments_.emplace_back(seg);
      literal.clear();
    } else {
      if (seg.find_first_of("{}*") != seg.npos) {
        return failf(
            "path template \"{}\": operators must fill a whole segment "
            "({{*}} or {{**}})",
            text);
      }
      literal.append(seg);
    }
    if (end < text.size()) literal.push_back('/');
    start = end + 1;
  }
  p.segments_.push_back(literal);
  return p;
}

namespace {

// segments_: literal, op, literal, op, ..., literal (literals may be empty).
bool match_template(const std::vector<std::string>& tokens, size_t ti, std::string_view s) {
  if (ti == tokens.size()) return s.empty();
  const std::string& token = tokens[ti];
  if (token == "{*}") {
    for (size_t k = 1; k <= s.size() && s[k - 1] != '/'; ++k) {
      if (match_template(tokens, ti + 1, s.substr(k))) return true;
    }
    return false;
  }
  if (token == "{**}") {
    for (size_t k = 0; k <= s.size(); ++k) {
      if (match_template(tokens, ti + 1, s.substr(k))) return true;
    }
    return false;
  }
  if (!s.starts_with(token)) return false;
  return match_template(tokens, ti + 1, s.substr(token.size()));
}

std::string_view without_query(std::string_view path) { return path.substr(0, path.find('?')); }

std::optional<std::string_view> principal_namespace(std::string_view principal) {
  // "td/ns/N/sa/S"
  const size_t ns = principal.find("/ns/");
  if (ns == principal.npos) return std::nullopt;
  const std::string_view rest = principal.substr(ns + 4);
  const size_t end = rest.find('/');
  return rest.substr(0, end);
}

bool any_string(const std::vector<StringMatch>& list, std::string_view v,
                bool ignore_case = false) {
  return std::any_of(list.begin(), list.end(),
                     [&](const StringMatch& m) { return m.matches(v, ignore_case); });
}

// A positive list passes when empty or when the (present) value matches one entry.
bool positive(const std::vector<StringMatch>& list, const std::optional<std::string_view>& v,
              bool ignore_case = false) {
  if (list.empty()) return true;
  return v && any_string(list, *v, ignore_case);
}

bool negative(const std::vector<StringMatch>& list, const std::optional<std::string_view>& v,
              bool ignore_case = false) {
  if (list.empty()) return true;
  return !(v && any_string(list, *v, ignore_case));
}

bool any_cidr(const std::vector<net::Cidr>& list, const asio::ip::address& ip) {
  return std::any_of(list.begin(), list.end(), [&](const net::Cidr& c) { return c.contains(ip); });
}

std::optional<std::string_view> opt_view(const std::optional<std::string>& s) {
  if (!s) return std::nullopt;
  return std::string_view(*s);
}

bool source_matches(const Source& s, const RequestInfo& r) {
  const auto principal = opt_view(r.principal);
  const auto ns = principal ? principal_namespace(*principal) : std::nullopt;
  const auto request_principal = opt_view(r.request_principal);
  const asio::ip::address remote = r.remote_ip.value_or(r.source_ip);
  return positive(s.principals, principal) && negative(s.not_principals, principal) &&
         positive(s.request_principals, request_principal) &&
         negative(s.not_request_principals, request_principal) && positive(s.namespaces, ns) &&
         negative(s.not_namespaces, ns) &&
         (s.ip_blocks.empty() || any_cidr(s.ip_blocks, r.source_ip)) &&
         (s.not_ip_blocks.empty() || !any_cidr(s.not_ip_blocks, r.source_ip)) &&
         (s.remote_ip_blocks.empty() || any_cidr(s.remote_ip_blocks, remote)) &&
         (s.not_remote_ip_blocks.empty() || !any_cidr(s.not_remote_ip_blocks, remote));
}

bool operation_matches(const Operation& o, const RequestInfo& r) {
  const std::string port = std::to_string(r.destination_port);
  auto in_ports = [&](const std::vector<std::string>& list) {
    return std::find(list.begin(), list.end(), port) != list.end();
  };
  const std::string_view path = without_query(r.path);
  auto any_path = [&](const std::vector<PathPattern>& list) {
    return std::any_of(list.begin(), list.end(),
                       [&](const PathPattern& p) { return p.matches(path); });
  };
  return positive(o.hosts, r.host, true) && negative(o.not_hosts, r.host, true) &&
         (o.ports.empty() || in_ports(o.ports)) &&
         (o.not_ports.empty() || !in_ports(o.not_ports)) && positive(o.methods, r.method) &&
         negative(o.not_methods, r.method) && (o.paths.empty() || any_path(o.paths)) &&
         (o.not_paths.empty() || !any_path(o.not_paths));
}

// A JWT value with many strings (a list claim, the audiences): values pass when one string
// matches one of them, notValues when none does.
bool strings_condition(const Condition& c, const std::vector<std::string>& have) {
  auto any = [&](const std::vector<StringMatch>& list) {
    return std::any_of(have.begin(), have.end(),
                       [&](const std::string& v) { return any_string(list, v); });
  };
  return (c.values.empty() || any(c.values)) && (c.not_values.empty() || !any(c.not_values));
}

bool condition_matches(const Condition& c, const RequestInfo& r) {
  using K = Condition::Key;
  std::optional<std::string> value;
  std::optional<asio::ip::address> ip;
  switch (c.key) {
    case K::kRequestAudiences:
      return strings_condition(
          c, r.jwt ? claim_strings(r.jwt->claims, {"aud"}) : std::vector<std::string>{});
    case K::kRequestClaim:
      return strings_condition(
          c, r.jwt ? claim_strings(r.jwt->claims, c.claim_path) : std::vector<std::string>{});
    case K::kRequestPresenter:
      if (r.jwt) {
        if (auto azp = claim_strings(r.jwt->claims, {"azp"}); azp.size() == 1) value = azp[0];
      }
      break;
    case K::kRequestHeader:
      if (r.headers) value = http::joined_header(*r.headers, c.header_name);
      break;
    case K::kSourceIp:
      ip = r.source_ip;
      break;
    case K::kRemoteIp:
      ip = r.remote_ip.value_or(r.source_ip);
      break;
    case K::kDestinationIp:
      ip = r.destination_ip;
      break;
    case K::kSourceNamespace:
      if (r.principal) {
        if (auto ns = principal_namespace(*r.principal)) value = std::string(*ns);
      }
      break;
    case K::kSourcePrincipal:
      value = r.principal;
      break;
    case K::kRequestPrincipal:
      value = r.request_principal;
      break;
    case K::kDestinationPort:
      value = std::to_string(r.destination_port);
      break;
    case K::kUnavailable:
      break;
  }
  if (!c.ip_values.empty() || !c.not_ip_values.empty()) {
    const bool in = ip && any_cidr(c.ip_values, *ip);
    const bool in_not = ip && any_cidr(c.not_ip_values, *ip);
    return (c.ip_values.empty() || in) && (c.not_ip_values.empty() || !in_not);
  }
  return positive(c.values, opt_view(value)) && negative(c.not_values, opt_view(value));
}

bool rule_matches(const Rule& rule, const RequestInfo& r) {
  if (!rule.from.empty() && std::none_of(rule.from.begin(), rule.from.end(),
                                         [&](const Source& s) { return source_matches(s, r); })) {
    return false;
  }
  if (!rule.to.empty() && std::none_of(rule.to.begin(), rule.to.end(), [&](const Operation& o) {
        return operation_matches(o, r);
      })) {
    return false;
  }
  return std::all_of(rule.when.begin(), rule.when.end(),
                     [&](const Condition& c) { return condition_matches(c, r); });
}

}  // namespace

bool PathPattern::matches(std::string_view path) const {
  if (!is_template_) return string_.matches(path);
  return match_template(segments_, 0, path);
}

bool policy_matches(const Policy& policy, const RequestInfo& request) {
  return std::any_of(policy.rules.begin(), policy.rules.end(),
                     [&](const Rule& rule) { return rule_matches(rule, request); });
}

const Policy* matching_custom_policy(std::span<const Policy> policies, const RequestInfo& request) {
  for (const auto& p : policies) {
    if (p.action == Action::kCustom && !p.dry_run && policy_matches(p, request)) return &p;
  }
  return nullptr;
}

Decision evaluate(std::span<const Policy> policies, const RequestInfo& request,
                  const CustomCheck& custom) {
  Decision d;
  // Dry-run notes first: they never change the decision.
  for (const auto& p : policies) {
    if (!p.dry_run) continue;
    const bool matched = policy_matches(p, request);
    if (p.action == Action::kDeny && matched)
      d.dry_run.push_back("dry-run deny matched: " + p.key());
    if (p.action == Action::kAllow && matched)
      d.dry_run.push_back("dry-run allow matched: " + p.key());
  }
  for (const auto& p : policies) {
    if (p.action != Action::kCustom || p.dry_run || !policy_matches(p, request)) continue;
    if (!custom || !custom(p)) {
      d.outcome = Decision::Outcome::kDeniedByCustom;
      d.policy = p.key();
      return d;
    }
  }
  for (const auto& p : policies) {
    if (p.action == Action::kDeny && !p.dry_run && policy_matches(p, request)) {
      d.outcome = Decision::Outcome::kDenied;
      d.policy = p.key();
      return d;
    }
  }
  bool any_allow = false;
  for (const auto& p : policies) {
    if (p.action != Action::kAllow || p.dry_run) continue;
    any_allow = true;
    if (policy_matches(p, request)) {
      d.outcome = Decision::Outcome::kAllowed;
      d.policy = p.key();
      return d;
    }
  }
  d.outcome = any_allow ? Decision::Outcome::kNoAllowMatched : Decision::Outcome::kNoAllowPolicies;
  return d;
}

}  // namespace zt::waypoint::authz
