#include "waypoint/authz/request_authn.h"

#include <algorithm>

#include "waypoint/base/strings.h"
#include "waypoint/http/request_checks.h"

namespace zt::waypoint::authz {
namespace {

using nlohmann::json;

// Where a token was found: a header (its name), else a query parameter or a cookie.
struct Place {
  enum class Kind { kHeader, kParam, kCookie };
  Kind kind = Kind::kHeader;
  std::string name;
  bool operator==(const Place&) const = default;
};

struct Token {
  std::string text;
  std::vector<Place> places;
};

const JwtRule::FromHeader kDefaultHeader{"authorization", "Bearer "};
const std::string kDefaultParam = "access_token";

bool uses_defaults(const JwtRule& r) {
  return r.from_headers.empty() && r.from_params.empty() && r.from_cookies.empty();
}

bool jwt_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_' || c == '.';
}

// As Envoy reads a header (extractJWT): after the prefix, the token is the first run of
// base64url characters and dots; without one, the whole value (which then fails); with an empty
// prefix, the whole value. nullopt when the prefix is not in the value.
std::optional<std::string_view> token_after(std::string_view value, std::string_view prefix) {
  if (prefix.empty()) return value;
  const size_t at = value.find(prefix);
  if (at == value.npos) return std::nullopt;
  size_t start = at + prefix.size();
  while (start < value.size() && !jwt_char(value[start])) ++start;
  if (start == value.size()) return value;
  size_t end = start;
  while (end < value.size() && jwt_char(value[end])) ++end;
  return value.substr(start, end - start);
}

// Calls fn(place, token) for every place `rule` takes tokens from that holds one.
template <class Fn>
void each_token(const JwtRule& rule, const http::RequestHead& head, Fn&& fn) {
  auto headers = [&](const JwtRule::FromHeader& from) {
    for (const auto& h : head.headers) {
      if (!iequals(h.name, from.name)) continue;
      if (auto t = token_after(h.value, from.prefix))
        fn(Place{Place::Kind::kHeader, from.name}, *t);
    }
  };
  // As Envoy reads the query: names and values percent-decoded, the first value of the name
  // (an empty one too, which then fails).
  auto params = [&](const std::string& name) {
    if (auto value = query_value(head.query(), name)) fn(Place{Place::Kind::kParam, name}, *value);
  };
  if (uses_defaults(rule)) {
    headers(kDefaultHeader);
    params(kDefaultParam);
    return;
  }
  for (const auto& h : rule.from_headers) headers(h);
  for (const auto& p : rule.from_params) params(p);
  for (const auto& c : rule.from_cookies) {
    for (const auto& h : head.headers) {
      if (!iequals(h.name, "cookie")) continue;
      for (auto pair : split_list(h.value, ';')) {
        pair = trim_ows(pair);
        const size_t eq = pair.find('=');
        if (eq == pair.npos || pair.substr(0, eq) != c || eq + 1 == pair.size()) continue;
        fn(Place{Place::Kind::kCookie, c}, pair.substr(eq + 1));
      }
    }
  }
}

bool takes_from(const JwtRule& rule, const Place& place) {
  switch (place.kind) {
    case Place::Kind::kHeader:
      if (uses_defaults(rule)) return place.name == kDefaultHeader.name;
      return std::any_of(rule.from_headers.begin(), rule.from_headers.end(),
                         [&](const JwtRule::FromHeader& h) { return iequals(h.name, place.name); });
    case Place::Kind::kParam:
      if (uses_defaults(rule)) return place.name == kDefaultParam;
      return std::find(rule.from_params.begin(), rule.from_params.end(), place.name) !=
             rule.from_params.end();
    case Place::Kind::kCookie:
      return std::find(rule.from_cookies.begin(), rule.from_cookies.end(), place.name) !=
             rule.from_cookies.end();
  }
  return false;
}

// A claim's value as a header value: strings as they are, numbers and booleans in JSON.
// A string with a control character (a line break would end the header) gives nothing.
std::optional<std::string> header_value(const json& v) {
  if (v.is_number() || v.is_boolean()) return v.dump();
  if (!v.is_string()) return std::nullopt;
  auto s = v.get<std::string>();
  if (!http::is_field_value(s)) return std::nullopt;
  return s;
}

}  // namespace

std::vector<std::string> claim_strings(const json& claims, const std::vector<std::string>& path) {
  const json* at = &claims;
  for (const auto& step : path) {
    if (!at->is_object()) return {};
    auto it = at->find(step);
    if (it == at->end()) return {};
    at = &*it;
  }
  std::vector<std::string> out;
  if (at->is_string()) out.push_back(at->get<std::string>());
  if (at->is_array()) {
    for (const auto& v : *at) {
      if (v.is_string()) out.push_back(v.get<std::string>());
    }
  }
  return out;
}

AuthnResult authenticate(std::span<const RequestAuthentication* const> policies,
                         http::RequestHead& head, std::chrono::system_clock::time_point now) {
  AuthnResult result;
  // The tokens, each once with every place it was found in.
  std::vector<Token> tokens;
  for (const auto* policy : policies) {
    for (const auto& rule : policy->rules) {
      each_token(rule, head, [&](const Place& place, std::string_view text) {
        auto it = std::find_if(tokens.begin(), tokens.end(),
                               [&](const Token& t) { return t.text == text; });
        if (it == tokens.end()) it = tokens.insert(tokens.end(), Token{std::string(text), {}});
        if (std::find(it->places.begin(), it->places.end(), place) == it->places.end()) {
          it->places.push_back(place);
        }
      });
    }
  }

  // Each token must verify under a rule for its issuer that takes it from where it was found.
  struct Verified {
    const JwtRule* rule;
    const Token* token;
    Jwt jwt;
  };
  std::vector<Verified> verified;
  for (const auto& token : tokens) {
    auto jwt = decode_jwt(token.text);
    if (!jwt) {
      result.rejected = true;
      result.reason = std::string(message(jwt.error()));
      return result;
    }
    const std::string issuer = jwt->issuer();
    JwtStatus status = JwtStatus::kUnknownIssuer;
    const JwtRule* by = nullptr;
    for (const auto* policy : policies) {
      for (const auto& rule : policy->rules) {
        if (by || rule.issuer != issuer) continue;
        if (std::none_of(token.places.begin(), token.places.end(),
                         [&](const Place& p) { return takes_from(rule, p); })) {
          continue;
        }
        JwtStatus s = rule.jwks ? verify_jwt(*jwt, *rule.jwks, rule.audiences, now)
                                : check_claims(*jwt, rule.audiences, now);
        if (!rule.jwks && s == JwtStatus::kOk) s = JwtStatus::kJwksUnavailable;
        if (s == JwtStatus::kOk) by = &rule;
        // (the first rule's failure is the one reported when none verifies)
        if (status == JwtStatus::kUnknownIssuer) status = s;
      }
    }
    if (!by) {
      result.rejected = true;
      result.reason = std::string(message(status));
      return result;
    }
    verified.push_back({by, &token, std::move(*jwt)});
  }

  // Output headers are only ever what a verified token says.
  for (const auto* policy : policies) {
    for (const auto& rule : policy->rules) {
      if (!rule.output_payload_to_header.empty()) {
        http::remove_header(head.headers, rule.output_payload_to_header);
      }
      for (const auto& c : rule.output_claim_to_headers)
        http::remove_header(head.headers, c.header);
    }
  }
  for (const auto& v : verified) {
    if (!result.identity) {
      std::string sub;
      if (auto it = v.jwt.payload.find("sub"); it != v.jwt.payload.end() && it->is_string()) {
        sub = it->get<std::string>();
      }
      result.identity = JwtIdentity{v.jwt.issuer() + "/" + sub, v.jwt.payload};
    }
    if (!v.rule->forward_original_token) {
      for (const auto& place : v.token->places) {
        if (place.kind == Place::Kind::kHeader && takes_from(*v.rule, place)) {
          http::remove_header(head.headers, place.name);
        }
      }
    }
    if (!v.rule->output_payload_to_header.empty()) {
      http::set_header(head.headers, v.rule->output_payload_to_header, v.jwt.payload_b64);
    }
    for (const auto& c : v.rule->output_claim_to_headers) {
      auto it = v.jwt.payload.find(c.claim);
      if (it == v.jwt.payload.end()) continue;
      if (auto value = header_value(*it)) http::set_header(head.headers, c.header, *value);
    }
  }
  return result;
}

}  // namespace zt::waypoint::authz
