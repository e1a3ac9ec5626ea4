// ASCII string helpers for HTTP: header names and tokens are ASCII and compare case-insensitively.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace zt::waypoint {

inline char ascii_lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }

bool iequals(std::string_view a, std::string_view b);
std::string to_lower(std::string_view s);
// Strips spaces and horizontal tabs (HTTP optional whitespace) at both ends.
std::string_view trim_ows(std::string_view s);
// "a, b ,c" -> {"a","b","c"}; empty elements are kept as "" (callers decide what they mean).
std::vector<std::string_view> split_list(std::string_view s, char sep = ',');
bool starts_with_icase(std::string_view s, std::string_view prefix);
// The value of a hexadecimal digit, -1 for any other character.
int hex_digit_value(char c);
// Percent-decodes (%XX, any case); a malformed escape is kept as is, '+' stays '+'.
std::string percent_decode(std::string_view s);
// The first value of query parameter `name` in `query` (the part after '?'): names compared after
// decoding, case-sensitive; the value decoded ("" for "name" without '='); nullopt when absent.
std::optional<std::string> query_value(std::string_view query, std::string_view name);
// Appends `v` in decimal, or in lower-case hexadecimal (chunk sizes), without a format string.
void append_decimal(std::string& out, uint64_t v);
void append_hex(std::string& out, uint64_t v);

}  // namespace zt::waypoint
