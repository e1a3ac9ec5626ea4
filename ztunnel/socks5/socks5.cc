#include "ztunnel/socks5/socks5.h"

#include <algorithm>

#include <fmt/format.h>

namespace zt::socks5 {
namespace {

class ReplyCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "socks5"; }
  std::string message(int value) const override {
    switch (static_cast<Reply>(value)) {
      case Reply::kSucceeded: return "succeeded";
      case Reply::kGeneralFailure: return "general SOCKS server failure";
      case Reply::kNotAllowed: return "connection not allowed by ruleset";
      case Reply::kNetworkUnreachable: return "network unreachable";
      case Reply::kHostUnreachable: return "host unreachable";
      case Reply::kConnectionRefused: return "connection refused";
      case Reply::kTtlExpired: return "TTL expired";
      case Reply::kCommandNotSupported: return "command not supported";
      case Reply::kAddressTypeNotSupported: return "address type not supported";
    }
    return fmt::format("socks5 reply {}", value);
  }
};

tl::unexpected<Error> fail_with(Reply reply, std::string message) {
  return fail(make_error_code(reply), std::move(message));
}

}  // namespace

const std::error_category& reply_category() {
  static const ReplyCategory category;
  return category;
}

std::error_code make_error_code(Reply reply) {
  return {static_cast<int>(reply), reply_category()};
}

Reply reply_for(const Error& error) {
  if (error.code.category() == reply_category()) return static_cast<Reply>(error.code.value());
  return Reply::kGeneralFailure;
}

Result<std::optional<Greeting>> parse_greeting(std::span<const uint8_t> bytes) {
  if (bytes.empty()) return std::nullopt;
  if (bytes[0] != kVersion) {
    return fail_with(Reply::kGeneralFailure,
                     fmt::format("socks5 greeting: version {} is not 5", bytes[0]));
  }
  if (bytes.size() < 2) return std::nullopt;
  size_t count = bytes[1];
  if (count == 0) return fail_with(Reply::kGeneralFailure, "socks5 greeting: no methods offered");
  if (bytes.size() < 2 + count) return std::nullopt;
  auto methods = bytes.subspan(2, count);
  if (std::find(methods.begin(), methods.end(), kMethodNoAuth) == methods.end()) {
    return fail_with(Reply::kGeneralFailure,
                     "socks5 greeting: the client does not offer no-authentication (method 0), "
                     "the only method supported");
  }
  return Greeting{{methods.begin(), methods.end()}, 2 + count};
}

Result<std::optional<std::pair<Request, size_t>>> parse_request(std::span<const uint8_t> bytes) {
  // VER CMD RSV ATYP, then the address, then the port (network order).
  if (bytes.empty()) return std::nullopt;
  if (bytes[0] != kVersion) {
    return fail_with(Reply::kGeneralFailure,
                     fmt::format("socks5 request: version {} is not 5", bytes[0]));
  }
  if (bytes.size() < 2) return std::nullopt;
  if (bytes[1] != kCommandConnect) {
    return fail_with(Reply::kCommandNotSupported,
                     fmt::format("socks5 request: command {} is not CONNECT (1)", bytes[1]));
  }
  // bytes[2] is reserved; RFC 1928 gives it no meaning to check, so it is ignored.
  if (bytes.size() < 4) return std::nullopt;
  uint8_t type = bytes[3];
  size_t address_size = 0;
  size_t address_offset = 4;
  switch (type) {
    case kAddressIpv4: address_size = 4; break;
    case kAddressIpv6: address_size = 16; break;
    case kAddressDomain:
      if (bytes.size() < 5) return std::nullopt;
      address_size = bytes[4];
      address_offset = 5;
      if (address_size == 0) {
        return fail_with(Reply::kHostUnreachable, "socks5 request: empty domain name");
      }
      break;
    default:
      return fail_with(Reply::kAddressTypeNotSupported,
                       fmt::format("socks5 request: address type {} is not supported", type));
  }
  size_t total = address_offset + address_size + 2;
  if (bytes.size() < total) return std::nullopt;
  auto address = bytes.subspan(address_offset, address_size);
  uint16_t port = static_cast<uint16_t>((bytes[total - 2] << 8) | bytes[total - 1]);

  Request request;
  request.port = port;
  if (type == kAddressIpv4) {
    asio::ip::address_v4::bytes_type b;
    std::copy(address.begin(), address.end(), b.begin());
    request.host = asio::ip::address(asio::ip::address_v4(b));
  } else if (type == kAddressIpv6) {
    asio::ip::address_v6::bytes_type b;
    std::copy(address.begin(), address.end(), b.begin());
    request.host = asio::ip::address(asio::ip::address_v6(b));
  } else {
    std::string name(address.begin(), address.end());
    // Clients resolving locally (socks5 rather than socks5h) may still send IP literals here.
    if (auto ip = net::parse_ip(name)) {
      request.host = *ip;
    } else if (auto valid = net::validate_hostname(name); !valid) {
      return fail_with(Reply::kHostUnreachable,
                       fmt::format("socks5 request: {}", valid.error().message));
    } else {
      request.host = std::move(name);
    }
  }
  return std::pair{std::move(request), total};
}

std::array<uint8_t, 2> make_method_reply(bool accepted) {
  return {kVersion, accepted ? kMethodNoAuth : kMethodNoneAcceptable};
}

std::vector<uint8_t> make_connect_reply(Reply reply, const tcp::endpoint& bound) {
  std::vector<uint8_t> out = {kVersion, static_cast<uint8_t>(reply), 0x00};
  const auto& ip = bound.address();
  if (ip.is_v6()) {
    out.push_back(kAddressIpv6);
    auto b = ip.to_v6().to_bytes();
    out.insert(out.end(), b.begin(), b.end());
  } else {
    out.push_back(kAddressIpv4);
    auto b = ip.to_v4().to_bytes();
    out.insert(out.end(), b.begin(), b.end());
  }
  out.push_back(static_cast<uint8_t>(bound.port() >> 8));
  out.push_back(static_cast<uint8_t>(bound.port() & 0xff));
  return out;
}

}  // namespace zt::socks5
