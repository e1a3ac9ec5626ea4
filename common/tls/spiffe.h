// SPIFFE identities as Istio uses them: spiffe://<trust domain>/ns/<namespace>/sa/<service account>.
#pragma once

#include <compare>
#include <cstddef>
#include <iosfwd>
#include <string>
#include <string_view>

#include "common/base/result.h"

namespace zt::tls {

struct SpiffeId {
  std::string trust_domain;
  std::string ns;
  std::string sa;

  // Accepts exactly "spiffe://<td>/ns/<ns>/sa/<sa>" with non-empty parts made of letters, digits,
  // '.', '-' and '_' (the SPIFFE path-segment alphabet, which every Kubernetes namespace and
  // service account name fits). Anything else is an error naming what is wrong.
  static Result<SpiffeId> parse(std::string_view uri);

  // Checks a trust domain on its own (e.g. a --trust-domain flag) with the same rules.
  static Status check_trust_domain(std::string_view trust_domain);

  // "spiffe://td/ns/N/sa/S"
  std::string uri() const;
  // "td/ns/N/sa/S": the form Istio's authorization policies call a principal.
  std::string principal() const;

  friend bool operator==(const SpiffeId&, const SpiffeId&) = default;
  // Ordered so it can key a std::map (the certificate manager, config dumps sorted by identity).
  friend auto operator<=>(const SpiffeId&, const SpiffeId&) = default;
};

// Writes uri(); lets gtest and streams print ids readably.
std::ostream& operator<<(std::ostream& os, const SpiffeId& id);

struct SpiffeIdHash {
  size_t operator()(const SpiffeId& id) const noexcept;
};

inline constexpr std::string_view kSpiffeScheme = "spiffe://";

}  // namespace zt::tls

template <>
struct fmt::formatter<zt::tls::SpiffeId> : fmt::formatter<std::string_view> {
  template <class Ctx>
  auto format(const zt::tls::SpiffeId& id, Ctx& ctx) const {
    return fmt::formatter<std::string_view>::format(id.uri(), ctx);
  }
};
