#include "waypoint/base/strings.h"

#include <charconv>

namespace zt::waypoint {

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
  }
  return true;
}

std::string to_lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = ascii_lower(c);
  return out;
}

std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::vector<std::string_view> split_list(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  size_t start = 0;
  while (true) {
    const size_t pos = s.find(sep, start);
    out.push_back(trim_ows(s.substr(start, pos == std::string_view::npos ? s.npos : pos - start)));
    if (pos == std::string_view::npos) break;
    start = pos + 1;
  }
  return out;
}

bool starts_with_icase(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}

namespace {
void append_number(std::string& out, uint64_t v, int base) {
  char buf[20];  // UINT64_MAX has 20 decimal digits
  const auto r = std::to_chars(buf, buf + sizeof(buf), v, base);
  out.append(buf, r.ptr);
}
}  // namespace

void append_decimal(std::string& out, uint64_t v) { append_number(out, v, 10); }
void append_hex(std::string& out, uint64_t v) { append_number(out, v, 16); }

int hex_digit_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string percent_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      const int hi = hex_digit_value(s[i + 1]);
      const int lo = hex_digit_value(s[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out.push_back(static_cast<char>(hi << 4 | lo));
        i += 2;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  return out;
}

std::optional<std::string> query_value(std::string_view query, std::string_view name) {
  for (auto part : split_list(query, '&')) {
    if (part.empty()) continue;
    const size_t eq = part.find('=');
    if (percent_decode(part.substr(0, eq)) != name) continue;
    return eq == part.npos ? std::string() : percent_decode(part.substr(eq + 1));
  }
  return std::nullopt;
}

}  // namespace zt::waypoint
