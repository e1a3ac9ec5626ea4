#include "waypoint/route/route.h"

#include <algorithm>
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
      return 2;
    case config::PathMatchType::kRegularExpression:
      return 1;
  }
  return 0;
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
      return path == m.value;
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
  if (m.type == config::ValueMatchType::kExact) return value == m.value;
  return m.regex && m.regex->full_match(value);
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
    // Repeated headers are matched as one value joined with ",", as Envoy does.
    auto value = iequals(h.name, "host") || iequals(h.name, ":authority")
                     ? std::optional<std::string>(head.authority)
                     : http::joined_header(head.headers, h.name);
    if (!value || !value_matches(h, *value)) return false;
  }
  for (const auto& q : match.query_params) {
    auto value = query_value(head.query(), q.name);
    if (!value || !value_matches(q, *value)) return false;
  }
  return true;
}

RouteTable::RouteTable(std::shared_ptr<const config::WaypointConfig> config)
    : config_(std::move(config)) {
  for (const auto& route : config_->routes) {
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
}

const std::vector<Candidate>* RouteTable::candidates(std::string_view host) const {
  auto it = by_host_.find(to_lower(host));
  return it == by_host_.end() ? nullptr : &it->second;
}

Selection RouteTable::select(std::string_view host, uint16_t port,
                             const http::RequestHead& head) const {
  const auto* list = candidates(host);
  if (!list) return {};
  for (const auto& c : *list) {
    if (c.port && *c.port != port) continue;
    if (!matches(*c.match, head)) continue;
    return Selection{c.route, c.rule, c.match, c.rule_index};
  }
  return {};
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
  out.append(query);
  return out;
}

Redirect redirect_for(const config::RequestRedirect& redirect, const config::RouteMatch& match,
                      const http::RequestHead& head, uint16_t service_port) {
  const std::string scheme = redirect.scheme ? *redirect.scheme : to_lower(head.scheme);
  const std::string host =
      redirect.hostname ? *redirect.hostname : std::string(host_without_port(head.authority));
  uint16_t port = service_port;
  if (redirect.port) {
    port = *redirect.port;
  } else if (redirect.scheme) {
    port = *redirect.scheme == "https" ? 443 : 80;
  }
  const bool default_port = (scheme == "http" && port == 80) || (scheme == "https" && port == 443);
  const std::string target =
      redirect.path ? modified_target(*redirect.path, match, head.target) : head.target;
  Redirect out;
  out.status = redirect.status_code;
  out.location = fmt::format("{}://{}", scheme, host);
  if (!default_port) out.location.append(fmt::format(":{}", port));
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
                            http::RequestHead& head, Random& random) {
  RouteDecision d;
  d.selection = table.select(host, port, head);
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
  d.backend = pick_backend(rule, random);
  if (!d.backend) {
    d.kind = RouteDecision::Kind::kNoBackend;
    return d;
  }
  d.kind = RouteDecision::Kind::kForward;
  d.original_target = head.target;
  if (rule.request_headers) apply_header_modifier(*rule.request_headers, head.headers);
  if (rule.rewrite) {
    if (rule.rewrite->hostname) head.authority = *rule.rewrite->hostname;
    if (rule.rewrite->path) {
      head.target = modified_target(*rule.rewrite->path, *d.selection.match, head.target);
    }
  }
  for (const auto& m : rule.mirrors) {
    if (random.chance_percent(m.percent)) d.mirrors.push_back(&m);
  }
  return d;
}

void apply_response_filters(const config::RouteRule& rule, http::HeaderList& response_headers) {
  if (rule.response_headers) apply_header_modifier(*rule.response_headers, response_headers);
}

}  // namespace zt::waypoint::route
