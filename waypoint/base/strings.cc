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

}  // namespace zt::waypoint
