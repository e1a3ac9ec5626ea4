#include "common/net/address.h"

#include <algorithm>
#include <array>

#include <fmt/format.h>

namespace zt::net {
namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }

bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

bool is_hex(char c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

}  // namespace

std::string quote(std::string_view text) {
  constexpr size_t kMaxShown = 64;
  std::string out = "\"";
  for (size_t i = 0; i < text.size() && i < kMaxShown; ++i) {
    auto c = static_cast<unsigned char>(text[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c >= 0x7f) {
      out += fmt::format("\\x{:02x}", c);
    } else {
      out += static_cast<char>(c);
    }
  }
  if (text.size() > kMaxShown) out += "...";
  out += '"';
  return out;
}

Result<asio::ip::address> parse_ip(std::string_view text) {
  // Asio accepts zone ids ("fe80::1%eth0") and reads up to the first NUL of a C string; only
  // hand it characters that can appear in a plain address.
  bool plausible = !text.empty() && text.size() <= 45 &&
                   std::all_of(text.begin(), text.end(),
                               [](char c) { return is_hex(c) || c == '.' || c == ':'; });
  if (plausible) {
    boost::system::error_code ec;
    auto address = asio::ip::make_address(std::string(text), ec);
    if (!ec) return address;
  }
  return failf("{} is not an IP address", quote(text));
}

Result<uint16_t> parse_port(std::string_view text) {
  if (text.empty() || text.size() > 5 || !std::all_of(text.begin(), text.end(), is_digit)) {
    return failf("{} is not a port number", quote(text));
  }
  if (text.size() > 1 && text[0] == '0') {
    return failf("{} is not a port number (leading zero)", quote(text));
  }
  uint32_t value = 0;
  for (char c : text) value = value * 10 + static_cast<uint32_t>(c - '0');
  if (value > 65535) return failf("port {} is out of range (0-65535)", text);
  return static_cast<uint16_t>(value);
}

Result<tcp::endpoint> parse_endpoint(std::string_view text) {
  std::string_view host;
  std::string_view port;
  bool bracketed = !text.empty() && text.front() == '[';
  if (bracketed) {
    auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return failf("{} is not an address: expected [ipv6]:port", quote(text));
    }
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos) {
      return failf("{} is not an address: expected ip:port", quote(text));
    }
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      return failf("{} is not an address: an IPv6 address with a port needs brackets, [ip]:port",
                   quote(text));
    }
  }
  auto ip = parse_ip(host);
  if (!ip) return failf("{} is not an address: {}", quote(text), ip.error().message);
  if (bracketed != ip->is_v6()) {
    return failf("{} is not an address: only IPv6 addresses go in brackets", quote(text));
  }
  auto p = parse_port(port);
  if (!p) return failf("{} is not an address: {}", quote(text), p.error().message);
  return tcp::endpoint(*ip, *p);
}

std::string format_endpoint(const tcp::endpoint& endpoint) {
  const auto& ip = endpoint.address();
  if (ip.is_v6()) return fmt::format("[{}]:{}", ip.to_string(), endpoint.port());
  return fmt::format("{}:{}", ip.to_string(), endpoint.port());
}

asio::ip::address unmap(const asio::ip::address& address) {
  if (address.is_v6() && address.to_v6().is_v4_mapped()) {
    return asio::ip::make_address_v4(asio::ip::v4_mapped, address.to_v6());
  }
  return address;
}

Status validate_hostname(std::string_view name) {
  if (name.empty()) return fail("empty host name");
  if (name.size() > 253) return failf("host name is {} characters long (at most 253)", name.size());
  size_t start = 0;
  bool last_all_digits = false;
  while (true) {
    size_t dot = name.find('.', start);
    std::string_view label =
        name.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    if (label.empty()) return failf("host name {} has an empty label", quote(name));
    if (label.size() > 63) {
      return failf("host name {} has a label longer than 63 characters", quote(name));
    }
    for (char c : label) {
      if (!is_alpha(c) && !is_digit(c) && c != '-') {
        return failf("host name {} has a character that is not a letter, digit, '-' or '.'",
                     quote(name));
      }
    }
    if (label.front() == '-' || label.back() == '-') {
      return failf("host name {} has a label starting or ending with '-'", quote(name));
    }
    last_all_digits = std::all_of(label.begin(), label.end(), is_digit);
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  if (last_all_digits) {
    return failf("{} is neither an IP address nor a host name (its last label is a number)",
                 quote(name));
  }
  return {};
}

Result<Cidr> Cidr::parse(std::string_view text) {
  auto slash = text.find('/');
  auto ip = parse_ip(text.substr(0, slash));
  if (!ip) return failf("{} is not a CIDR: {}", quote(text), ip.error().message);
  uint8_t max_prefix = ip->is_v4() ? 32 : 128;
  if (slash == std::string_view::npos) return Cidr{*ip, max_prefix};
  auto digits = text.substr(slash + 1);
  if (digits.empty() || digits.size() > 3 || !std::all_of(digits.begin(), digits.end(), is_digit) ||
      (digits.size() > 1 && digits[0] == '0')) {
    return failf("{} is not a CIDR: bad prefix length", quote(text));
  }
  unsigned value = 0;
  for (char c : digits) value = value * 10 + static_cast<unsigned>(c - '0');
  if (value > max_prefix) {
    return failf("{} is not a CIDR: prefix length {} is more than {}", quote(text), value,
                 max_prefix);
  }
  return Cidr{*ip, static_cast<uint8_t>(value)};
}

bool Cidr::contains(const asio::ip::address& candidate) const {
  auto ip = unmap(candidate);
  auto net = unmap(address);
  // An IPv4 network written as v4-mapped keeps its prefix relative to 128 bits.
  unsigned prefix_bits = prefix;
  if (address.is_v6() && net.is_v4()) prefix_bits = prefix >= 96 ? prefix - 96u : 0u;
  if (ip.is_v4() != net.is_v4()) return false;

  auto bits_equal = [prefix_bits](const auto& a, const auto& b) {
    unsigned full = prefix_bits / 8;
    for (unsigned i = 0; i < full; ++i) {
      if (a[i] != b[i]) return false;
    }
    unsigned rest = prefix_bits % 8;
    if (rest == 0) return true;
    auto mask = static_cast<uint8_t>(0xff << (8 - rest));
    return (a[full] & mask) == (b[full] & mask);
  };
  if (ip.is_v4()) return bits_equal(ip.to_v4().to_bytes(), net.to_v4().to_bytes());
  return bits_equal(ip.to_v6().to_bytes(), net.to_v6().to_bytes());
}

std::string Cidr::to_string() const {
  return fmt::format("{}/{}", address.to_string(), static_cast<unsigned>(prefix));
}

}  // namespace zt::net
