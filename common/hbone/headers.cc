#include "common/hbone/headers.h"

#include <array>
#include <utility>
#include <vector>

#include <fmt/format.h>

namespace zt::hbone {
namespace {

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Splits on `sep` outside double-quoted strings (which may contain backslash escapes).
std::vector<std::string_view> split_outside_quotes(std::string_view s, char sep) {
  std::vector<std::string_view> parts;
  bool quoted = false;
  size_t start = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (quoted && c == '\\') {
      ++i;
    } else if (c == '"') {
      quoted = !quoted;
    } else if (!quoted && c == sep) {
      parts.push_back(s.substr(start, i - start));
      start = i + 1;
    }
  }
  parts.push_back(s.substr(start));
  return parts;
}

// The value of a forwarded parameter: a token, or a quoted-string with escapes removed.
std::optional<std::string> unquote(std::string_view v) {
  if (v.empty() || v.front() != '"') return std::string(v);
  if (v.size() < 2 || v.back() != '"') return std::nullopt;
  std::string out;
  for (size_t i = 1; i + 1 < v.size(); ++i) {
    if (v[i] == '\\') {
      if (i + 2 >= v.size()) return std::nullopt;
      ++i;
    }
    out += v[i];
  }
  return out;
}

// The value of parameter `name` in the first forwarded element.
std::optional<std::string> forwarded_param(std::string_view value, std::string_view name) {
  auto first = split_outside_quotes(value, ',').front();
  for (auto pair : split_outside_quotes(first, ';')) {
    pair = trim(pair);
    auto eq = pair.find('=');
    if (eq == std::string_view::npos) continue;
    if (iequals(trim(pair.substr(0, eq)), name)) return unquote(trim(pair.substr(eq + 1)));
  }
  return std::nullopt;
}

void append_hex(std::string& out, uint64_t value, int digits) {
  static constexpr char kHex[] = "0123456789abcdef";
  for (int shift = (digits - 1) * 4; shift >= 0; shift -= 4) out += kHex[(value >> shift) & 0xf];
}

bool is_lower_hex(std::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

bool all_zero(std::string_view s) { return s.find_first_not_of('0') == std::string_view::npos; }

// W3C baggage value octets: printable ASCII except space, '"', ',', ';', '\' and '%'
// (which starts an escape).
bool baggage_safe(unsigned char c) {
  return c > 0x20 && c < 0x7f && c != '"' && c != ',' && c != ';' && c != '\\' && c != '%';
}

std::string percent_encode(std::string_view s) {
  std::string out;
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if (baggage_safe(c)) {
      out += ch;
    } else {
      out += fmt::format("%{:02X}", c);
    }
  }
  return out;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  c = lower(c);
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

std::string percent_decode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      int hi = hex_value(s[i + 1]);
      int lo = hex_value(s[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out += static_cast<char>(hi * 16 + lo);
        i += 2;
        continue;
      }
    }
    out += s[i];
  }
  return out;
}

constexpr std::array<std::string_view, 4> kWorkloadTypes = {"deployment", "cronjob", "pod", "job"};

}  // namespace

std::string make_forwarded(const tcp::endpoint& client, std::string_view service_host) {
  std::string out = fmt::format("for=\"{}\"", net::format_endpoint(client));
  if (!service_host.empty()) {
    if (net::validate_hostname(service_host)) {
      out += fmt::format(";host={}", service_host);
    } else {
      out += fmt::format(";host=\"{}\"", service_host);
    }
  }
  return out;
}

std::optional<tcp::endpoint> parse_forwarded_for(std::string_view value) {
  auto node = forwarded_param(value, "for");
  if (!node || node->empty()) return std::nullopt;
  if (auto endpoint = net::parse_endpoint(*node)) return *endpoint;
  // RFC 7239 also allows a node without a port: "10.0.0.1" or "[::1]".
  std::string_view bare = *node;
  if (bare.size() > 2 && bare.front() == '[' && bare.back() == ']') {
    auto ip = net::parse_ip(bare.substr(1, bare.size() - 2));
    if (ip && ip->is_v6()) return tcp::endpoint(*ip, 0);
    return std::nullopt;
  }
  auto ip = net::parse_ip(bare);
  if (ip && ip->is_v4()) return tcp::endpoint(*ip, 0);
  return std::nullopt;
}

std::optional<std::string> parse_forwarded_host(std::string_view value) {
  auto host = forwarded_param(value, "host");
  if (!host || host->empty()) return std::nullopt;
  return host;
}

std::string make_traceparent(std::mt19937_64& rng) {
  uint64_t trace_hi = rng();
  uint64_t trace_lo = rng();
  uint64_t parent = rng();
  // All-zero ids are invalid in W3C trace context.
  if (trace_hi == 0 && trace_lo == 0) trace_lo = 1;
  if (parent == 0) parent = 1;
  std::string out = "00-";
  out.reserve(55);
  append_hex(out, trace_hi, 16);
  append_hex(out, trace_lo, 16);
  out += '-';
  append_hex(out, parent, 16);
  out += "-00";
  return out;
}

bool is_valid_traceparent(std::string_view v) {
  if (v.size() != 55 || v[2] != '-' || v[35] != '-' || v[52] != '-') return false;
  auto version = v.substr(0, 2);
  auto trace_id = v.substr(3, 32);
  auto parent_id = v.substr(36, 16);
  auto flags = v.substr(53, 2);
  return is_lower_hex(version) && version != "ff" && is_lower_hex(trace_id) &&
         !all_zero(trace_id) && is_lower_hex(parent_id) && !all_zero(parent_id) &&
         is_lower_hex(flags);
}

std::string make_baggage(const BaggageFields& f) {
  std::string type = f.workload_type.empty() ? "deployment" : f.workload_type;
  std::string workload_key = fmt::format("k8s.{}.name", type);
  const std::pair<std::string_view, const std::string*> entries[] = {
      {"k8s.cluster.name", &f.cluster},
      {"k8s.namespace.name", &f.namespace_name},
      {workload_key, &f.workload_name},
      {"service.name", &f.service_name},
      {"service.version", &f.service_version},
      {"cloud.region", &f.region},
      {"cloud.availability_zone", &f.zone},
  };
  std::string out;
  for (const auto& [key, value] : entries) {
    if (value->empty()) continue;
    if (!out.empty()) out += ',';
    out += percent_encode(key);
    out += '=';
    out += percent_encode(*value);
  }
  return out;
}

BaggageFields parse_baggage(std::string_view value) {
  BaggageFields f;
  size_t start = 0;
  while (start <= value.size()) {
    size_t comma = value.find(',', start);
    auto member = value.substr(start, comma == std::string_view::npos ? value.size() - start
                                                                       : comma - start);
    start = comma == std::string_view::npos ? value.size() + 1 : comma + 1;
    member = member.substr(0, member.find(';'));  // properties are not used
    auto eq = member.find('=');
    if (eq == std::string_view::npos) continue;
    auto key = trim(member.substr(0, eq));
    auto val = percent_decode(trim(member.substr(eq + 1)));
    if (key == "k8s.cluster.name") {
      f.cluster = val;
    } else if (key == "k8s.namespace.name") {
      f.namespace_name = val;
    } else if (key == "service.name") {
      f.service_name = val;
    } else if (key == "service.version") {
      f.service_version = val;
    } else if (key == "cloud.region") {
      f.region = val;
    } else if (key == "cloud.availability_zone") {
      f.zone = val;
    } else {
      for (auto type : kWorkloadTypes) {
        if (key.size() == type.size() + 9 && key.substr(0, 4) == "k8s." &&
            key.substr(4, type.size()) == type && key.substr(4 + type.size()) == ".name") {
          f.workload_type = std::string(type);
          f.workload_name = val;
        }
      }
    }
  }
  return f;
}

}  // namespace zt::hbone
