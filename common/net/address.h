// Text <-> address helpers shared by config parsing, HBONE authorities, SOCKS5 and the workload
// state. Everything here is pure (no sockets), strict, and returns errors as values so it can be
// used on untrusted input and fuzzed.
//
// Strictness on purpose: an address either has exactly one meaning or is rejected. IPv4 is the
// dotted quad without leading zeros ("010.0.0.1" is octal to some parsers, decimal to others),
// IPv6 never carries a zone id (a zone is local to one host and has no meaning in config or on
// the wire), and an IPv6 address with a port is always bracketed.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "common/base/result.h"

namespace zt {
// The same aliases as common/async/asio.h, repeated here so pure code does not pull in the
// whole of Asio (redeclaring an alias to the same entity is allowed).
namespace asio = boost::asio;
using tcp = asio::ip::tcp;
}  // namespace zt

namespace zt::net {

// "10.0.0.1" or "::1" (no brackets, no zone id).
Result<asio::ip::address> parse_ip(std::string_view text);

// Decimal 0-65535, digits only, no leading zeros ("080" is rejected).
Result<uint16_t> parse_port(std::string_view text);

// "10.0.0.1:80" or "[::1]:80". Port 0 is accepted (listeners bind port 0 in tests); callers
// that need a real destination port check it themselves.
Result<tcp::endpoint> parse_endpoint(std::string_view text);

// "10.0.0.1:80" / "[::1]:80": the inverse of parse_endpoint.
std::string format_endpoint(const tcp::endpoint& endpoint);

// A v4-mapped IPv6 address (::ffff:a.b.c.d, what a dual-stack socket reports for IPv4 peers)
// as the IPv4 address it stands for; any other address unchanged. Compare addresses after this.
asio::ip::address unmap(const asio::ip::address& address);

// A DNS name as used in authorities and SOCKS5 requests: 1-253 characters, dot-separated labels
// of 1-63 letters, digits and hyphens, no hyphen at either end of a label, no trailing dot, and
// a last label that is not all digits (so "1.2.3" or "010.0.0.1" are never taken as names).
Status validate_hostname(std::string_view name);

// `text` in double quotes with control and non-ASCII bytes escaped, cut at 64 characters:
// safe to put untrusted input into an error message or a log line.
std::string quote(std::string_view text);

// An address block: "10.0.0.0/8", "fd00::/64"; a bare address is a /32 or /128.
struct Cidr {
  asio::ip::address address{};
  uint8_t prefix = 0;

  static Result<Cidr> parse(std::string_view text);

  // True when `ip` (after unmap) is of the same family and its first `prefix` bits equal
  // those of `address`. Host bits set in `address` are ignored.
  bool contains(const asio::ip::address& ip) const;

  std::string to_string() const;

  friend bool operator==(const Cidr&, const Cidr&) = default;
};

}  // namespace zt::net
