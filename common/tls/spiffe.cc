#include "common/tls/spiffe.h"

#include <array>
#include <functional>
#include <ostream>

namespace zt::tls {
namespace {

bool segment_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-' ||
         c == '_';
}

// Empty, "." and ".." are not valid SPIFFE path segments (they would not survive URI
// normalisation), and the alphabet keeps a SAN free of characters that need escaping.
Status check_segment(std::string_view what, std::string_view s) {
  if (s.empty()) return failf("{} is empty", what);
  if (s == "." || s == "..") return failf("{} '{}' is not allowed", what, s);
  for (char c : s) {
    if (!segment_char(c)) {
      if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) {
        return failf("{} contains a non-printable character (0x{:02x})", what, static_cast<unsigned char>(c));
      }
      return failf("{} '{}' contains '{}' (allowed: letters, digits, '.', '-', '_')", what, s, c);
    }
  }
  return {};
}

// Quotes the input in error messages without letting control bytes into the log.
std::string printable(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 200)) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u >= 0x7f) {
      out += fmt::format("\\x{:02x}", u);
    } else {
      out += c;
    }
  }
  if (s.size() > 200) out += "...";
  return out;
}

}  // namespace

Result<SpiffeId> SpiffeId::parse(std::string_view uri) {
  auto bad = [&](const std::string& why) {
    return failf(
        "invalid SPIFFE id '{}': {} (want spiffe://<trust domain>/ns/<namespace>/sa/<service account>)",
        printable(uri), why);
  };
  if (!uri.starts_with(kSpiffeScheme)) return bad("does not start with spiffe://");
  std::string_view rest = uri.substr(kSpiffeScheme.size());

  std::array<std::string_view, 5> parts;
  size_t n = 0;
  while (true) {
    size_t slash = rest.find('/');
    if (n == parts.size()) return bad("has more than 5 '/'-separated parts after spiffe://");
    parts[n++] = rest.substr(0, slash);
    if (slash == std::string_view::npos) break;
    rest.remove_prefix(slash + 1);
  }
  if (n != parts.size()) return bad(fmt::format("has {} '/'-separated parts after spiffe://, want 5", n));
  if (parts[1] != "ns") return bad(fmt::format("second part is '{}', want 'ns'", printable(parts[1])));
  if (parts[3] != "sa") return bad(fmt::format("fourth part is '{}', want 'sa'", printable(parts[3])));

  if (auto s = check_trust_domain(parts[0]); !s) return bad(s.error().message);
  if (auto s = check_segment("namespace", parts[2]); !s) return bad(s.error().message);
  if (auto s = check_segment("service account", parts[4]); !s) return bad(s.error().message);
  return SpiffeId{std::string(parts[0]), std::string(parts[2]), std::string(parts[4])};
}

Status SpiffeId::check_trust_domain(std::string_view trust_domain) {
  return check_segment("trust domain", trust_domain);
}

std::string SpiffeId::uri() const { return fmt::format("{}{}", kSpiffeScheme, principal()); }

std::string SpiffeId::principal() const { return fmt::format("{}/ns/{}/sa/{}", trust_domain, ns, sa); }

std::ostream& operator<<(std::ostream& os, const SpiffeId& id) { return os << id.uri(); }

size_t SpiffeIdHash::operator()(const SpiffeId& id) const noexcept {
  std::hash<std::string> h;
  size_t seed = h(id.trust_domain);
  // Boost's hash_combine mixing, so ("a","bc") and ("ab","c") land apart.
  for (const auto* s : {&id.ns, &id.sa}) seed ^= h(*s) + 0x9e3779b97f4a7c15ULL + (seed << 6) + (seed >> 2);
  return seed;
}

}  // namespace zt::tls
