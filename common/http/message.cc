#include "common/http/message.h"

#include <algorithm>

namespace zt::http {
namespace {

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? char(c - 'A' + 'a') : c; };
           return lower(x) == lower(y);
         });
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::optional<std::string_view> Request::query_param(std::string_view name) const {
  for (const auto& [k, v] : query) {
    if (k == name) return v;
  }
  return std::nullopt;
}

std::optional<std::string_view> Request::header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (iequals(k, name)) return v;
  }
  return std::nullopt;
}

Response Response::text(int status, std::string body) {
  return Response{status, "text/plain; charset=utf-8", std::move(body), {}, {}};
}

Response Response::json(int status, std::string body) {
  return Response{status, "application/json", std::move(body), {}, {}};
}

Result<std::string> percent_decode(std::string_view s, bool plus_is_space) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '%') {
      int hi = i + 2 < s.size() ? hex_value(s[i + 1]) : -1;
      int lo = i + 2 < s.size() ? hex_value(s[i + 2]) : -1;
      if (hi < 0 || lo < 0) return failf("malformed percent-escape at offset {}", i);
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out.push_back(' ');
    } else {
      out.push_back(c);
    }
  }
  return out;
}

Result<std::vector<Field>> parse_query(std::string_view query) {
  std::vector<Field> out;
  while (!query.empty()) {
    auto amp = query.find('&');
    auto pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    if (pair.empty()) continue;
    auto eq = pair.find('=');
    auto key = percent_decode(pair.substr(0, eq), true);
    if (!key) return tl::unexpected(key.error());
    std::string value;
    if (eq != std::string_view::npos) {
      auto v = percent_decode(pair.substr(eq + 1), true);
      if (!v) return tl::unexpected(v.error());
      value = std::move(*v);
    }
    out.emplace_back(std::move(*key), std::move(value));
  }
  return out;
}

Status parse_target(Request& request) {
  std::string_view target = request.target;
  if (auto scheme = target.find("://");
      scheme != std::string_view::npos && !target.starts_with("/")) {
    // absolute-form: drop scheme and authority.
    auto slash = target.find('/', scheme + 3);
    target = slash == std::string_view::npos ? std::string_view("/") : target.substr(slash);
  }
  if (!target.starts_with("/")) return failf("request target '{}' is not a path", request.target);
  auto qmark = target.find('?');
  auto path = percent_decode(target.substr(0, qmark), false);
  if (!path) return tl::unexpected(path.error());
  request.path = std::move(*path);
  request.query.clear();
  if (qmark != std::string_view::npos) {
    auto query = parse_query(target.substr(qmark + 1));
    if (!query) return tl::unexpected(query.error());
    request.query = std::move(*query);
  }
  return {};
}

}  // namespace zt::http
