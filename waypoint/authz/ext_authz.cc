#include "waypoint/authz/ext_authz.h"

#include <algorithm>
#include <array>

#include <fmt/format.h>

#include "waypoint/base/strings.h"
#include "waypoint/http/forwarding.h"
#include "waypoint/http/request_checks.h"

namespace zt::waypoint::authz {
namespace {

constexpr std::string_view kHeadersToRemove = "x-envoy-auth-headers-to-remove";

}  // namespace

bool framing_header(std::string_view name) {
  return http::is_hop_by_hop(name) || iequals(name, "content-length") || iequals(name, "upgrade") ||
         iequals(name, "trailer");
}

bool usable_provider_header(std::string_view name, std::string_view value) {
  return http::is_token(name) && http::is_field_value(value) && !framing_header(name) &&
         !http::is_protected_header(name);
}

Result<HeaderPattern> HeaderPattern::parse(std::string_view pattern) {
  if (pattern.empty()) return fail("a header pattern must not be empty");
  if (pattern == "*") return fail("\"*\" is not a header pattern (name the headers)");
  HeaderPattern p;
  if (pattern.back() == '*') {
    p.kind = Kind::kPrefix;
    pattern.remove_suffix(1);
  } else if (pattern.front() == '*') {
    p.kind = Kind::kSuffix;
    pattern.remove_prefix(1);
  }
  if (pattern.find('*') != std::string_view::npos) {
    return failf("\"{}\": '*' may only stand at one end", pattern);
  }
  p.text = to_lower(pattern);
  return p;
}

bool HeaderPattern::matches(std::string_view name) const {
  if (name.size() < text.size()) return false;
  switch (kind) {
    case Kind::kExact:
      return iequals(name, text);
    case Kind::kPrefix:
      return iequals(name.substr(0, text.size()), text);
    case Kind::kSuffix:
      return iequals(name.substr(name.size() - text.size()), text);
  }
  return false;
}

bool any_matches(const std::vector<HeaderPattern>& patterns, std::string_view name) {
  return std::any_of(patterns.begin(), patterns.end(),
                     [&](const HeaderPattern& p) { return p.matches(name); });
}

http::RequestHead http_check_head(const ExtAuthzProvider& provider, const CheckInput& input) {
  const http::RequestHead& original = *input.head;
  http::RequestHead out;
  out.method = original.method;
  out.target = provider.path_prefix + original.target;
  out.authority = original.authority;
  out.scheme = "http";
  for (const auto& h : original.headers) {
    // Envoy always sends Authorization (and the method, path and host, carried above).
    const bool wanted =
        iequals(h.name, "authorization") || any_matches(provider.include_request_headers, h.name);
    if (!wanted || framing_header(h.name) || http::is_protected_header(h.name) ||
        iequals(h.name, kPartialBody)) {
      continue;
    }
    out.headers.push_back(h);
  }
  for (const auto& [name, value] : provider.include_additional_headers) {
    http::set_header(out.headers, name, value);
  }
  if (input.body_included) {
    http::set_header(out.headers, kPartialBody, input.body_partial ? "true" : "false");
  }
  return out;
}

ExtAuthzVerdict read_http_check_answer(const ExtAuthzProvider& provider, int status,
                                       const http::HeaderList& headers, std::string body) {
  if (status >= 500 || status < 200) {
    return check_failed(provider, fmt::format("the authorizer answered {}", status));
  }
  ExtAuthzVerdict v;
  if (status == 200) {
    v.kind = ExtAuthzVerdict::Kind::kAllowed;
    for (const auto& h : headers) {
      if (iequals(h.name, kHeadersToRemove)) {
        for (auto name : split_list(h.value)) {
          name = trim_ows(name);
          if (http::is_token(name) && !http::is_protected_header(name))
            v.upstream.remove.emplace_back(name);
        }
        continue;
      }
      if (!usable_provider_header(h.name, h.value)) continue;
      // (Istio: both replace what the request or the answer had of those names)
      if (any_matches(provider.headers_to_upstream_on_allow, h.name)) v.upstream.set.push_back(h);
      if (any_matches(provider.headers_to_downstream_on_allow, h.name)) {
        v.downstream.set.push_back(h);
      }
    }
    return v;
  }
  v.kind = ExtAuthzVerdict::Kind::kDenied;
  v.reason = fmt::format("denied by ext_authz ({})", status);
  v.status = status;
  v.body = std::move(body);
  const bool all = provider.headers_to_downstream_on_deny.empty();
  for (const auto& h : headers) {
    if (!usable_provider_header(h.name, h.value) || iequals(h.name, kHeadersToRemove)) continue;
    if (all || any_matches(provider.headers_to_downstream_on_deny, h.name) ||
        iequals(h.name, "www-authenticate") || iequals(h.name, "location")) {
      v.headers.push_back(h);
    }
  }
  return v;
}

ExtAuthzVerdict check_failed(const ExtAuthzProvider& provider, std::string reason) {
  ExtAuthzVerdict v;
  v.reason = std::move(reason);
  if (provider.fail_open) {
    v.kind = ExtAuthzVerdict::Kind::kAllowed;
    return v;
  }
  v.kind = ExtAuthzVerdict::Kind::kError;
  v.status = provider.status_on_error;
  return v;
}

void HeaderEdits::apply(http::HeaderList& headers) const {
  for (const auto& name : remove) http::remove_header(headers, name);
  for (const auto& h : set) http::remove_header(headers, h.name);
  headers.insert(headers.end(), set.begin(), set.end());
  headers.insert(headers.end(), append.begin(), append.end());
  for (const auto& h : if_absent) {
    if (!http::find_header(headers, h.name)) headers.push_back(h);
  }
  for (const auto& h : if_present) {
    if (http::find_header(headers, h.name)) http::set_header(headers, h.name, h.value);
  }
}

bool is_envoy_status_code(int code) {
  static constexpr std::array<int, 56> kCodes = {
      100, 200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301, 302, 303, 304, 305, 307, 308,
      400, 401, 402, 403, 404, 405, 406, 407, 408, 409, 410, 411, 412, 413, 414, 415, 416, 417, 421,
      422, 423, 424, 426, 428, 429, 431, 500, 501, 502, 503, 504, 505, 506, 507, 508, 510, 511};
  return std::find(kCodes.begin(), kCodes.end(), code) != kCodes.end();
}

}  // namespace zt::waypoint::authz
