// The `:authority` of an HBONE CONNECT request: "10.0.0.1:80", "[::1]:80" (IPv6 always in
// brackets) or "name.ns.svc.cluster.local:80". Pure parsing, safe on untrusted input.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/base/result.h"
#include "common/net/address.h"

namespace zt::hbone {

struct Authority {
  // Set for IP authorities; `host` is then empty.
  std::optional<asio::ip::address> ip{};
  // Set for hostname authorities (a service host name); `ip` is then empty.
  std::string host{};
  // 1-65535: an authority always names a real destination port.
  uint16_t port = 0;

  // The wire form, the inverse of parse_authority().
  std::string to_string() const;

  friend bool operator==(const Authority&, const Authority&) = default;
};

// Rejects: empty input, a missing or zero port, ports with signs or leading zeros, IPv6 without
// brackets, IPv4 in brackets, zone ids, characters outside host names, and names whose last
// label is numeric (an IPv4 address with leading zeros or too few parts).
Result<Authority> parse_authority(std::string_view text);

}  // namespace zt::hbone
