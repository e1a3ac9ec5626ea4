// VirtualService (networking.istio.io) read into the route model, with the meaning Istio gives
// it at a waypoint. See parse.h for the fields and what is not supported.
#include <algorithm>

#include <fmt/format.h>

#include "waypoint/base/strings.h"
#include "waypoint/config/parse.h"
#include "waypoint/config/reader.h"
#include "waypoint/http/request_checks.h"

namespace zt::waypoint::config {
namespace {

using namespace detail;  // NOLINT(google-build-using-namespace): the readers' own helpers

constexpr size_t kMaxDirectResponseBody = 1024 * 1024;

// Istio StringMatch {exact | prefix | regex}: one of them; none (`{}` or null) is kPresent.
Status read_string_match(Reader& r, const YAML::Node& node, std::string_view path,
                         ValueMatch& out) {
  out.type = ValueMatchType::kPresent;
  if (node.IsNull()) return {};
  int given = 0;
  auto kind = [&](ValueMatchType type) {
    return [&out, &given, type](const YAML::Node& n, const std::string& p) -> Status {
      ++given;
      out.type = type;
      return read_string(n, p, out.value);
    };
  };
  if (auto s = r.object(node, path,
                        {{"exact", kind(ValueMatchType::kExact)},
                         {"prefix", kind(ValueMatchType::kPrefix)},
                         {"regex", kind(ValueMatchType::kRegularExpression)}});
      !s) {
    return s;
  }
  if (given > 1) return error_at(path, "give only one of exact, prefix and regex");
  if (out.type == ValueMatchType::kRegularExpression) {
    auto re = Regex::compile(out.value);
    if (!re) return error_at(join(path, "regex"), re.error().message);
    out.regex = std::move(*re);
  }
  return {};
}

// `headers`, `withoutHeaders` or `queryParams`: a map from name to StringMatch. For headers,
// `regex: "*"` is Istio's "present" too.
Status read_match_map(Reader& r, const YAML::Node& node, std::string_view path, bool header,
                      bool invert, std::vector<ValueMatch>& out) {
  if (!node.IsMap()) return error_at(path, fmt::format("must be a map, got {}", show(node)));
  for (auto it = node.begin(); it != node.end(); ++it) {
    if (auto s = r.count(path); !s) return s;
    if (!it->first.IsScalar() || it->first.Scalar().empty()) {
      return error_at(path, "keys must be non-empty strings");
    }
    ValueMatch m;
    m.name = it->first.Scalar();
    const std::string p = join(path, m.name);
    if (header && m.name.starts_with("@")) {
      return error_at(p, "JWT claim matches (@request.auth.claims) are not supported here");
    }
    if (header && !http::is_token(m.name)) return error_at(p, "not a valid header name");
    const YAML::Node value = it->second;  // (a const handle: reading a key must not add it)
    if (header && value.IsMap() && value.size() == 1 && value["regex"] &&
        value["regex"].IsScalar() && value["regex"].Scalar() == "*") {
      m.type = ValueMatchType::kPresent;
    } else if (auto s = read_string_match(r, value, p, m); !s) {
      return s;
    }
    m.invert = invert;
    for (const auto& other : out) {
      if (other.invert == invert && (header ? iequals(other.name, m.name) : other.name == m.name)) {
        return error_at(p, "duplicate name");
      }
    }
    out.push_back(std::move(m));
  }
  return {};
}

// A request-line condition (scheme, method, authority) as a pseudo-header match.
Status read_pseudo_match(Reader& r, const YAML::Node& node, std::string_view path,
                         std::string_view name, RouteMatch& out) {
  ValueMatch m;
  if (auto s = read_string_match(r, node, path, m); !s) return s;
  if (m.type == ValueMatchType::kPresent) return {};  // every request has one
  m.name = std::string(name);
  out.headers.push_back(std::move(m));
  return {};
}

// One HTTPMatchRequest. `applies` is false when the match cannot apply at a waypoint (Istio
// drops it): sourceLabels (the waypoint does not know the client's labels), or `gateways`
// without "mesh".
Status read_vs_match(Reader& r, const YAML::Node& node, std::string_view path, RouteMatch& out,
                     bool& applies) {
  applies = true;
  out.path = PathMatch{.type = PathMatchType::kPrefix, .value = "/"};
  bool ignore_case = false;
  Status st = r.object(
      node, path,
      {{"name", nullptr},
       {"statPrefix", nullptr},
       {"uri",
        [&](const YAML::Node& n, const std::string& p) -> Status {
          ValueMatch m;
          if (auto s = read_string_match(r, n, p, m); !s) return s;
          switch (m.type) {
            case ValueMatchType::kExact:
              out.path.type = PathMatchType::kExact;
              break;
            case ValueMatchType::kPrefix:
              out.path.type = PathMatchType::kPrefix;
              break;
            case ValueMatchType::kRegularExpression:
              out.path.type = PathMatchType::kRegularExpression;
              out.path.regex = std::move(m.regex);
              break;
            case ValueMatchType::kPresent:
              return {};  // any path
          }
          out.path.value = std::move(m.value);
          return {};
        }},
       {"scheme", [&](const YAML::Node& n,
                      const std::string& p) { return read_pseudo_match(r, n, p, ":scheme", out); }},
       {"method", [&](const YAML::Node& n,
                      const std::string& p) { return read_pseudo_match(r, n, p, ":method", out); }},
       {"authority",
        [&](const YAML::Node& n, const std::string& p) {
          return read_pseudo_match(r, n, p, ":authority", out);
        }},
       {"headers",
        [&](const YAML::Node& n, const std::string& p) {
          return read_match_map(r, n, p, true, false, out.headers);
        }},
       {"withoutHeaders",
        [&](const YAML::Node& n, const std::string& p) {
          return read_match_map(r, n, p, true, true, out.headers);
        }},
       {"queryParams",
        [&](const YAML::Node& n, const std::string& p) {
          return read_match_map(r, n, p, false, false, out.query_params);
        }},
       {"port",
        [&](const YAML::Node& n, const std::string& p) { return read_port(n, p, out.port); }},
       {"ignoreUriCase",
        [&](const YAML::Node& n, const std::string& p) { return read_bool(n, p, ignore_case); }},
       {"sourceNamespace",
        [&](const YAML::Node& n, const std::string& p) -> Status {
          std::string ns;
          if (auto s = read_nonempty(n, p, ns); !s) return s;
          out.source_namespace = std::move(ns);
          return {};
        }},
       {"sourceLabels",
        [&](const YAML::Node& n, const std::string& p) -> Status {
          if (!n.IsMap()) return error_at(p, fmt::format("must be a map, got {}", show(n)));
          if (n.size() > 0) applies = false;
          return {};
        }},
       {"gateways", [&](const YAML::Node& n, const std::string& p) -> Status {
          std::vector<std::string> gateways;
          if (auto s = read_string_list(r, n, p, gateways); !s) return s;
          if (!gateways.empty() &&
              std::find(gateways.begin(), gateways.end(), "mesh") == gateways.end()) {
            applies = false;
          }
          return {};
        }}});
  if (!st) return st;
  out.path.ignore_case = ignore_case && out.path.type != PathMatchType::kRegularExpression;
  return {};
}

// A header name a VirtualService may edit, and a value it may write.
Status check_header_edit(std::string_view path, std::string_view name, std::string_view value) {
  if (!http::is_token(name)) return error_at(path, "not a valid header name");
  for (unsigned char c : value) {
    if ((c < 0x20 && c != '\t') || c == 0x7f) {
      return error_at(path, "the value must not contain control characters");
    }
  }
  return {};
}

// A path a rewrite or a redirect writes into a request target or a Location: no spaces, control
// bytes or '#'.
Status check_uri_text(std::string_view path, std::string_view value) {
  for (unsigned char c : value) {
    if (c <= 0x20 || c == 0x7f || c == '#') {
      return error_at(path, "must not contain spaces, control characters or '#'");
    }
  }
  return {};
}

// HeaderOperations {set, add, remove}. `authority` (request side only) receives a `set` of
// the Host (":authority" or "host"), which Istio turns into a host rewrite.
Status read_header_operations(Reader& r, const YAML::Node& node, std::string_view path,
                              std::optional<std::string>* authority, HeaderModifier& out) {
  auto pairs = [&](http::HeaderList& list, bool setting) {
    return [&r, &list, authority, setting](const YAML::Node& n, const std::string& p) -> Status {
      if (!n.IsMap()) return error_at(p, fmt::format("must be a map, got {}", show(n)));
      for (auto it = n.begin(); it != n.end(); ++it) {
        if (auto s = r.count(p); !s) return s;
        if (!it->first.IsScalar()) return error_at(p, "keys must be strings");
        const std::string& name = it->first.Scalar();
        const std::string np = join(p, name);
        std::string value;
        if (auto s = read_string(it->second, np, value); !s) return s;
        if (iequals(name, ":authority") || iequals(name, "host")) {
          if (!setting || authority == nullptr) {
            return error_at(np, "the authority can only be set, on the request");
          }
          if (value.empty()) return error_at(np, "must not be empty");
          if (auto s = check_header_edit(np, "host", value); !s) return s;
          *authority = value;
          continue;
        }
        if (auto s = check_header_edit(np, name, value); !s) return s;
        list.push_back({name, value});
      }
      return {};
    };
  };
  return r.object(node, path,
                  {{"set", pairs(out.set, true)},
                   {"add", pairs(out.add, false)},
                   {"remove", [&](const YAML::Node& n, const std::string& p) -> Status {
                      if (auto s = read_string_list(r, n, p, out.remove); !s) return s;
                      for (const auto& name : out.remove) {
                        if (!http::is_token(name)) {
                          return error_at(p, fmt::format("\"{}\" is not a header name", name));
                        }
                      }
                      return {};
                    }}});
}

// Headers {request, response}.
Status read_headers(Reader& r, const YAML::Node& node, std::string_view path,
                    std::optional<std::string>* authority, std::optional<HeaderModifier>& request,
                    std::optional<HeaderModifier>& response) {
  return r.object(node, path,
                  {{"request",
                    [&](const YAML::Node& n, const std::string& p) {
                      request.emplace();
                      return read_header_operations(r, n, p, authority, *request);
                    }},
                   {"response", [&](const YAML::Node& n, const std::string& p) {
                      response.emplace();
                      return read_header_operations(r, n, p, nullptr, *response);
                    }}});
}

// Destination {host, subset, port {number}} as a backend. A short host is in the
// VirtualService's namespace; an FQDN of a Service is looked up in its own first.
Status read_destination(Reader& r, const YAML::Node& node, std::string_view path,
                        std::string_view ns, std::string_view domain, BackendRef& out) {
  std::string host;
  Status st = r.object(
      node, path,
      {{"host",
        [&](const YAML::Node& n, const std::string& p) { return read_nonempty(n, p, host); }},
       {"subset",
        [&](const YAML::Node& n, const std::string& p) { return read_string(n, p, out.subset); }},
       {"port", [&](const YAML::Node& n, const std::string& p) {
          return r.object(n, p, {{"number", [&](const YAML::Node& x, const std::string& xp) {
                                    return read_port(x, xp, out.port);
                                  }}});
        }}});
  if (!st) return st;
  if (host.empty()) return error_at(path, "missing required field \"host\"");
  if (host.find('*') != host.npos) return error_at(join(path, "host"), "must not be a wildcard");
  out.host = to_lower(qualify_host(host, ns, domain));
  out.namespace_name = std::string(ns);
  // "<name>.<namespace>.svc.<domain>": the Service's own namespace.
  const std::string suffix = fmt::format(".svc.{}", domain);
  if (out.host.ends_with(suffix)) {
    const std::string_view rest(out.host.data(), out.host.size() - suffix.size());
    const size_t dot = rest.find('.');
    if (dot != rest.npos && rest.find('.', dot + 1) == rest.npos) {
      out.namespace_name = std::string(rest.substr(dot + 1));
    }
  }
  return {};
}

// The host (and port) a redirect or a rewrite puts in place.
Status read_authority(const YAML::Node& node, std::string_view path,
                      std::optional<std::string>& out) {
  std::string host;
  if (auto s = read_nonempty(node, path, host); !s) return s;
  if (auto s = check_header_edit(path, "host", host); !s) return s;
  out = std::move(host);
  return {};
}

Status read_redirect(Reader& r, const YAML::Node& node, std::string_view path,
                     RequestRedirect& out) {
  out.status_code = 301;
  out.port_rule = RequestRedirect::PortRule::kRequest;
  bool derive = false;
  Status st = r.object(
      node, path,
      {{"uri",
        [&](const YAML::Node& n, const std::string& p) -> Status {
          std::string uri;
          if (auto s = read_nonempty(n, p, uri); !s) return s;
          if (uri.front() != '/') return error_at(p, "must start with '/'");
          if (auto s = check_uri_text(p, uri); !s) return s;
          out.path = PathModifier{.type = PathModifierType::kReplaceFullPath, .value = uri};
          return {};
        }},
       {"authority", [&](const YAML::Node& n,
                         const std::string& p) { return read_authority(n, p, out.hostname); }},
       {"port",
        [&](const YAML::Node& n, const std::string& p) { return read_port(n, p, out.port); }},
       {"derivePort",
        [&](const YAML::Node& n, const std::string& p) -> Status {
          derive = true;
          return read_enum<RequestRedirect::PortRule>(
              n, p,
              {{"FROM_PROTOCOL_DEFAULT", RequestRedirect::PortRule::kRequest},
               {"FROM_REQUEST_PORT", RequestRedirect::PortRule::kServicePort}},
              out.port_rule);
        }},
       {"scheme",
        [&](const YAML::Node& n, const std::string& p) -> Status {
          std::string scheme;
          if (auto s = read_enum<std::string>(n, p, {{"http", "http"}, {"https", "https"}}, scheme);
              !s) {
            return s;
          }
          out.scheme = std::move(scheme);
          return {};
        }},
       {"redirectCode", [&](const YAML::Node& n, const std::string& p) -> Status {
          int64_t code = 0;
          if (auto s = read_int(n, p, 0, 999, code); !s) return s;
          if (code == 0) code = 301;
          if (code != 301 && code != 302 && code != 303 && code != 307 && code != 308) {
            return error_at(p, "must be 301, 302, 303, 307 or 308");
          }
          out.status_code = static_cast<int>(code);
          return {};
        }}});
  if (!st) return st;
  if (derive && out.port) return error_at(path, "give port or derivePort, not both");
  return {};
}

Status read_rewrite(Reader& r, const YAML::Node& node, std::string_view path, UrlRewrite& out) {
  Status st = r.object(
      node, path,
      {{"uri",
        [&](const YAML::Node& n, const std::string& p) -> Status {
          if (out.path) return error_at(p, "give uri or uriRegexRewrite, not both");
          std::string uri;
          if (auto s = read_string(n, p, uri); !s) return s;
          if (auto s = check_uri_text(p, uri); !s) return s;
          // (Empty: Istio leaves Envoy's prefix_rewrite unset, so nothing is rewritten.)
          if (!uri.empty()) {
            out.path = PathModifier{.type = PathModifierType::kRewriteMatched, .value = uri};
          }
          return {};
        }},
       {"authority", [&](const YAML::Node& n,
                         const std::string& p) { return read_authority(n, p, out.hostname); }},
       {"uriRegexRewrite", [&](const YAML::Node& n, const std::string& p) -> Status {
          if (out.path) return error_at(p, "give uri or uriRegexRewrite, not both");
          PathModifier m{.type = PathModifierType::kRegexReplace};
          std::string pattern;
          Status s = r.object(
              n, p,
              {{"match", [&](const YAML::Node& x,
                             const std::string& xp) { return read_nonempty(x, xp, pattern); }},
               {"rewrite", [&](const YAML::Node& x, const std::string& xp) {
                  return read_string(x, xp, m.value);
                }}});
          if (!s) return s;
          if (pattern.empty()) return error_at(p, "missing required field \"match\"");
          if (auto v = check_uri_text(join(p, "rewrite"), m.value); !v) return v;
          auto re = Regex::compile(pattern);
          if (!re) return error_at(join(p, "match"), re.error().message);
          if (auto v = re->check_rewrite(m.value); !v) {
            return error_at(join(p, "rewrite"), v.error().message);
          }
          m.regex = std::move(*re);
          out.path = std::move(m);
          return {};
        }}});
  return st;
}

Status read_direct_response(Reader& r, const YAML::Node& node, std::string_view path,
                            DirectResponse& out) {
  bool has_status = false;
  Status st = r.object(
      node, path,
      {{"status",
        [&](const YAML::Node& n, const std::string& p) {
          has_status = true;
          return read_uint(n, p, out.status, 200, 599);
        }},
       {"body", [&](const YAML::Node& n, const std::string& p) {
          return r.object(n, p,
                          {{"string",
                            [&](const YAML::Node& x, const std::string& xp) -> Status {
                              if (auto s = read_string(x, xp, out.body); !s) return s;
                              if (out.body.size() > kMaxDirectResponseBody) {
                                return error_at(xp, "longer than 1 MiB");
                              }
                              return {};
                            }},
                           {"bytes", [&](const YAML::Node&, const std::string& xp) -> Status {
                              return error_at(xp, "is not supported; give the body as `string`");
                            }}});
        }}});
  if (!st) return st;
  if (!has_status) return error_at(path, "missing required field \"status\"");
  return {};
}

// A list of header names or methods, as the value of one header (joined with ","); `methods`:
// only HTTP's methods, or "*" (Istio's validation).
Status read_token_list(Reader& r, const YAML::Node& node, std::string_view path, bool methods,
                       std::string& out) {
  static constexpr std::string_view kMethods[] = {"GET",     "HEAD",    "POST",  "PUT",   "DELETE",
                                                  "CONNECT", "OPTIONS", "TRACE", "PATCH", "*"};
  std::vector<std::string> items;
  if (auto s = read_string_list(r, node, path, items); !s) return s;
  for (size_t i = 0; i < items.size(); ++i) {
    if (methods &&
        std::find(std::begin(kMethods), std::end(kMethods), items[i]) == std::end(kMethods)) {
      return error_at(index(path, i), fmt::format("\"{}\" is not an HTTP method", items[i]));
    }
    if (items[i] != "*" && !http::is_token(items[i])) {
      return error_at(index(path, i), "not a valid token");
    }
    if (!out.empty()) out += ",";
    out += items[i];
  }
  return {};
}

// CorsPolicy {allowOrigins (StringMatch) or, when it is not given, the deprecated allowOrigin
// (exact strings, "*" for any), allowMethods, allowHeaders, exposeHeaders, maxAge (whole
// seconds), allowCredentials, unmatchedPreflights}.
Status read_cors_policy(Reader& r, const YAML::Node& node, std::string_view path, CorsPolicy& out) {
  std::vector<ValueMatch> allow_origins, legacy_origins;
  Status st = r.object(
      node, path,
      {{"allowOrigins",
        [&](const YAML::Node& n, const std::string& p) {
          return r.list(n, p, [&](const YAML::Node& item, const std::string& ip) -> Status {
            ValueMatch m;
            if (auto s = read_string_match(r, item, ip, m); !s) return s;
            if (m.type == ValueMatchType::kPresent || m.value.empty()) {
              return error_at(ip, "needs a non-empty exact, prefix or regex");
            }
            allow_origins.push_back(std::move(m));
            return {};
          });
        }},
       {"allowOrigin",
        [&](const YAML::Node& n, const std::string& p) -> Status {
          std::vector<std::string> origins;
          if (auto s = read_string_list(r, n, p, origins); !s) return s;
          for (auto& o : origins) {
            ValueMatch m;
            m.type = o == "*" ? ValueMatchType::kPresent : ValueMatchType::kExact;
            m.value = std::move(o);
            legacy_origins.push_back(std::move(m));
          }
          return {};
        }},
       {"allowMethods",
        [&](const YAML::Node& n, const std::string& p) {
          return read_token_list(r, n, p, true, out.allow_methods);
        }},
       {"allowHeaders",
        [&](const YAML::Node& n, const std::string& p) {
          return read_token_list(r, n, p, false, out.allow_headers);
        }},
       {"exposeHeaders",
        [&](const YAML::Node& n, const std::string& p) {
          return read_token_list(r, n, p, false, out.expose_headers);
        }},
       {"maxAge",
        [&](const YAML::Node& n, const std::string& p) -> Status {
          out.max_age.emplace();
          if (auto s = read_duration(n, p, *out.max_age); !s) return s;
          if (out.max_age->count() % 1000 != 0) return error_at(p, "must be whole seconds");
          return {};
        }},
       {"allowCredentials",
        [&](const YAML::Node& n, const std::string& p) {
          return read_bool(n, p, out.allow_credentials);
        }},
       {"unmatchedPreflights", [&](const YAML::Node& n, const std::string& p) -> Status {
          std::string v;
          if (auto s = read_enum<std::string>(
                  n, p, {{"UNSPECIFIED", "FORWARD"}, {"FORWARD", "FORWARD"}, {"IGNORE", "IGNORE"}},
                  v);
              !s) {
            return s;
          }
          out.forward_unmatched_preflights = v == "FORWARD";
          return {};
        }}});
  if (!st) return st;
  out.allow_origins = allow_origins.empty() ? std::move(legacy_origins) : std::move(allow_origins);
  return {};
}

// One HTTPRoute of the VirtualService (a rule). `applies` is false when every match was dropped.
Status read_vs_rule(Reader& r, const YAML::Node& node, std::string_view path, std::string_view ns,
                    std::string_view domain, RouteRule& rule, bool& applies) {
  bool has_match = false, has_route = false;
  std::optional<std::string> authority;
  bool weights_given = false;
  auto mirror_of = [&](const YAML::Node& n, const std::string& p, RequestMirror& m) {
    return read_destination(r, n, p, ns, domain, m.backend);
  };
  Status st = r.object(
      node, path,
      {{"name",
        [&](const YAML::Node& n, const std::string& p) { return read_string(n, p, rule.name); }},
       {"match",
        [&](const YAML::Node& n, const std::string& p) {
          return r.list(n, p, [&](const YAML::Node& item, const std::string& ip) -> Status {
            has_match = true;
            RouteMatch m;
            bool match_applies = true;
            if (auto s = read_vs_match(r, item, ip, m, match_applies); !s) return s;
            if (match_applies) rule.matches.push_back(std::move(m));
            return {};
          });
        }},
       {"route",
        [&](const YAML::Node& n, const std::string& p) {
          return r.list(n, p, [&](const YAML::Node& item, const std::string& ip) -> Status {
            has_route = true;
            BackendRef b;
            std::optional<uint32_t> weight;
            Status s = r.object(item, ip,
                                {{"destination",
                                  [&](const YAML::Node& x, const std::string& xp) {
                                    return read_destination(r, x, xp, ns, domain, b);
                                  }},
                                 {"weight",
                                  [&](const YAML::Node& x, const std::string& xp) -> Status {
                                    weight.emplace();
                                    return read_uint(x, xp, *weight, 0, 1'000'000);
                                  }},
                                 {"headers", [&](const YAML::Node& x, const std::string& xp) {
                                    return read_headers(r, x, xp, &b.rewrite_host,
                                                        b.request_headers, b.response_headers);
                                  }}});
            if (!s) return s;
            if (b.host.empty()) return error_at(ip, "missing required field \"destination\"");
            weights_given = weights_given || weight.has_value();
            b.weight = weight.value_or(0);
            rule.backends.push_back(std::move(b));
            return {};
          });
        }},
       {"redirect",
        [&](const YAML::Node& n, const std::string& p) {
          rule.redirect.emplace();
          return read_redirect(r, n, p, *rule.redirect);
        }},
       {"directResponse",
        [&](const YAML::Node& n, const std::string& p) {
          rule.direct_response.emplace();
          return read_direct_response(r, n, p, *rule.direct_response);
        }},
       {"delegate",
        [&](const YAML::Node&, const std::string& p) -> Status {
          return error_at(p, "delegate VirtualServices are not supported by the waypoint");
        }},
       {"rewrite",
        [&](const YAML::Node& n, const std::string& p) {
          rule.rewrite.emplace();
          return read_rewrite(r, n, p, *rule.rewrite);
        }},
       {"timeout",
        [&](const YAML::Node& n, const std::string& p) {
          return read_optional_duration(n, p, rule.timeouts.request);
        }},
       {"retries",
        [&](const YAML::Node& n, const std::string& p) -> Status {
          rule.retry.emplace();
          return read_istio_retries(r, n, p, *rule.retry);
        }},
       {"fault",
        [&](const YAML::Node& n, const std::string& p) -> Status {
          rule.fault.emplace();
          return read_istio_fault(r, n, p, *rule.fault);
        }},
       {"mirror",
        [&](const YAML::Node& n, const std::string& p) -> Status {
          if (present(node["mirrors"])) return error_at(p, "give mirror or mirrors, not both");
          RequestMirror m;
          if (auto s = mirror_of(n, p, m); !s) return s;
          rule.mirrors.push_back(std::move(m));
          return {};
        }},
       {"mirrorPercentage", nullptr},  // read below, with `mirror`
       {"mirrorPercent", nullptr},
       {"mirror_percent", nullptr},
       {"mirrors",
        [&](const YAML::Node& n, const std::string& p) -> Status {
          if (present(node["mirror"])) return error_at(p, "give mirror or mirrors, not both");
          return r.list(n, p, [&](const YAML::Node& item, const std::string& ip) -> Status {
            RequestMirror m;
            Status s = r.object(
                item, ip,
                {{"destination",
                  [&](const YAML::Node& x, const std::string& xp) { return mirror_of(x, xp, m); }},
                 {"percentage", [&](const YAML::Node& x, const std::string& xp) {
                    return read_percentage(r, x, xp, m.percent);
                  }}});
            if (!s) return s;
            if (m.backend.host.empty())
              return error_at(ip, "missing required field \"destination\"");
            rule.mirrors.push_back(std::move(m));
            return {};
          });
        }},
       {"corsPolicy",
        [&](const YAML::Node& n, const std::string& p) {
          rule.cors.emplace();
          return read_cors_policy(r, n, p, *rule.cors);
        }},
       {"headers", [&](const YAML::Node& n, const std::string& p) {
          return read_headers(r, n, p, &authority, rule.request_headers, rule.response_headers);
        }}});
  if (!st) return st;
  // The mirror's percentage (absent: all requests; the deprecated integer form too).
  const bool single_mirror = present(node["mirror"]);
  for (const char* key : {"mirrorPercentage", "mirrorPercent", "mirror_percent"}) {
    if (!present(node[key])) continue;
    const std::string p = join(path, key);
    if (!single_mirror) return error_at(p, "only goes with `mirror`");
    double percent = 100;
    Status s = std::string_view(key) == "mirrorPercentage"
                   ? read_percentage(r, node[key], p, percent)
                   : read_double(node[key], p, 0, 100, percent);
    if (!s) return s;
    rule.mirrors.front().percent = percent;
  }
  const int actions =
      (has_route ? 1 : 0) + (rule.redirect ? 1 : 0) + (rule.direct_response ? 1 : 0);
  if (actions == 0) return error_at(path, "needs one of route, redirect and directResponse");
  if (actions > 1) return error_at(path, "give only one of route, redirect and directResponse");
  if (rule.rewrite && !has_route) return error_at(join(path, "rewrite"), "only goes with route");
  if (authority) {
    if (!has_route) return error_at(join(path, "headers"), "the authority only goes with route");
    if (!rule.rewrite) rule.rewrite.emplace();
    if (rule.rewrite->hostname) {
      return error_at(join(path, "headers"), "the authority is set by rewrite.authority too");
    }
    rule.rewrite->hostname = std::move(authority);
  }
  if (rule.backends.size() == 1) {
    // One destination takes every request, whatever its weight says.
    rule.backends.front().weight = 1;
  } else if (rule.backends.size() > 1) {
    uint64_t total = 0;
    for (const auto& b : rule.backends) total += b.weight;
    if (!weights_given || total == 0) {
      return error_at(join(path, "route"), "the weights of several destinations add up to 0");
    }
  }
  if (!has_match) rule.matches.push_back(RouteMatch{.path = {.type = PathMatchType::kPrefix}});
  applies = !rule.matches.empty();
  return {};
}

}  // namespace

namespace detail {

Status read_virtual_service(Reader& r, const YAML::Node& object, std::string_view cluster_domain,
                            std::string_view path, HttpRoute& route) {
  route.kind = "VirtualService";
  if (!object.IsMap()) return error_at(path, "must be a map");
  if (!present(object["metadata"])) return error_at(path, "missing required field \"metadata\"");
  if (auto s = read_metadata(r, object["metadata"], join(path, "metadata"), route.name,
                             route.namespace_name, &route.created);
      !s) {
    return s;
  }
  if (!present(object["spec"])) return error_at(path, "missing required field \"spec\"");
  const std::string spec_path = join(path, "spec");
  std::vector<std::string> hosts, gateways;
  Status st = r.object(
      object["spec"], spec_path,
      {{"hosts", [&](const YAML::Node& n,
                     const std::string& p) { return read_string_list(r, n, p, hosts); }},
       {"gateways", [&](const YAML::Node& n,
                        const std::string& p) { return read_string_list(r, n, p, gateways); }},
       {"exportTo", nullptr},  // meshd decides which waypoints see it
       {"tcp", nullptr},       // (L4 routes: the waypoint routes HTTP)
       {"tls", nullptr},
       {"http", [&](const YAML::Node& n, const std::string& p) {
          return r.list(n, p, [&](const YAML::Node& item, const std::string& ip) -> Status {
            RouteRule rule;
            bool applies = true;
            if (auto s =
                    read_vs_rule(r, item, ip, route.namespace_name, cluster_domain, rule, applies);
                !s) {
              return s;
            }
            if (applies) route.rules.push_back(std::move(rule));
            return {};
          });
        }}});
  if (!st) return st;
  if (hosts.empty()) return error_at(join(spec_path, "hosts"), "needs at least one host");
  for (size_t i = 0; i < hosts.size(); ++i) {
    const auto& h = hosts[i];
    const bool wildcard = h == "*" || (h.starts_with("*.") && h.size() > 2);
    if (!wildcard && h.find('*') != h.npos) {
      return error_at(index(join(spec_path, "hosts"), i),
                      "a wildcard must be \"*\" or \"*.<domain>\"");
    }
    route.hostnames.push_back(
        wildcard ? to_lower(h) : to_lower(qualify_host(h, route.namespace_name, cluster_domain)));
  }
  // A VirtualService bound only to gateways is not for the mesh's waypoints.
  if (!gateways.empty() && std::find(gateways.begin(), gateways.end(), "mesh") == gateways.end()) {
    route.rules.clear();
  }
  return {};
}

}  // namespace detail

Result<HttpRoute> parse_virtual_service(const YAML::Node& object, std::string_view cluster_domain,
                                        std::string_view path) {
  try {
    Reader r;
    HttpRoute route;
    if (auto s = read_virtual_service(r, object, cluster_domain, path, route); !s) {
      return tl::unexpected(s.error());
    }
    return route;
  } catch (const std::exception& e) {
    return failf("{}: {}", path, e.what());
  }
}

}  // namespace zt::waypoint::config
