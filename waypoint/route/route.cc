#include "waypoint/route/route.h"

#include <algorithm>
#include <charconv>
#include <tuple>

#include <fmt/format.h>

#include "waypoint/base/strings.h"

namespace zt::waypoint::route {
namespace {

int path_rank(config::PathMatchType type) {
  switch (type) {
    case config::PathMatchType::kExact:
      return 3;
    case config::PathMatchType::kPathPrefix:
    case config::PathMatchType::kPrefix:
      return 2;
    case config::PathMatchType::kRegularExpression:
      return 1;
  }
  return 0;
}

bool starts_with(std::string_view text, std::string_view prefix, bool ignore_case) {
  if (text.size() < prefix.size()) return false;
  const auto head = text.substr(0, prefix.size());
  return ignore_case ? iequals(head, prefix) : head == prefix;
}

// Sort key: larger is more specific for the first five, smaller wins for the rest.
auto precedence_key(const Candidate& c) {
  const auto& m = *c.match;
  return std::make_tuple(-path_rank(m.path.type), -static_cast<int64_t>(m.path.value.size()),
                         m.method ? 0 : 1, -static_cast<int64_t>(m.headers.size()),
                         -static_cast<int64_t>(m.query_params.size()), c.route->created,
                         c.route->namespace_name, c.route->name, c.rule_index, c.match_index);
}

bool path_matches(const config::PathMatch& m, std::string_view path) {
  switch (m.type) {
    case config::PathMatchType::kExact:
      return m.ignore_case ? iequals(path, m.value) : path == m.value;
    case config::PathMatchType::kPrefix:
      return starts_with(path, m.value, m.ignore_case);
    case config::PathMatchType::kPathPrefix:
      if (m.value == "/") return true;
      // Segment-wise: "/abc" matches "/abc", "/abc/" and "/abc/d", never "/abcd".
      return path.starts_with(m.value) &&
             (path.size() == m.value.size() || path[m.value.size()] == '/');
    case config::PathMatchType::kRegularExpression:
      return m.regex && m.regex->full_match(path);
  }
  return false;
}

bool value_matches(const config::ValueMatch& m, std::string_view value) {
  switch (m.type) {
    case config::ValueMatchType::kExact:
      return value == m.value;
    case config::ValueMatchType::kPrefix:
      return value.starts_with(m.value);
    case config::ValueMatchType::kPresent:
      return true;
    case config::ValueMatchType::kRegularExpression:
      return m.regex && m.regex->full_match(value);
  }
  return false;
}

// A condition on a value that may be missing. An inverted one (withoutHeaders) holds when the
// plain one does not, a missing value reading as "" (absent, for a presence test).
bool condition_holds(const config::ValueMatch& m, const std::optional<std::string>& value) {
  if (!m.invert) return value && value_matches(m, *value);
  if (m.type == config::ValueMatchType::kPresent) return !value;
  return !value_matches(m, value ? *value : std::string());
}

// The value a header condition tests: the request line's for the pseudo-header names, Envoy's
// joined value (repeated headers joined with ",") for the others.
std::optional<std::string> header_value(const http::RequestHead& head, std::string_view name) {
  if (iequals(name, "host") || iequals(name, ":authority")) return head.authority;
  if (name == ":method") return head.method;
  if (name == ":scheme") return head.scheme;
  if (name == ":path") return head.target;
  return http::joined_header(head.headers, name);
}

bool host_matches(std::string_view pattern, std::string_view host) {
  if (pattern == "*") return true;
  if (pattern.starts_with("*.")) {
    const auto suffix = pattern.substr(1);  // ".<suffix>"
    return host.size() > suffix.size() && iequals(host.substr(host.size() - suffix.size()), suffix);
  }
  return iequals(pattern, host);
}

std::string_view host_without_port(std::string_view authority) {
  if (!authority.empty() && authority.front() == '[') {
    const size_t close = authority.find(']');
    return close == authority.npos ? authority : authority.substr(0, close + 1);
  }
  const size_t colon = authority.rfind(':');
  return colon == authority.npos ? authority : authority.substr(0, colon);
}

}  // namespace

bool matches(const config::RouteMatch& match, const http::RequestHead& head) {
  if (!path_matches(match.path, head.path())) return false;
  if (match.method && head.method != *match.method) return false;
  for (const auto& h : match.headers) {
    if (!condition_holds(h, header_value(head, h.name))) return false;
  }
  for (const auto& q : match.query_params) {
    if (!condition_holds(q, query_value(head.query(), q.name))) return false;
  }
  return true;
}

bool matches(const Candidate& c, uint16_t port, std::string_view source_namespace,
             const http::RequestHead& head) {
  if (c.port && *c.port != port) return false;
  if (c.match->port && *c.match->port != port) return false;
  if (c.match->source_namespace && *c.match->source_namespace != source_namespace) return false;
  return matches(*c.match, head);
}

RouteTable::RouteTable(std::shared_ptr<const config::WaypointConfig> config)
    : config_(std::move(config)) {
  std::vector<const config::HttpRoute*> virtual_services;
  for (const auto& route : config_->routes) {
    if (route.is_virtual_service()) {
      virtual_services.push_back(&route);
      continue;
    }
    for (const auto& parent : route.parents) {
      if (!parent.is_service()) continue;
      config::BackendRef service{.name = parent.name, .namespace_name = parent.namespace_name};
      const std::string host = to_lower(service.hostname(config_->cluster_domain));
      auto& list = by_host_[host];
      for (size_t r = 0; r < route.rules.size(); ++r) {
        const auto& rule = route.rules[r];
        for (size_t m = 0; m < rule.matches.size(); ++m) {
          list.push_back(Candidate{&route, &rule, &rule.matches[m], r, m, parent.port});
        }
      }
    }
  }
  for (auto& [host, list] : by_host_) {
    std::stable_sort(list.begin(), list.end(), [](const Candidate& a, const Candidate& b) {
      return precedence_key(a) < precedence_key(b);
    });
  }
  // VirtualServices after the HTTPRoutes, oldest first, each rule's matches in the order written.
  std::stable_sort(virtual_services.begin(), virtual_services.end(),
                   [](const config::HttpRoute* a, const config::HttpRoute* b) {
                     return std::tie(a->created, a->namespace_name, a->name) <
                            std::tie(b->created, b->namespace_name, b->name);
                   });
  for (const auto* vs : virtual_services) {
    for (const auto& host : vs->hostnames) {
      const bool wildcard = host.starts_with("*");
      auto& list = wildcard ? wildcard_[host] : by_host_[host];
      if (wildcard && std::find(wildcard_order_.begin(), wildcard_order_.end(), host) ==
                          wildcard_order_.end()) {
        wildcard_order_.push_back(host);
      }
      for (size_t r = 0; r < vs->rules.size(); ++r) {
        const auto& rule = vs->rules[r];
        for (size_t m = 0; m < rule.matches.size(); ++m) {
          list.push_back(Candidate{vs, &rule, &rule.matches[m], r, m, std::nullopt});
        }
      }
    }
  }
}

const std::vector<Candidate>* RouteTable::candidates(std::string_view host) const {
  auto it = by_host_.find(to_lower(host));
  return it == by_host_.end() ? nullptr : &it->second;
}

template <class Fn>
bool RouteTable::each_candidate(std::string_view host, Fn&& fn) const {
  if (const auto* list = candidates(host)) {
    for (const auto& c : *list) {
      if (fn(c)) return true;
    }
  }
  for (const auto& pattern : wildcard_order_) {
    if (!host_matches(pattern, host)) continue;
    for (const auto& c : wildcard_.at(pattern)) {
      if (fn(c)) return true;
    }
  }
  return false;
}

bool RouteTable::attached(std::string_view host, uint16_t port) const {
  return each_candidate(host, [&](const Candidate& c) {
    return (!c.port || *c.port == port) && (!c.match->port || *c.match->port == port);
  });
}

Selection RouteTable::select(std::string_view host, uint16_t port, const http::RequestHead& head,
                             std::string_view source_namespace) const {
  Selection out;
  each_candidate(host, [&](const Candidate& c) {
    if (!matches(c, port, source_namespace, head)) return false;
    out = Selection{c.route, c.rule, c.match, c.rule_index};
    return true;
  });
  return out;
}

const config::BackendRef* pick_backend(const config::RouteRule& rule, Random& random) {
  uint64_t total = 0;
  for (const auto& b : rule.backends) total += b.weight;
  if (total == 0) return nullptr;
  uint64_t pick = random.below(total);
  for (const auto& b : rule.backends) {
    if (pick < b.weight) return &b;
    pick -= b.weight;
  }
  return nullptr;  // unreachable
}

void apply_header_modifier(const config::HeaderModifier& modifier, http::HeaderList& headers) {
  for (const auto& name : modifier.remove) http::remove_header(headers, name);
  for (const auto& h : modifier.set) http::set_header(headers, h.name, h.value);
  for (const auto& h : modifier.add) http::add_header(headers, h.name, h.value);
}

std::string modified_target(const config::PathModifier& modifier, const config::RouteMatch& match,
                            std::string_view target) {
  const size_t q = target.find('?');
  const std::string_view path = target.substr(0, q);
  const std::string_view query = q == target.npos ? std::string_view() : target.substr(q);
  std::string out;
  if (modifier.type == config::PathModifierType::kReplaceFullPath) {
    out = modifier.value;
  } else if (modifier.type == config::PathModifierType::kRegexReplace) {
    out = modifier.regex ? modifier.regex->replace_all(path, modifier.value) : std::string(path);
  } else if (modifier.type == config::PathModifierType::kRewriteMatched) {
    // Envoy's prefix_rewrite: a prefix match's prefix is replaced; an exact or regular-expression
    // match matched the whole path.
    size_t matched = path.size();
    const auto& m = match.path;
    if ((m.type == config::PathMatchType::kPrefix ||
         m.type == config::PathMatchType::kPathPrefix) &&
        starts_with(path, m.value, m.ignore_case)) {
      matched = m.value.size();
    }
    out = modifier.value;
    out.append(path.substr(matched));
  } else {
    // The matched prefix is stored without a trailing '/', so `rest` is "" or starts with '/'.
    const std::string& prefix = match.path.value;
    std::string_view rest = path;
    if (match.path.type == config::PathMatchType::kPathPrefix && prefix != "/" &&
        path.starts_with(prefix)) {
      rest = path.substr(prefix.size());
    }
    std::string replacement = modifier.value;
    while (!replacement.empty() && replacement.back() == '/') replacement.pop_back();
    out = replacement;
    if (!rest.empty() && rest.front() != '/') out.push_back('/');
    out.append(rest);
    if (out.empty()) out.push_back('/');
  }
  // (A VirtualService rewrite may leave no leading '/'; a request target needs one.)
  if (out.empty() || out.front() != '/') out.insert(out.begin(), '/');
  out.append(query);
  return out;
}

Redirect redirect_for(const config::RequestRedirect& redirect, const config::RouteMatch& match,
                      const http::RequestHead& head, uint16_t service_port) {
  const std::string scheme = redirect.scheme ? *redirect.scheme : to_lower(head.scheme);
  const std::string_view request_host = host_without_port(head.authority);
  const std::string host = redirect.hostname ? *redirect.hostname : std::string(request_host);
  const uint16_t scheme_port = scheme == "https" ? 443 : 80;
  std::optional<uint16_t> port;  // nullopt: none in the Location
  using PortRule = config::RequestRedirect::PortRule;
  if (redirect.port) {
    port = *redirect.port;
  } else {
    switch (redirect.port_rule) {
      case PortRule::kListener:
        port = redirect.scheme ? scheme_port : service_port;
        break;
      case PortRule::kServicePort:
        port = service_port;
        break;
      case PortRule::kRequest: {
        // Envoy: the Host's own port, unless the redirect names a host, or changes the scheme
        // and the port is the old scheme's default.
        const auto rest = std::string_view(head.authority).substr(request_host.size());
        const std::string old_scheme = to_lower(head.scheme);
        uint16_t p = 0;
        if (!redirect.hostname && rest.size() > 1 && rest.front() == ':' &&
            std::from_chars(rest.data() + 1, rest.data() + rest.size(), p).ec == std::errc() &&
            !(scheme != old_scheme && p == (old_scheme == "https" ? 443 : 80))) {
          port = p;
        }
        break;
      }
    }
  }
  const bool default_port = !port || *port == scheme_port;
  const std::string target =
      redirect.path ? modified_target(*redirect.path, match, head.target) : head.target;
  Redirect out;
  out.status = redirect.status_code;
  out.location = fmt::format("{}://{}", scheme, host);
  if (!default_port) out.location.append(fmt::format(":{}", *port));
  out.location.append(target);
  return out;
}

std::string shadow_authority(std::string_view authority) {
  const std::string_view host = host_without_port(authority);
  std::string out(host);
  out += "-shadow";
  out.append(authority.substr(host.size()));
  return out;
}

RouteDecision route_request(const RouteTable& table, std::string_view host, uint16_t port,
                            http::RequestHead& head, Random& random,
                            std::string_view source_namespace) {
  RouteDecision d;
  d.selection = table.select(host, port, head, source_namespace);
  if (!d.selection) {
    d.kind = RouteDecision::Kind::kNoRoute;
    return d;
  }
  const auto& rule = *d.selection.rule;
  if (rule.redirect) {
    d.kind = RouteDecision::Kind::kRedirect;
    d.redirect = redirect_for(*rule.redirect, *d.selection.match, head, port);
    return d;
  }
  if (rule.direct_response) {
    d.kind = RouteDecision::Kind::kDirect;
    return d;
  }
  d.backend = pick_backend(rule, random);
  if (!d.backend) {
    d.kind = RouteDecision::Kind::kNoBackend;
    return d;
  }
  d.kind = RouteDecision::Kind::kForward;
  d.original_target = head.target;
  // A destination's own edits first, then the rule's (Envoy's order: weighted cluster, route).
  if (d.backend->request_headers) apply_header_modifier(*d.backend->request_headers, head.headers);
  if (rule.request_headers) apply_header_modifier(*rule.request_headers, head.headers);
  if (rule.rewrite) {
    if (rule.rewrite->hostname) head.authority = *rule.rewrite->hostname;
    if (rule.rewrite->path) {
      head.target = modified_target(*rule.rewrite->path, *d.selection.match, head.target);
    }
  }
  if (d.backend->rewrite_host) head.authority = *d.backend->rewrite_host;
  for (const auto& m : rule.mirrors) {
    if (random.chance_percent(m.percent)) d.mirrors.push_back(&m);
  }
  return d;
}

CorsDecision decide_cors(const config::CorsPolicy& cors, const CorsRequest& request) {
  CorsDecision d;
  const auto& origin = request.origin;
  if (!origin || origin->empty()) return d;  // not a CORS request
  d.preflight =
      request.method == "OPTIONS" && request.request_method && !request.request_method->empty();
  const bool allowed = std::any_of(cors.allow_origins.begin(), cors.allow_origins.end(),
                                   [&](const config::ValueMatch& m) {
                                     return value_matches(m, "*") || value_matches(m, *origin);
                                   });
  // (Envoy forwards a preflight it does not match, unless told to answer it without an origin)
  if (!allowed && !(d.preflight && !cors.forward_unmatched_preflights)) return d;
  if (allowed) {
    d.origin = *origin;
    d.headers.push_back({"access-control-allow-origin", *origin});
  }
  if (cors.allow_credentials) d.headers.push_back({"access-control-allow-credentials", "true"});
  if (!d.preflight) {
    if (!cors.expose_headers.empty()) {
      d.headers.push_back({"access-control-expose-headers", cors.expose_headers});
    }
    return d;
  }
  d.answer = true;
  auto granted = [](const std::string& allowed_list, const std::optional<std::string>& asked) {
    return allowed_list == "*" && asked ? *asked : allowed_list;
  };
  if (auto methods = granted(cors.allow_methods, request.request_method); !methods.empty()) {
    d.headers.push_back({"access-control-allow-methods", std::move(methods)});
  }
  if (auto headers = granted(cors.allow_headers, request.request_headers); !headers.empty()) {
    d.headers.push_back({"access-control-allow-headers", std::move(headers)});
  }
  if (cors.max_age) {
    const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(*cors.max_age);
    d.headers.push_back({"access-control-max-age", std::to_string(seconds.count())});
  }
  return d;
}

void apply_response_filters(const config::RouteRule& rule, const config::BackendRef* backend,
                            http::HeaderList& response_headers) {
  if (backend && backend->response_headers) {
    apply_header_modifier(*backend->response_headers, response_headers);
  }
  if (rule.response_headers) apply_header_modifier(*rule.response_headers, response_headers);
}

}  // namespace zt::waypoint::route
