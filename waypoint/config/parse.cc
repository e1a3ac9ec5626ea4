#include "waypoint/config/parse.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <functional>
#include <initializer_list>
#include <set>

#include <fmt/format.h>
#include <re2/re2.h>

#include "common/yaml/load.h"
#include "waypoint/base/strings.h"
#include "waypoint/config/reader.h"
#include "waypoint/http/request_checks.h"

namespace zt::waypoint::config {
namespace {

using namespace detail;  // NOLINT(google-build-using-namespace): this file's own helpers

constexpr size_t kMaxDocumentBytes = 16 * 1024 * 1024;
constexpr size_t kMaxHeaderModifications = 16;  // Gateway API: at most 16 set/add/remove each

// ---- HTTPRoute pieces ------------------------------------------------------------------------

Status read_value_match(Reader& r, const YAML::Node& node, std::string_view path, bool header,
                        ValueMatch& out) {
  if (auto s =
          r.object(node, path,
                   {{"type",
                     [&](const YAML::Node& n, const std::string& p) {
                       return read_enum<ValueMatchType>(
                           n, p,
                           {{"Exact", ValueMatchType::kExact},
                            {"RegularExpression", ValueMatchType::kRegularExpression}},
                           out.type);
                     }},
                    {"name", [&](const YAML::Node& n,
                                 const std::string& p) { return read_nonempty(n, p, out.name); }},
                    {"value", [&](const YAML::Node& n,
                                  const std::string& p) { return read_string(n, p, out.value); }}});
      !s) {
    return s;
  }
  if (out.name.empty()) return error_at(path, "missing required field \"name\"");
  if (header && !http::is_token(out.name)) {
    return error_at(join(path, "name"), fmt::format("\"{}\" is not a valid header name", out.name));
  }
  if (out.type == ValueMatchType::kRegularExpression) {
    auto re = Regex::compile(out.value);
    if (!re) return error_at(join(path, "value"), re.error().message);
    out.regex = std::move(*re);
  }
  return {};
}

Status read_path_match(Reader& r, const YAML::Node& node, std::string_view path, PathMatch& out) {
  bool has_value = false;
  if (auto s = r.object(node, path,
                        {{"type",
                          [&](const YAML::Node& n, const std::string& p) {
                            return read_enum<PathMatchType>(
                                n, p,
                                {{"Exact", PathMatchType::kExact},
                                 {"PathPrefix", PathMatchType::kPathPrefix},
                                 {"RegularExpression", PathMatchType::kRegularExpression}},
                                out.type);
                          }},
                         {"value",
                          [&](const YAML::Node& n, const std::string& p) {
                            has_value = true;
                            return read_nonempty(n, p, out.value);
                          }}});
      !s) {
    return s;
  }
  if (!has_value) out.value = "/";
  if (out.type == PathMatchType::kRegularExpression) {
    auto re = Regex::compile(out.value);
    if (!re) return error_at(join(path, "value"), re.error().message);
    out.regex = std::move(*re);
    return {};
  }
  if (auto s = check_http_path(out.value, join(path, "value")); !s) return s;
  if (out.type == PathMatchType::kPathPrefix) out.value = strip_trailing_slash(out.value);
  return {};
}

// A match's `headers`: no header name twice.
Status read_header_matches(Reader& r, const YAML::Node& node, std::string_view path,
                           std::vector<ValueMatch>& out) {
  return r.list(node, path, [&](const YAML::Node& item, const std::string& ip) -> Status {
    ValueMatch m;
    if (auto s = read_value_match(r, item, ip, true, m); !s) return s;
    for (const auto& other : out) {
      if (iequals(other.name, m.name)) return error_at(ip, "duplicate header name");
    }
    out.push_back(std::move(m));
    return {};
  });
}

Status read_route_match(Reader& r, const YAML::Node& node, std::string_view path, RouteMatch& out) {
  return r.object(
      node, path,
      {{"path", [&](const YAML::Node& n,
                    const std::string& p) { return read_path_match(r, n, p, out.path); }},
       {"headers", [&](const YAML::Node& n,
                       const std::string& p) { return read_header_matches(r, n, p, out.headers); }},
       {"queryParams",
        [&](const YAML::Node& n, const std::string& p) {
          return r.list(n, p, [&](const YAML::Node& item, const std::string& ip) -> Status {
            ValueMatch m;
            if (auto s = read_value_match(r, item, ip, false, m); !s) return s;
            for (const auto& other : out.query_params) {
              if (other.name == m.name) return error_at(ip, "duplicate query parameter name");
            }
            out.query_params.push_back(std::move(m));
            return {};
          });
        }},
       {"method", [&](const YAML::Node& n, const std::string& p) -> Status {
          std::string m;
          if (auto s = read_string(n, p, m); !s) return s;
          static constexpr std::string_view kMethods[] = {
              "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"};
          if (std::find(std::begin(kMethods), std::end(kMethods), m) == std::end(kMethods)) {
            return error_at(p, fmt::format("unknown method \"{}\"", m));
          }
          out.method = m;
          return {};
        }}});
}

Status read_header_list(Reader& r, const YAML::Node& node, std::string_view path,
                        http::HeaderList& out) {
  Status st = r.list(node, path, [&](const YAML::Node& item, const std::string& p) -> Status {
    http::Header h;
    if (auto s = r.object(
            item, p,
            {{"name", [&](const YAML::Node& n,
                          const std::string& np) { return read_nonempty(n, np, h.name); }},
             {"value", [&](const YAML::Node& n,
                           const std::string& vp) { return read_string(n, vp, h.value); }}});
        !s) {
      return s;
    }
    if (!http::is_token(h.name)) return error_at(join(p, "name"), "not a valid header name");
    for (unsigned char c : h.value) {
      if ((c < 0x20 && c != '\t') || c == 0x7f) {
        return error_at(join(p, "value"), "must not contain control characters");
      }
    }
    for (const auto& other : out) {
      if (iequals(other.name, h.name)) return error_at(p, "duplicate header name");
    }
    out.push_back(std::move(h));
    return {};
  });
  if (!st) return st;
  if (out.size() > kMaxHeaderModifications) return error_at(path, "at most 16 entries");
  return {};
}

Status read_header_modifier(Reader& r, const YAML::Node& node, std::string_view path,
                            HeaderModifier& out) {
  Status st =
      r.object(node, path,
               {{"set", [&](const YAML::Node& n,
                            const std::string& p) { return read_header_list(r, n, p, out.set); }},
                {"add", [&](const YAML::Node& n,
                            const std::string& p) { return read_header_list(r, n, p, out.add); }},
                {"remove", [&](const YAML::Node& n, const std::string& p) -> Status {
                   if (auto s = read_string_list(r, n, p, out.remove); !s) return s;
                   if (out.remove.size() > kMaxHeaderModifications)
                     return error_at(p, "at most 16 entries");
                   for (const auto& name : out.remove) {
                     if (!http::is_token(name))
                       return error_at(p, fmt::format("\"{}\" is not a header name", name));
                   }
                   return {};
                 }}});
  return st;
}

Status read_path_modifier(Reader& r, const YAML::Node& node, std::string_view path,
                          PathModifier& out) {
  std::optional<std::string> full, prefix;
  bool has_type = false;
  if (auto s = r.object(node, path,
                        {{"type",
                          [&](const YAML::Node& n, const std::string& p) {
                            has_type = true;
                            return read_enum<PathModifierType>(
                                n, p,
                                {{"ReplaceFullPath", PathModifierType::kReplaceFullPath},
                                 {"ReplacePrefixMatch", PathModifierType::kReplacePrefixMatch}},
                                out.type);
                          }},
                         {"replaceFullPath",
                          [&](const YAML::Node& n, const std::string& p) -> Status {
                            full.emplace();
                            if (auto s = read_nonempty(n, p, *full); !s) return s;
                            return check_http_path(*full, p);
                          }},
                         {"replacePrefixMatch",
                          [&](const YAML::Node& n, const std::string& p) -> Status {
                            prefix.emplace();
                            if (auto s = read_nonempty(n, p, *prefix); !s) return s;
                            return check_http_path(*prefix, p);
                          }}});
      !s) {
    return s;
  }
  if (!has_type) return error_at(path, "missing required field \"type\"");
  if (out.type == PathModifierType::kReplaceFullPath) {
    if (!full || prefix) return error_at(path, "type ReplaceFullPath needs replaceFullPath (only)");
    out.value = *full;
  } else {
    if (!prefix || full) {
      return error_at(path, "type ReplacePrefixMatch needs replacePrefixMatch (only)");
    }
    out.value = *prefix;
  }
  return {};
}

Status read_backend_ref(Reader& r, const YAML::Node& node, std::string_view path,
                        std::string_view route_namespace, bool with_weight, BackendRef& out) {
  auto fields = std::initializer_list<Field>{
      {"group",
       [&](const YAML::Node& n, const std::string& p) { return read_string(n, p, out.group); }},
      {"kind",
       [&](const YAML::Node& n, const std::string& p) { return read_nonempty(n, p, out.kind); }},
      {"name",
       [&](const YAML::Node& n, const std::string& p) { return read_nonempty(n, p, out.name); }},
      {"namespace", [&](const YAML::Node& n,
                        const std::string& p) { return read_nonempty(n, p, out.namespace_name); }},
      {"port",
       [&](const YAML::Node& n, const std::string& p) { return read_port(n, p, out.port); }},
      {"weight",
       [&](const YAML::Node& n, const std::string& p) -> Status {
         if (!with_weight) return error_at(p, "not allowed here");
         return read_uint(n, p, out.weight, 0, 1'000'000);
       }},
      {"filters", [&](const YAML::Node& n, const std::string& p) -> Status {
         if (n.IsSequence() && n.size() == 0) return {};
         return error_at(p, "per-backend filters are not supported");
       }}};
  if (auto s = r.object(node, path, fields); !s) return s;
  if (out.name.empty()) return error_at(path, "missing required field \"name\"");
  if (out.namespace_name.empty()) out.namespace_name = std::string(route_namespace);
  const bool service = (out.group.empty() || out.group == "core") && out.kind == "Service";
  if (service && !out.port) return error_at(path, "a Service backend needs \"port\"");
  return {};
}

Status read_filter(Reader& r, const YAML::Node& node, std::string_view path,
                   std::string_view route_namespace, RouteRule& rule) {
  if (!node.IsMap() || !present(node["type"]))
    return error_at(path, "missing required field \"type\"");
  std::string type;
  if (auto s = read_string(node["type"], join(path, "type"), type); !s) return s;
  auto only = [&](std::string_view key,
                  const std::function<Status(const YAML::Node&, const std::string&)>& fn) {
    return r.object(node, path, {{"type", nullptr}, {key, fn}});
  };
  auto need = [&](std::string_view key) -> Status {
    if (!present(node[std::string(key)])) {
      return error_at(path, fmt::format("type {} needs \"{}\"", type, key));
    }
    return {};
  };
  if (type == "RequestHeaderModifier") {
    if (rule.request_headers) return error_at(path, "RequestHeaderModifier given twice");
    if (auto s = need("requestHeaderModifier"); !s) return s;
    rule.request_headers.emplace();
    return only("requestHeaderModifier", [&](const YAML::Node& n, const std::string& p) {
      return read_header_modifier(r, n, p, *rule.request_headers);
    });
  }
  if (type == "ResponseHeaderModifier") {
    if (rule.response_headers) return error_at(path, "ResponseHeaderModifier given twice");
    if (auto s = need("responseHeaderModifier"); !s) return s;
    rule.response_headers.emplace();
    return only("responseHeaderModifier", [&](const YAML::Node& n, const std::string& p) {
      return read_header_modifier(r, n, p, *rule.response_headers);
    });
  }
  if (type == "URLRewrite") {
    if (rule.rewrite) return error_at(path, "URLRewrite given twice");
    if (auto s = need("urlRewrite"); !s) return s;
    rule.rewrite.emplace();
    return only("urlRewrite", [&](const YAML::Node& n, const std::string& p) {
      return r.object(n, p,
                      {{"hostname",
                        [&](const YAML::Node& hn, const std::string& hp) {
                          rule.rewrite->hostname.emplace();
                          return read_nonempty(hn, hp, *rule.rewrite->hostname);
                        }},
                       {"path", [&](const YAML::Node& pn, const std::string& pp) {
                          rule.rewrite->path.emplace();
                          return read_path_modifier(r, pn, pp, *rule.rewrite->path);
                        }}});
    });
  }
  if (type == "RequestRedirect") {
    if (rule.redirect) return error_at(path, "RequestRedirect given twice");
    if (auto s = need("requestRedirect"); !s) return s;
    rule.redirect.emplace();
    auto& rd = *rule.redirect;
    return only("requestRedirect", [&](const YAML::Node& n, const std::string& p) {
      return r.object(
          n, p,
          {{"scheme",
            [&](const YAML::Node& sn, const std::string& sp) -> Status {
              std::string_view v;
              if (auto s = read_enum<std::string_view>(sn, sp,
                                                       {{"http", "http"}, {"https", "https"}}, v);
                  !s) {
                return s;
              }
              rd.scheme = std::string(v);
              return {};
            }},
           {"hostname",
            [&](const YAML::Node& hn, const std::string& hp) {
              rd.hostname.emplace();
              return read_nonempty(hn, hp, *rd.hostname);
            }},
           {"path",
            [&](const YAML::Node& pn, const std::string& pp) {
              rd.path.emplace();
              return read_path_modifier(r, pn, pp, *rd.path);
            }},
           {"port", [&](const YAML::Node& pn,
                        const std::string& pp) { return read_port(pn, pp, rd.port); }},
           {"statusCode", [&](const YAML::Node& cn, const std::string& cp) -> Status {
              int64_t code = 0;
              if (auto s = read_int(cn, cp, 300, 399, code); !s) return s;
              if (code != 301 && code != 302 && code != 303 && code != 307 && code != 308) {
                return error_at(cp, fmt::format("{} is not one of 301, 302, 303, 307, 308", code));
              }
              rd.status_code = static_cast<int>(code);
              return {};
            }}});
    });
  }
  if (type == "RequestMirror") {
    if (auto s = need("requestMirror"); !s) return s;
    RequestMirror mirror;
    bool has_backend = false;
    bool has_percent = false;
    Status st = only("requestMirror", [&](const YAML::Node& n, const std::string& p) {
      return r.object(
          n, p,
          {{"backendRef",
            [&](const YAML::Node& bn, const std::string& bp) {
              has_backend = true;
              return read_backend_ref(r, bn, bp, route_namespace, false, mirror.backend);
            }},
           {"percent",
            [&](const YAML::Node& pn, const std::string& pp) -> Status {
              if (has_percent) return error_at(pp, "give percent or fraction, not both");
              has_percent = true;
              int64_t v = 0;
              if (auto s = read_int(pn, pp, 0, 100, v); !s) return s;
              mirror.percent = static_cast<double>(v);
              return {};
            }},
           {"fraction", [&](const YAML::Node& fn, const std::string& fp) -> Status {
              if (has_percent) return error_at(fp, "give percent or fraction, not both");
              has_percent = true;
              int64_t num = -1;
              int64_t den = 100;
              if (auto s = r.object(fn, fp,
                                    {{"numerator",
                                      [&](const YAML::Node& x, const std::string& xp) {
                                        return read_int(x, xp, 0, INT32_MAX, num);
                                      }},
                                     {"denominator",
                                      [&](const YAML::Node& x, const std::string& xp) {
                                        return read_int(x, xp, 1, INT32_MAX, den);
                                      }}});
                  !s) {
                return s;
              }
              if (num < 0) return error_at(fp, "missing required field \"numerator\"");
              if (num > den) return error_at(fp, "numerator must not exceed denominator");
              mirror.percent = 100.0 * static_cast<double>(num) / static_cast<double>(den);
              return {};
            }}});
    });
    if (!st) return st;
    if (!has_backend)
      return error_at(join(path, "requestMirror"), "missing required field \"backendRef\"");
    rule.mirrors.push_back(std::move(mirror));
    return {};
  }
  return error_at(join(path, "type"), fmt::format("filter type \"{}\" is not supported (supported: "
                                                  "RequestHeaderModifier, ResponseHeaderModifier, "
                                                  "URLRewrite, RequestRedirect, RequestMirror)",
                                                  type));
}

Status read_gateway_retry(Reader& r, const YAML::Node& node, std::string_view path,
                          RetryPolicy& out) {
  out = RetryPolicy::istio_default();
  return r.object(
      node, path,
      {{"codes",
        [&](const YAML::Node& n, const std::string& p) {
          return r.list(n, p, [&](const YAML::Node& item, const std::string& ip) -> Status {
            int64_t code = 0;
            if (auto s = read_int(item, ip, 400, 599, code); !s) return s;
            out.retriable_status_codes.push_back(static_cast<int>(code));
            out.retry_on |= kRetryOnRetriableStatusCodes;
            return {};
          });
        }},
       {"attempts", [&](const YAML::Node& n,
                        const std::string& p) { return read_uint(n, p, out.attempts, 0, 1000); }},
       {"backoff", [&](const YAML::Node& n, const std::string& p) {
          return read_duration(n, p, out.backoff_base);
        }}});
}

bool name_start(char c) { return c == '_' || std::isalpha(static_cast<unsigned char>(c)); }
bool name_char(char c) { return name_start(c) || std::isdigit(static_cast<unsigned char>(c)); }

// Gateway API's patterns: a method is [A-Za-z_][A-Za-z_0-9]*; a service is such names joined by
// dots, optionally after a leading dot.
bool grpc_method_name(std::string_view v) {
  return !v.empty() && name_start(v[0]) && std::all_of(v.begin(), v.end(), name_char);
}
bool grpc_service_name(std::string_view v) {
  if (v.starts_with('.')) v.remove_prefix(1);
  while (true) {
    auto dot = v.find('.');
    if (!grpc_method_name(v.substr(0, dot))) return false;
    if (dot == std::string_view::npos) return true;
    v.remove_prefix(dot + 1);
  }
}

// GRPCRoute (gateway.networking.k8s.io/v1): a method match {type: Exact | RegularExpression,
// service, method} is a match on the request path "/<service>/<method>", as gRPC names the
// call: both given (Exact) is that path; a service alone is every method of it (the path prefix
// "/<service>"); a method alone is that method of any service; with RegularExpression each
// given part is an RE2 expression for its path segment.
Status read_grpc_method_match(Reader& r, const YAML::Node& node, std::string_view path,
                              PathMatch& out) {
  bool regex = false;
  std::string service, method;
  if (auto s = r.object(
          node, path,
          {{"type",
            [&](const YAML::Node& n, const std::string& p) {
              return read_enum<bool>(n, p, {{"Exact", false}, {"RegularExpression", true}}, regex);
            }},
           {"service",
            [&](const YAML::Node& n, const std::string& p) { return read_string(n, p, service); }},
           {"method",
            [&](const YAML::Node& n, const std::string& p) { return read_string(n, p, method); }}});
      !s) {
    return s;
  }
  if (service.empty() && method.empty()) {
    return error_at(path, "needs service, method or both");
  }
  for (const auto& [part, value] : {std::pair{"service", &service}, std::pair{"method", &method}}) {
    if (value->empty()) continue;
    if (regex) {
      // Each part alone, so that one cannot reach past its path segment ("a)|(b").
      if (auto re = Regex::compile(*value); !re)
        return error_at(join(path, part), re.error().message);
    } else if (!(part == std::string_view("service") ? grpc_service_name(*value)
                                                     : grpc_method_name(*value))) {
      return error_at(join(path, part), fmt::format("\"{}\" is not a gRPC {} name", *value, part));
    }
  }
  if (!regex && !service.empty() && !method.empty()) {
    out.type = PathMatchType::kExact;
    out.value = "/" + service + "/" + method;
    return {};
  }
  if (!regex && method.empty()) {
    out.type = PathMatchType::kPathPrefix;
    out.value = "/" + service;
    return {};
  }
  auto segment = [&](const std::string& v) {
    if (v.empty()) return std::string("[^/]+");
    return regex ? "(?:" + v + ")" : RE2::QuoteMeta(v);
  };
  out.type = PathMatchType::kRegularExpression;
  out.value = "/" + segment(service) + "/" + segment(method);
  auto re = Regex::compile(out.value);
  if (!re) return error_at(path, re.error().message);
  out.regex = std::move(*re);
  return {};
}

// One GRPCRoute match: method (as a path match) and headers.
Status read_grpc_route_match(Reader& r, const YAML::Node& node, std::string_view path,
                             RouteMatch& out) {
  return r.object(
      node, path,
      {{"method", [&](const YAML::Node& n,
                      const std::string& p) { return read_grpc_method_match(r, n, p, out.path); }},
       {"headers", [&](const YAML::Node& n, const std::string& p) {
          return read_header_matches(r, n, p, out.headers);
        }}});
}

// One HTTPRoute rule, or (`grpc`) one GRPCRoute rule: GRPCRoute matches, only the header
// modifier and mirror filters, no timeouts, retries or faults.
Status read_rule(Reader& r, const YAML::Node& node, std::string_view path,
                 std::string_view route_namespace, bool grpc, RouteRule& rule) {
  auto not_grpc = [](const std::string& p) -> Status {
    return error_at(p, "is not a field of a GRPCRoute rule");
  };
  Status st = r.object(
      node, path,
      {{"name",
        [&](const YAML::Node& n, const std::string& p) { return read_string(n, p, rule.name); }},
       {"matches",
        [&](const YAML::Node& n, const std::string& p) {
          return r.list(n, p, [&](const YAML::Node& item, const std::string& ip) -> Status {
            RouteMatch m;
            if (auto s =
                    grpc ? read_grpc_route_match(r, item, ip, m) : read_route_match(r, item, ip, m);
                !s) {
              return s;
            }
            rule.matches.push_back(std::move(m));
            return {};
          });
        }},
       {"filters",
        [&](const YAML::Node& n, const std::string& p) {
          return r.list(n, p, [&](const YAML::Node& item, const std::string& ip) -> Status {
            if (grpc && item.IsMap() && present(item["type"]) && item["type"].IsScalar()) {
              const auto& type = item["type"].Scalar();
              if (type == "URLRewrite" || type == "RequestRedirect") {
                return error_at(join(ip, "type"),
                                fmt::format("filter type \"{}\" is not a GRPCRoute filter", type));
              }
            }
            return read_filter(r, item, ip, route_namespace, rule);
          });
        }},
       {"backendRefs",
        [&](const YAML::Node& n, const std::string& p) {
          return r.list(n, p, [&](const YAML::Node& item, const std::string& ip) -> Status {
            BackendRef b;
            if (auto s = read_backend_ref(r, item, ip, route_namespace, true, b); !s) return s;
            rule.backends.push_back(std::move(b));
            return {};
          });
        }},
       {"timeouts",
        [&](const YAML::Node& n, const std::string& p) -> Status {
          if (grpc) return not_grpc(p);
          return r.object(n, p,
                          {{"request",
                            [&](const YAML::Node& x, const std::string& xp) {
                              return read_optional_duration(x, xp, rule.timeouts.request);
                            }},
                           {"backendRequest", [&](const YAML::Node& x, const std::string& xp) {
                              return read_optional_duration(x, xp, rule.timeouts.backend_request);
                            }}});
        }},
       {"retry",
        [&](const YAML::Node& n, const std::string& p) -> Status {
          if (grpc) return not_grpc(p);
          RetryPolicy policy;
          if (auto s = read_gateway_retry(r, n, p, policy); !s) return s;
          rule.retry = std::move(policy);
          return {};
        }},
       {"retries",
        [&](const YAML::Node& n, const std::string& p) -> Status {
          if (grpc) return not_grpc(p);
          if (rule.retry) return {};  // Gateway API `retry` wins
          RetryPolicy policy;
          if (auto st = read_istio_retries(r, n, p, policy); !st) return st;
          rule.retry = std::move(policy);
          return {};
        }},
       {"fault", [&](const YAML::Node& n, const std::string& p) -> Status {
          if (grpc) return not_grpc(p);
          FaultInjection fault;
          if (auto st = read_istio_fault(r, n, p, fault); !st) return st;
          rule.fault = std::move(fault);
          return {};
        }}});
  if (!st) return st;
  if (rule.matches.empty()) rule.matches.push_back(RouteMatch{});
  if (rule.rewrite && rule.redirect) {
    return error_at(join(path, "filters"), "URLRewrite and RequestRedirect cannot be combined");
  }
  if (rule.redirect && !rule.backends.empty()) {
    return error_at(join(path, "backendRefs"), "a RequestRedirect rule cannot have backendRefs");
  }
  const bool prefix_rewrite = (rule.rewrite && rule.rewrite->path &&
                               rule.rewrite->path->type == PathModifierType::kReplacePrefixMatch) ||
                              (rule.redirect && rule.redirect->path &&
                               rule.redirect->path->type == PathModifierType::kReplacePrefixMatch);
  if (prefix_rewrite) {
    for (const auto& m : rule.matches) {
      if (m.path.type != PathMatchType::kPathPrefix) {
        return error_at(join(path, "filters"),
                        "ReplacePrefixMatch needs every match to use a PathPrefix path");
      }
    }
  }
  if (rule.timeouts.request && rule.timeouts.backend_request &&
      *rule.timeouts.backend_request > *rule.timeouts.request) {
    return error_at(join(path, "timeouts.backendRequest"), "must not exceed timeouts.request");
  }
  return {};
}

// ---- DestinationRule pieces --------------------------------------------------------------------

Status read_load_balancer(Reader& r, const YAML::Node& node, std::string_view path,
                          LoadBalancer& out) {
  bool simple = false;
  Status st = r.object(
      node, path,
      {{"simple",
        [&](const YAML::Node& n, const std::string& p) {
          simple = true;
          return read_enum<LbAlgorithm>(n, p,
                                        {{"UNSPECIFIED", LbAlgorithm::kLeastRequest},
                                         {"LEAST_REQUEST", LbAlgorithm::kLeastRequest},
                                         {"LEAST_CONN", LbAlgorithm::kLeastRequest},
                                         {"ROUND_ROBIN", LbAlgorithm::kRoundRobin},
                                         {"RANDOM", LbAlgorithm::kRandom},
                                         {"PASSTHROUGH", LbAlgorithm::kPassthrough}},
                                        out.algorithm);
        }},
       {"consistentHash",
        [&](const YAML::Node& n, const std::string& p) -> Status {
          ConsistentHash h;
          int sources = 0;
          Status hs = r.object(
              n, p,
              {{"httpHeaderName",
                [&](const YAML::Node& x, const std::string& xp) {
                  ++sources;
                  h.source = ConsistentHash::Source::kHeader;
                  return read_nonempty(x, xp, h.name);
                }},
               {"httpCookie",
                [&](const YAML::Node& x, const std::string& xp) {
                  ++sources;
                  h.source = ConsistentHash::Source::kCookie;
                  return r.object(x, xp,
                                  {{"name",
                                    [&](const YAML::Node& y, const std::string& yp) {
                                      return read_nonempty(y, yp, h.name);
                                    }},
                                   {"path",
                                    [&](const YAML::Node& y, const std::string& yp) {
                                      return read_string(y, yp, h.cookie_path);
                                    }},
                                   {"ttl",
                                    [&](const YAML::Node& y, const std::string& yp) -> Status {
                                      Duration d{0};
                                      if (auto s = read_duration(y, yp, d); !s) return s;
                                      h.cookie_ttl = d;
                                      return {};
                                    }},
                                   {"attributes", nullptr}});
                }},
               {"useSourceIp",
                [&](const YAML::Node& x, const std::string& xp) -> Status {
                  bool b = false;
                  if (auto s = read_bool(x, xp, b); !s) return s;
                  if (b) {
                    ++sources;
                    h.source = ConsistentHash::Source::kSourceIp;
                  }
                  return {};
                }},
               {"httpQueryParameterName",
                [&](const YAML::Node& x, const std::string& xp) {
                  ++sources;
                  h.source = ConsistentHash::Source::kQueryParameter;
                  return read_nonempty(x, xp, h.name);
                }},
               {"ringHash",
                [&](const YAML::Node& x, const std::string& xp) {
                  return r.object(
                      x, xp, {{"minimumRingSize", [&](const YAML::Node& y, const std::string& yp) {
                                 return read_uint(y, yp, h.minimum_ring_size, 1, 8'388'608);
                               }}});
                }},
               {"minimumRingSize",
                [&](const YAML::Node& x, const std::string& xp) {
                  return read_uint(x, xp, h.minimum_ring_size, 1, 8'388'608);
                }},
               {"maglev", [&](const YAML::Node&, const std::string& xp) -> Status {
                  return error_at(xp, "maglev is not supported (use ringHash)");
                }}});
          if (!hs) return hs;
          if (sources != 1) {
            return error_at(p,
                            "needs exactly one of httpHeaderName, httpCookie, useSourceIp: true, "
                            "httpQueryParameterName");
          }
          if (h.source == ConsistentHash::Source::kCookie && h.name.empty()) {
            return error_at(join(p, "httpCookie"), "missing required field \"name\"");
          }
          out.algorithm = LbAlgorithm::kConsistentHash;
          out.hash = std::move(h);
          return {};
        }},
       // Locality and warm-up settings shape which endpoints are offered, decided with the
       // endpoint data later; accepted and not applied yet.
       {"localityLbSetting", nullptr},
       {"warmupDurationSecs", nullptr},
       {"warmup", nullptr}});
  if (!st) return st;
  if (simple && out.hash) return error_at(path, "give simple or consistentHash, not both");
  return {};
}

Status read_connection_pool(Reader& r, const YAML::Node& node, std::string_view path,
                            ConnectionPool& out) {
  return r.object(node, path,
                  {{"tcp",
                    [&](const YAML::Node& n, const std::string& p) {
                      return r.object(n, p,
                                      {{"maxConnections",
                                        [&](const YAML::Node& x, const std::string& xp) {
                                          return read_uint(x, xp, out.max_connections, 1);
                                        }},
                                       {"connectTimeout",
                                        [&](const YAML::Node& x, const std::string& xp) {
                                          return read_duration(x, xp, out.connect_timeout);
                                        }},
                                       {"idleTimeout",
                                        [&](const YAML::Node& x, const std::string& xp) {
                                          return read_optional_duration(x, xp, out.idle_timeout);
                                        }},
                                       {"tcpKeepalive", nullptr},
                                       {"maxConnectionDuration", nullptr}});
                    }},
                   {"http", [&](const YAML::Node& n, const std::string& p) {
                      return r.object(n, p,
                                      {{"http1MaxPendingRequests",
                                        [&](const YAML::Node& x, const std::string& xp) {
                                          return read_uint(x, xp, out.http1_max_pending_requests,
                                                           1);
                                        }},
                                       {"http2MaxRequests",
                                        [&](const YAML::Node& x, const std::string& xp) {
                                          return read_uint(x, xp, out.http2_max_requests, 1);
                                        }},
                                       {"maxRequestsPerConnection",
                                        [&](const YAML::Node& x, const std::string& xp) {
                                          return read_uint(x, xp, out.max_requests_per_connection);
                                        }},
                                       {"maxRetries",
                                        [&](const YAML::Node& x, const std::string& xp) {
                                          return read_uint(x, xp, out.max_retries);
                                        }},
                                       {"idleTimeout",
                                        [&](const YAML::Node& x, const std::string& xp) {
                                          return read_optional_duration(x, xp, out.idle_timeout);
                                        }},
                                       {"h2UpgradePolicy", nullptr},
                                       {"useClientProtocol", nullptr},
                                       {"maxConcurrentStreams", nullptr}});
                    }}});
}

Status read_outlier(Reader& r, const YAML::Node& node, std::string_view path,
                    OutlierDetection& out) {
  return r.object(node, path,
                  {{"consecutive5xxErrors",
                    [&](const YAML::Node& x, const std::string& p) {
                      return read_uint(x, p, out.consecutive_5xx);
                    }},
                   {"consecutiveGatewayErrors",
                    [&](const YAML::Node& x, const std::string& p) {
                      return read_uint(x, p, out.consecutive_gateway_errors);
                    }},
                   {"consecutiveLocalOriginFailures",
                    [&](const YAML::Node& x, const std::string& p) {
                      return read_uint(x, p, out.consecutive_local_origin_failures);
                    }},
                   {"splitExternalLocalOriginErrors",
                    [&](const YAML::Node& x, const std::string& p) {
                      return read_bool(x, p, out.split_external_local_origin_errors);
                    }},
                   {"interval",
                    [&](const YAML::Node& x, const std::string& p) -> Status {
                      if (auto s = read_duration(x, p, out.interval); !s) return s;
                      if (out.interval.count() < 1) return error_at(p, "must be at least 1ms");
                      return {};
                    }},
                   {"baseEjectionTime",
                    [&](const YAML::Node& x, const std::string& p) -> Status {
                      if (auto s = read_duration(x, p, out.base_ejection_time); !s) return s;
                      if (out.base_ejection_time.count() < 1)
                        return error_at(p, "must be at least 1ms");
                      return {};
                    }},
                   {"maxEjectionPercent",
                    [&](const YAML::Node& x, const std::string& p) {
                      return read_uint(x, p, out.max_ejection_percent, 0, 100);
                    }},
                   {"minHealthPercent", [&](const YAML::Node& x, const std::string& p) {
                      return read_uint(x, p, out.min_health_percent, 0, 100);
                    }}});
}

Status read_port_traffic_policy(Reader& r, const YAML::Node& node, std::string_view path,
                                PortTrafficPolicy& out) {
  std::optional<uint16_t> port;
  Status st = r.object(node, path,
                       {{"port",
                         [&](const YAML::Node& n, const std::string& p) {
                           return r.object(
                               n, p, {{"number", [&](const YAML::Node& x, const std::string& xp) {
                                         return read_port(x, xp, port);
                                       }}});
                         }},
                        {"loadBalancer",
                         [&](const YAML::Node& n, const std::string& p) {
                           out.load_balancer.emplace();
                           return read_load_balancer(r, n, p, *out.load_balancer);
                         }},
                        {"connectionPool",
                         [&](const YAML::Node& n, const std::string& p) {
                           out.connection_pool.emplace();
                           return read_connection_pool(r, n, p, *out.connection_pool);
                         }},
                        {"outlierDetection",
                         [&](const YAML::Node& n, const std::string& p) {
                           out.outlier_detection.emplace();
                           return read_outlier(r, n, p, *out.outlier_detection);
                         }},
                        {"tls", nullptr}});
  if (!st) return st;
  if (!port) return error_at(path, "missing required field \"port.number\"");
  out.port = *port;
  return {};
}

Status read_traffic_policy(Reader& r, const YAML::Node& node, std::string_view path,
                           TrafficPolicy& out, std::vector<PortTrafficPolicy>* port_level) {
  return r.object(
      node, path,
      {{"loadBalancer",
        [&](const YAML::Node& n, const std::string& p) {
          return read_load_balancer(r, n, p, out.load_balancer);
        }},
       {"connectionPool",
        [&](const YAML::Node& n, const std::string& p) {
          return read_connection_pool(r, n, p, out.connection_pool);
        }},
       {"outlierDetection",
        [&](const YAML::Node& n, const std::string& p) {
          out.outlier_detection.emplace();
          return read_outlier(r, n, p, *out.outlier_detection);
        }},
       {"portLevelSettings",
        [&](const YAML::Node& n, const std::string& p) {
          return r.list(n, p, [&](const YAML::Node& item, const std::string& ip) -> Status {
            PortTrafficPolicy ptp;
            if (auto s = read_port_traffic_policy(r, item, ip, ptp); !s) return s;
            if (port_level) port_level->push_back(std::move(ptp));
            return {};
          });
        }},
       // mTLS to endpoints is HBONE's job; tunnel/proxyProtocol do not apply to a waypoint.
       {"tls", nullptr},
       {"tunnel", nullptr},
       {"proxyProtocol", nullptr}});
}

}  // namespace

// (Declared in reader.h: the VirtualService reader uses them too.)
namespace detail {

Status read_istio_retries(Reader& r, const YAML::Node& node, std::string_view path,
                          RetryPolicy& out) {
  out = RetryPolicy::istio_default();
  bool has_retry_on = false;
  std::string retry_on;
  Status st = r.object(
      node, path,
      {{"attempts", [&](const YAML::Node& n,
                        const std::string& p) { return read_uint(n, p, out.attempts, 0, 1000); }},
       {"perTryTimeout",
        [&](const YAML::Node& n, const std::string& p) -> Status {
          Duration d{0};
          if (auto s = read_duration(n, p, d); !s) return s;
          if (d.count() < 1) return error_at(p, "must be at least 1ms");
          out.per_try_timeout = d;
          return {};
        }},
       {"retryOn",
        [&](const YAML::Node& n, const std::string& p) {
          has_retry_on = true;
          return read_string(n, p, retry_on);
        }},
       {"backoff", [&](const YAML::Node& n,
                       const std::string& p) { return read_duration(n, p, out.backoff_base); }},
       {"retryRemoteLocalities", nullptr},
       {"retryIgnorePreviousHosts", nullptr}});
  if (!st) return st;
  if (has_retry_on && !retry_on.empty()) {
    out.retry_on = 0;
    out.retriable_status_codes.clear();
    if (auto s = parse_retry_on(retry_on, out, join(path, "retryOn")); !s) return s;
  }
  return {};
}

Status read_percentage(Reader& r, const YAML::Node& node, std::string_view path, double& out) {
  return r.object(node, path, {{"value", [&](const YAML::Node& n, const std::string& p) {
                                  return read_double(n, p, 0, 100, out);
                                }}});
}

namespace {
std::optional<int> grpc_code(std::string_view name) {
  static constexpr std::pair<std::string_view, int> kCodes[] = {
      {"OK", 0},
      {"CANCELLED", 1},
      {"UNKNOWN", 2},
      {"INVALID_ARGUMENT", 3},
      {"DEADLINE_EXCEEDED", 4},
      {"NOT_FOUND", 5},
      {"ALREADY_EXISTS", 6},
      {"PERMISSION_DENIED", 7},
      {"RESOURCE_EXHAUSTED", 8},
      {"FAILED_PRECONDITION", 9},
      {"ABORTED", 10},
      {"OUT_OF_RANGE", 11},
      {"UNIMPLEMENTED", 12},
      {"INTERNAL", 13},
      {"UNAVAILABLE", 14},
      {"DATA_LOSS", 15},
      {"UNAUTHENTICATED", 16},
  };
  for (const auto& [n, c] : kCodes) {
    if (n == name) return c;
  }
  return std::nullopt;
}
}  // namespace

Status read_istio_fault(Reader& r, const YAML::Node& node, std::string_view path,
                        FaultInjection& out) {
  return r.object(
      node, path,
      {{"delay",
        [&](const YAML::Node& n, const std::string& p) -> Status {
          FaultInjection::Delay d;
          bool has_fixed = false;
          Status st = r.object(
              n, p,
              {{"fixedDelay",
                [&](const YAML::Node& x, const std::string& xp) -> Status {
                  has_fixed = true;
                  if (auto s = read_duration(x, xp, d.fixed); !s) return s;
                  if (d.fixed.count() < 1) return error_at(xp, "must be at least 1ms");
                  return {};
                }},
               {"percentage",
                [&](const YAML::Node& x, const std::string& xp) {
                  return read_percentage(r, x, xp, d.percent);
                }},
               {"percent",
                [&](const YAML::Node& x, const std::string& xp) -> Status {
                  int64_t v = 0;
                  if (auto s = read_int(x, xp, 0, 100, v); !s) return s;
                  d.percent = static_cast<double>(v);
                  return {};
                }},
               {"exponentialDelay", [&](const YAML::Node&, const std::string& xp) -> Status {
                  return error_at(xp, "exponentialDelay is not supported");
                }}});
          if (!st) return st;
          if (!has_fixed) return error_at(p, "missing required field \"fixedDelay\"");
          out.delay = d;
          return {};
        }},
       {"abort", [&](const YAML::Node& n, const std::string& p) -> Status {
          FaultInjection::Abort a;
          int kinds = 0;
          Status st =
              r.object(n, p,
                       {{"httpStatus",
                         [&](const YAML::Node& x, const std::string& xp) {
                           ++kinds;
                           return read_uint(x, xp, a.http_status, 200, 599);
                         }},
                        {"grpcStatus",
                         [&](const YAML::Node& x, const std::string& xp) -> Status {
                           ++kinds;
                           std::string name;
                           if (auto s = read_string(x, xp, name); !s) return s;
                           auto code = grpc_code(name);
                           if (!code) {
                             int64_t v = 0;
                             if (!YAML::convert<int64_t>::decode(x, v) || v < 0 || v > 16) {
                               return error_at(xp, fmt::format("unknown gRPC status \"{}\"", name));
                             }
                             code = static_cast<int>(v);
                           }
                           a.grpc_status = *code;
                           a.http_status = 200;
                           return {};
                         }},
                        {"http2Error",
                         [&](const YAML::Node&, const std::string& xp) -> Status {
                           return error_at(xp, "http2Error is not supported");
                         }},
                        {"percentage",
                         [&](const YAML::Node& x, const std::string& xp) {
                           return read_percentage(r, x, xp, a.percent);
                         }},
                        {"percent", [&](const YAML::Node& x, const std::string& xp) -> Status {
                           int64_t v = 0;
                           if (auto s = read_int(x, xp, 0, 100, v); !s) return s;
                           a.percent = static_cast<double>(v);
                           return {};
                         }}});
          if (!st) return st;
          if (kinds != 1) return error_at(p, "needs exactly one of httpStatus, grpcStatus");
          out.abort = a;
          return {};
        }}});
}

}  // namespace detail
namespace {

Status parse_route_object(Reader& r, const YAML::Node& object, std::string_view path,
                          HttpRoute& route) {
  if (!object.IsMap()) return error_at(path, "must be a map");
  const bool grpc = present(object["kind"]) && object["kind"].IsScalar() &&
                    object["kind"].Scalar() == "GRPCRoute";
  if (grpc) route.kind = "GRPCRoute";
  if (!present(object["metadata"])) return error_at(path, "missing required field \"metadata\"");
  if (auto s = read_metadata(r, object["metadata"], join(path, "metadata"), route.name,
                             route.namespace_name, &route.created);
      !s) {
    return s;
  }
  if (!present(object["spec"])) return error_at(path, "missing required field \"spec\"");
  std::optional<RetryPolicy> route_retries;
  std::optional<FaultInjection> route_fault;
  if (grpc && present(object["istio"])) {
    return error_at(join(path, "istio"), "retries and faults are not GRPCRoute fields");
  }
  if (present(object["istio"])) {
    if (auto s = r.object(object["istio"], join(path, "istio"),
                          {{"retries",
                            [&](const YAML::Node& n, const std::string& p) {
                              route_retries.emplace();
                              return read_istio_retries(r, n, p, *route_retries);
                            }},
                           {"fault",
                            [&](const YAML::Node& n, const std::string& p) {
                              route_fault.emplace();
                              return read_istio_fault(r, n, p, *route_fault);
                            }}});
        !s) {
      return s;
    }
  }
  const std::string spec_path = join(path, "spec");
  Status st = r.object(
      object["spec"], spec_path,
      {{"parentRefs",
        [&](const YAML::Node& n, const std::string& p) {
          return r.list(n, p, [&](const YAML::Node& item, const std::string& ip) -> Status {
            ParentRef parent;
            Status ps = r.object(
                item, ip,
                {{"group", [&](const YAML::Node& x,
                               const std::string& xp) { return read_string(x, xp, parent.group); }},
                 {"kind", [&](const YAML::Node& x,
                              const std::string& xp) { return read_nonempty(x, xp, parent.kind); }},
                 {"name", [&](const YAML::Node& x,
                              const std::string& xp) { return read_nonempty(x, xp, parent.name); }},
                 {"namespace",
                  [&](const YAML::Node& x, const std::string& xp) {
                    return read_nonempty(x, xp, parent.namespace_name);
                  }},
                 {"sectionName",
                  [&](const YAML::Node& x, const std::string& xp) {
                    return read_string(x, xp, parent.section_name);
                  }},
                 {"port", [&](const YAML::Node& x, const std::string& xp) {
                    return read_port(x, xp, parent.port);
                  }}});
            if (!ps) return ps;
            if (parent.name.empty()) return error_at(ip, "missing required field \"name\"");
            if (parent.namespace_name.empty()) parent.namespace_name = route.namespace_name;
            route.parents.push_back(std::move(parent));
            return {};
          });
        }},
       {"hostnames",
        [&](const YAML::Node& n, const std::string& p) {
          return read_string_list(r, n, p, route.hostnames);
        }},
       {"rules", [&](const YAML::Node& n, const std::string& p) {
          return r.list(n, p, [&](const YAML::Node& item, const std::string& ip) -> Status {
            RouteRule rule;
            if (auto s = read_rule(r, item, ip, route.namespace_name, grpc, rule); !s) return s;
            if (!rule.retry && route_retries) rule.retry = route_retries;
            if (!rule.fault && route_fault) rule.fault = route_fault;
            route.rules.push_back(std::move(rule));
            return {};
          });
        }}});
  if (!st) return st;
  if (route.rules.empty() && !grpc) {
    // Gateway API default: one rule matching PathPrefix "/" with no backends (answers 500). (A
    // GRPCRoute has none: without rules it routes nothing.)
    RouteRule rule;
    rule.matches.push_back(RouteMatch{});
    route.rules.push_back(std::move(rule));
  }
  for (auto& h : route.hostnames) h = to_lower(h);
  return {};
}

// A Kubernetes DNS label (RFC 1123): what Istio accepts as a subset name.
bool dns_label(std::string_view v) {
  if (v.empty() || v.size() > 63 || v.front() == '-' || v.back() == '-') return false;
  return std::all_of(v.begin(), v.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
  });
}

// A map of strings (labels).
Status read_string_map(Reader& r, const YAML::Node& node, std::string_view path,
                       std::map<std::string, std::string>& out) {
  if (!node.IsMap()) return error_at(path, fmt::format("must be a map, got {}", show(node)));
  for (auto it = node.begin(); it != node.end(); ++it) {
    if (auto s = r.count(path); !s) return s;
    if (!it->first.IsScalar() || it->first.Scalar().empty()) {
      return error_at(path, "keys must be non-empty strings");
    }
    std::string value;
    if (auto s = read_string(it->second, join(path, it->first.Scalar()), value); !s) return s;
    out[it->first.Scalar()] = std::move(value);
  }
  return {};
}

// A DestinationRule subset {name, labels, trafficPolicy}; the sections its trafficPolicy gives
// are kept apart, to go over the rule's (DestinationPolicy::for_port).
Status read_subset(Reader& r, const YAML::Node& node, std::string_view path, Subset& out) {
  Status st = r.object(
      node, path,
      {{"name",
        [&](const YAML::Node& n, const std::string& p) -> Status {
          if (auto s = read_nonempty(n, p, out.name); !s) return s;
          if (!dns_label(out.name)) {
            return error_at(p, fmt::format("\"{}\" is not a DNS label (a-z, 0-9, '-')", out.name));
          }
          return {};
        }},
       {"labels", [&](const YAML::Node& n,
                      const std::string& p) { return read_string_map(r, n, p, out.labels); }},
       {"trafficPolicy", [&](const YAML::Node& n, const std::string& p) -> Status {
          TrafficPolicy given;
          if (auto s = read_traffic_policy(r, n, p, given, &out.port_level); !s) return s;
          if (present(n["loadBalancer"])) out.policy.load_balancer = given.load_balancer;
          if (present(n["connectionPool"])) out.policy.connection_pool = given.connection_pool;
          if (present(n["outlierDetection"])) {
            out.policy.outlier_detection = given.outlier_detection;
          }
          return {};
        }}});
  if (!st) return st;
  if (out.name.empty()) return error_at(path, "missing required field \"name\"");
  return {};
}

// A SubsetEndpoints document (named as its DestinationRule): the workloads each subset selects.
Status apply_subset_endpoints(Reader& r, const YAML::Node& object, std::string_view path,
                              WaypointConfig& config) {
  if (!object.IsMap()) return error_at(path, "must be a map");
  if (!present(object["metadata"])) return error_at(path, "missing required field \"metadata\"");
  std::string name, ns = "default";
  if (auto s = read_metadata(r, object["metadata"], join(path, "metadata"), name, ns, nullptr);
      !s) {
    return s;
  }
  if (!present(object["spec"])) return error_at(path, "missing required field \"spec\"");
  const std::string spec_path = join(path, "spec");
  std::vector<std::pair<std::string, std::set<std::string>>> subsets;
  Status st = r.object(
      object["spec"], spec_path,
      {{"subsets", [&](const YAML::Node& n, const std::string& p) {
          return r.list(n, p, [&](const YAML::Node& item, const std::string& ip) -> Status {
            std::string name;
            std::vector<std::string> workloads;
            Status s = r.object(
                item, ip,
                {{"name", [&](const YAML::Node& x,
                              const std::string& xp) { return read_nonempty(x, xp, name); }},
                 {"workloads", [&](const YAML::Node& x, const std::string& xp) {
                    return read_string_list(r, x, xp, workloads);
                  }}});
            if (!s) return s;
            if (name.empty()) return error_at(ip, "missing required field \"name\"");
            subsets.emplace_back(name, std::set<std::string>(workloads.begin(), workloads.end()));
            return {};
          });
        }}});
  if (!st) return st;
  auto rule = std::find_if(
      config.destinations.begin(), config.destinations.end(),
      [&](const DestinationPolicy& d) { return d.namespace_name == ns && d.name == name; });
  if (rule == config.destinations.end()) {
    return error_at(join(path, "metadata"), fmt::format("no DestinationRule {}/{}", ns, name));
  }
  for (size_t i = 0; i < subsets.size(); ++i) {
    const std::string& subset = subsets[i].first;
    auto& workloads = subsets[i].second;
    auto sub = std::find_if(rule->subsets.begin(), rule->subsets.end(),
                            [&](const Subset& s) { return s.name == subset; });
    if (sub == rule->subsets.end()) {
      return error_at(index(join(spec_path, "subsets"), i),
                      fmt::format("DestinationRule {}/{} has no subset \"{}\"", ns, name, subset));
    }
    sub->members = std::make_shared<const std::set<std::string>>(std::move(workloads));
  }
  return {};
}

Status parse_destination_object(Reader& r, const YAML::Node& object, std::string_view path,
                                std::string_view domain, DestinationPolicy& out) {
  if (!object.IsMap()) return error_at(path, "must be a map");
  if (!present(object["metadata"])) return error_at(path, "missing required field \"metadata\"");
  if (auto s = read_metadata(r, object["metadata"], join(path, "metadata"), out.name,
                             out.namespace_name, nullptr);
      !s) {
    return s;
  }
  if (out.namespace_name.empty()) out.namespace_name = "default";
  if (!present(object["spec"])) return error_at(path, "missing required field \"spec\"");
  std::string host;
  Status st = r.object(
      object["spec"], join(path, "spec"),
      {{"host",
        [&](const YAML::Node& n, const std::string& p) { return read_nonempty(n, p, host); }},
       {"trafficPolicy",
        [&](const YAML::Node& n, const std::string& p) {
          return read_traffic_policy(r, n, p, out.policy, &out.port_level);
        }},
       {"subsets",
        [&](const YAML::Node& n, const std::string& p) {
          return r.list(n, p, [&](const YAML::Node& item, const std::string& ip) -> Status {
            Subset sub;
            if (auto s = read_subset(r, item, ip, sub); !s) return s;
            for (const auto& other : out.subsets) {
              if (other.name == sub.name) return error_at(join(ip, "name"), "duplicate subset");
            }
            out.subsets.push_back(std::move(sub));
            return {};
          });
        }},
       {"exportTo", nullptr},
       {"workloadSelector", nullptr}});
  if (!st) return st;
  if (host.empty()) return error_at(join(path, "spec"), "missing required field \"host\"");
  out.host = to_lower(qualify_host(host, out.namespace_name, domain));
  return {};
}

struct Collected {
  std::vector<std::pair<YAML::Node, std::string>> routes;
  std::vector<std::pair<YAML::Node, std::string>> virtual_services;
  std::vector<std::pair<YAML::Node, std::string>> subset_endpoints;
  std::vector<std::pair<YAML::Node, std::string>> destinations;
  std::optional<std::string> cluster_domain;
};

Status collect(Reader& r, const YAML::Node& node, const std::string& path, Collected& out) {
  if (!node || node.IsNull()) return {};
  if (auto s = r.count(path); !s) return s;
  if (node.IsSequence()) {
    return r.list(node, path, [&](const YAML::Node& item, const std::string& ip) {
      return collect(r, item, ip, out);
    });
  }
  if (!node.IsMap()) return error_at(path, "must be a Kubernetes object or a waypoint document");
  if (present(node["kind"])) {
    std::string kind;
    if (auto s = read_string(node["kind"], join(path, "kind"), kind); !s) return s;
    if (kind == "HTTPRoute" || kind == "GRPCRoute") {
      out.routes.emplace_back(node, path);
    } else if (kind == "DestinationRule") {
      out.destinations.emplace_back(node, path);
    } else if (kind == "VirtualService") {
      out.virtual_services.emplace_back(node, path);
    } else if (kind == "SubsetEndpoints") {
      out.subset_endpoints.emplace_back(node, path);
    } else if (kind == "List" || kind.ends_with("List")) {
      if (present(node["items"])) return collect(r, node["items"], join(path, "items"), out);
    }
    return {};  // other kinds are not ours
  }
  return r.object(
      node, path,
      {{"clusterDomain",
        [&](const YAML::Node& n, const std::string& p) -> Status {
          std::string d;
          if (auto s = read_nonempty(n, p, d); !s) return s;
          out.cluster_domain = to_lower(d);
          return {};
        }},
       {"httpRoutes",
        [&](const YAML::Node& n, const std::string& p) {
          return r.list(n, p, [&](const YAML::Node& item, const std::string& ip) -> Status {
            out.routes.emplace_back(item, ip);
            return {};
          });
        }},
       {"destinationRules",
        [&](const YAML::Node& n, const std::string& p) {
          return r.list(n, p, [&](const YAML::Node& item, const std::string& ip) -> Status {
            out.destinations.emplace_back(item, ip);
            return {};
          });
        }},
       {"virtualServices",
        [&](const YAML::Node& n, const std::string& p) {
          return r.list(n, p, [&](const YAML::Node& item, const std::string& ip) -> Status {
            out.virtual_services.emplace_back(item, ip);
            return {};
          });
        }},
       // (CUSTOM authorization's providers: read by authz::parse_extension_providers)
       {"extensionProviders", nullptr}});
}

}  // namespace

Result<Duration> parse_duration(std::string_view text) {
  const std::string_view original = text;
  if (text == "0") return Duration(0);
  if (text.empty()) return fail("empty duration");
  long double total_ns = 0;
  while (!text.empty()) {
    size_t i = 0;
    while (i < text.size() && ((text[i] >= '0' && text[i] <= '9') || text[i] == '.')) ++i;
    if (i == 0) return failf("invalid duration \"{}\" (want e.g. 10s, 250ms, 1m30s)", original);
    const std::string number(text.substr(0, i));
    if (std::count(number.begin(), number.end(), '.') > 1 || number == "." || number.size() > 20) {
      return failf("invalid duration \"{}\"", original);
    }
    text.remove_prefix(i);
    size_t u = 0;
    while (u < text.size() && !((text[u] >= '0' && text[u] <= '9') || text[u] == '.')) ++u;
    const std::string_view unit = text.substr(0, u);
    text.remove_prefix(u);
    long double scale = 0;
    if (unit == "ns") {
      scale = 1;
    } else if (unit == "us" || unit == "\xc2\xb5s") {
      scale = 1e3L;
    } else if (unit == "ms") {
      scale = 1e6L;
    } else if (unit == "s") {
      scale = 1e9L;
    } else if (unit == "m") {
      scale = 60e9L;
    } else if (unit == "h") {
      scale = 3600e9L;
    } else {
      return failf("invalid duration \"{}\": unit must be one of h, m, s, ms, us, ns", original);
    }
    total_ns += std::stold(number) * scale;
    if (total_ns > 1e18L) return failf("duration \"{}\" is too long", original);
  }
  return Duration(static_cast<int64_t>(std::ceil(total_ns / 1e6L)));
}

Result<int64_t> parse_rfc3339(std::string_view text) {
  // YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)
  auto digits = [&](size_t pos, size_t n, int& out) {
    if (pos + n > text.size()) return false;
    out = 0;
    for (size_t i = pos; i < pos + n; ++i) {
      if (text[i] < '0' || text[i] > '9') return false;
      out = out * 10 + (text[i] - '0');
    }
    return true;
  };
  int y, mo, d, h, mi, s;
  if (text.size() < 20 || !digits(0, 4, y) || text[4] != '-' || !digits(5, 2, mo) ||
      text[7] != '-' || !digits(8, 2, d) || (text[10] != 'T' && text[10] != 't') ||
      !digits(11, 2, h) || text[13] != ':' || !digits(14, 2, mi) || text[16] != ':' ||
      !digits(17, 2, s) || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 60) {
    return failf("invalid timestamp \"{}\" (want RFC 3339, e.g. 2026-01-02T03:04:05Z)", text);
  }
  size_t pos = 19;
  if (pos < text.size() && text[pos] == '.') {
    ++pos;
    while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') ++pos;
  }
  int offset = 0;
  if (pos < text.size() && (text[pos] == 'Z' || text[pos] == 'z') && pos + 1 == text.size()) {
    offset = 0;
  } else if (pos + 6 == text.size() && (text[pos] == '+' || text[pos] == '-') &&
             text[pos + 3] == ':') {
    int oh, om;
    if (!digits(pos + 1, 2, oh) || !digits(pos + 4, 2, om)) {
      return failf("invalid timestamp \"{}\"", text);
    }
    offset = (oh * 60 + om) * 60 * (text[pos] == '+' ? 1 : -1);
  } else {
    return failf("invalid timestamp \"{}\" (needs a Z or +HH:MM zone)", text);
  }
  // Days from civil (proleptic Gregorian).
  const int yy = y - (mo <= 2);
  const int era = (yy >= 0 ? yy : yy - 399) / 400;
  const int yoe = yy - era * 400;
  const int doy = (153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  const int64_t days = static_cast<int64_t>(era) * 146097 + doe - 719468;
  return days * 86400 + h * 3600 + mi * 60 + s - offset;
}

Status parse_retry_on(std::string_view text, RetryPolicy& out, std::string_view path) {
  static constexpr std::pair<std::string_view, uint32_t> kConditions[] = {
      {"5xx", kRetryOn5xx},
      {"gateway-error", kRetryOnGatewayError},
      {"connect-failure", kRetryOnConnectFailure},
      {"reset", kRetryOnReset},
      {"reset-before-request", kRetryOnResetBeforeRequest},
      {"retriable-4xx", kRetryOnRetriable4xx},
      {"refused-stream", kRetryOnRefusedStream},
      {"retriable-status-codes", kRetryOnRetriableStatusCodes},
      {"cancelled", kRetryOnCancelled},
      {"deadline-exceeded", kRetryOnDeadlineExceeded},
      {"internal", kRetryOnInternal},
      {"resource-exhausted", kRetryOnResourceExhausted},
      {"unavailable", kRetryOnUnavailable},
  };
  for (auto token : split_list(text)) {
    if (token.empty()) continue;
    if (std::all_of(token.begin(), token.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      int code = 0;
      for (char c : token) {
        if (c < '0' || c > '9' || code > 1000)
          return error_at(path, fmt::format("bad status code \"{}\"", token));
        code = code * 10 + (c - '0');
      }
      if (code < 100 || code > 599)
        return error_at(path, fmt::format("bad status code \"{}\"", token));
      // Istio: a bare status code implies retriable-status-codes.
      out.retriable_status_codes.push_back(code);
      out.retry_on |= kRetryOnRetriableStatusCodes;
      continue;
    }
    auto it = std::find_if(std::begin(kConditions), std::end(kConditions),
                           [&](const auto& c) { return c.first == token; });
    if (it == std::end(kConditions)) {
      // Conditions we do not act on (retriable-headers, envoy-ratelimited, http3-post-connect-
      // failure) are refused rather than silently dropped.
      return error_at(path, fmt::format("unsupported retry condition \"{}\"", token));
    }
    out.retry_on |= it->second;
  }
  return {};
}

Result<HttpRoute> parse_http_route(const YAML::Node& object, std::string_view path) {
  try {
    Reader r;
    HttpRoute route;
    if (auto s = parse_route_object(r, object, path, route); !s) return tl::unexpected(s.error());
    return route;
  } catch (const std::exception& e) {
    return failf("{}: {}", path, e.what());
  }
}

Result<DestinationPolicy> parse_destination_rule(const YAML::Node& object,
                                                 std::string_view cluster_domain,
                                                 std::string_view path) {
  try {
    Reader r;
    DestinationPolicy out;
    if (auto s = parse_destination_object(r, object, path, cluster_domain, out); !s) {
      return tl::unexpected(s.error());
    }
    return out;
  } catch (const std::exception& e) {
    return failf("{}: {}", path, e.what());
  }
}

Result<TrafficPolicy> parse_traffic_policy(const YAML::Node& node, std::string_view path) {
  try {
    Reader r;
    TrafficPolicy out;
    if (auto s = read_traffic_policy(r, node, path, out, nullptr); !s)
      return tl::unexpected(s.error());
    return out;
  } catch (const std::exception& e) {
    return failf("{}: {}", path, e.what());
  }
}

Result<RetryPolicy> parse_istio_retries(const YAML::Node& node, std::string_view path) {
  try {
    Reader r;
    RetryPolicy out;
    if (auto s = read_istio_retries(r, node, path, out); !s) return tl::unexpected(s.error());
    return out;
  } catch (const std::exception& e) {
    return failf("{}: {}", path, e.what());
  }
}

Result<FaultInjection> parse_istio_fault(const YAML::Node& node, std::string_view path) {
  try {
    Reader r;
    FaultInjection out;
    if (auto s = read_istio_fault(r, node, path, out); !s) return tl::unexpected(s.error());
    return out;
  } catch (const std::exception& e) {
    return failf("{}: {}", path, e.what());
  }
}

Result<std::vector<YAML::Node>> load_documents(std::string_view yaml) {
  if (yaml.size() > kMaxDocumentBytes) return fail("waypoint config larger than 16 MiB");
  try {
    return zt::yaml::load_all(yaml);
  } catch (const std::exception& e) {
    return fail(zt::yaml::describe(e, "waypoint config"));
  }
}

Result<WaypointConfig> parse_waypoint_config(std::string_view yaml) {
  auto docs = load_documents(yaml);
  if (!docs) return tl::unexpected(docs.error());
  return parse_waypoint_config(*docs);
}

Result<WaypointConfig> parse_waypoint_config(const std::vector<YAML::Node>& docs) {
  try {
    Reader r;
    Collected collected;
    for (size_t i = 0; i < docs.size(); ++i) {
      const std::string path = docs.size() == 1 ? std::string() : index("document", i);
      if (auto s = collect(r, docs[i], path, collected); !s) return tl::unexpected(s.error());
    }
    WaypointConfig config;
    if (collected.cluster_domain) config.cluster_domain = *collected.cluster_domain;
    std::set<std::string, std::less<>> keys;
    for (const auto& [node, path] : collected.routes) {
      HttpRoute route;
      if (auto s = parse_route_object(r, node, path, route); !s) return tl::unexpected(s.error());
      if (!keys.insert(route.kind + " " + route.key()).second) {
        return failf("{}: duplicate {} {}", path, route.kind, route.key());
      }
      config.routes.push_back(std::move(route));
    }
    for (const auto& [node, path] : collected.virtual_services) {
      HttpRoute route;
      if (auto s = read_virtual_service(r, node, config.cluster_domain, path, route); !s) {
        return tl::unexpected(s.error());
      }
      if (!keys.insert(route.kind + " " + route.key()).second) {
        return failf("{}: duplicate {} {}", path, route.kind, route.key());
      }
      config.routes.push_back(std::move(route));
    }
    std::set<std::string, std::less<>> hosts;
    for (const auto& [node, path] : collected.destinations) {
      DestinationPolicy d;
      if (auto s = parse_destination_object(r, node, path, config.cluster_domain, d); !s) {
        return tl::unexpected(s.error());
      }
      // Istio merges DestinationRules per host; we keep the first and refuse the ambiguity.
      if (!hosts.insert(d.host).second) {
        return failf("{}: a second DestinationRule for host {}", path, d.host);
      }
      config.destinations.push_back(std::move(d));
    }
    for (const auto& [node, path] : collected.subset_endpoints) {
      if (auto s = apply_subset_endpoints(r, node, path, config); !s) {
        return tl::unexpected(s.error());
      }
    }
    return config;
  } catch (const std::exception& e) {
    return fail(zt::yaml::describe(e, "waypoint config"));
  }
}

}  // namespace zt::waypoint::config
