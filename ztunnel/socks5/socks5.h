// SOCKS5 (RFC 1928) wire format, as far as ztunnel needs it: the no-authentication method and
// the CONNECT command, to IPv4, IPv6 and domain-name destinations. Pure and incremental: the
// listener feeds whatever bytes it has; `nullopt` means "read more". No sockets here, so the
// parser is unit-tested byte by byte and fuzzed.
//
// Exchange: client greeting -> make_method_reply(); client request -> make_connect_reply().
// Every parse error carries, in Error::code, the reply code to send (reply_for()).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <system_error>
#include <utility>
#include <variant>
#include <vector>

#include "common/base/result.h"
#include "common/net/address.h"

namespace zt::socks5 {

inline constexpr uint8_t kVersion = 5;
inline constexpr uint8_t kMethodNoAuth = 0x00;
inline constexpr uint8_t kMethodNoneAcceptable = 0xff;
inline constexpr uint8_t kCommandConnect = 0x01;
inline constexpr uint8_t kAddressIpv4 = 0x01;
inline constexpr uint8_t kAddressDomain = 0x03;
inline constexpr uint8_t kAddressIpv6 = 0x04;

enum class Reply : uint8_t {
  kSucceeded = 0x00,
  kGeneralFailure = 0x01,
  kNotAllowed = 0x02,
  kNetworkUnreachable = 0x03,
  kHostUnreachable = 0x04,
  kConnectionRefused = 0x05,
  kTtlExpired = 0x06,
  kCommandNotSupported = 0x07,
  kAddressTypeNotSupported = 0x08,
};

// Errors from this parser use this category; the value is a Reply.
const std::error_category& reply_category();
std::error_code make_error_code(Reply reply);

// The reply code to send for a failed parse; kGeneralFailure for errors from elsewhere.
Reply reply_for(const Error& error);

struct Greeting {
  std::vector<uint8_t> methods{};  // as offered; always contains kMethodNoAuth
  size_t consumed = 0;           // bytes of the greeting (2 + methods.size())
};

// Fails when the version is not 5 or no-auth is not offered; the listener then sends
// make_method_reply(false) and closes.
Result<std::optional<Greeting>> parse_greeting(std::span<const uint8_t> bytes);

struct Request {
  // A domain name that is an IP literal is stored as the address.
  std::variant<asio::ip::address, std::string> host{};
  uint16_t port = 0;

  friend bool operator==(const Request&, const Request&) = default;
};

// `bytes` starts right after the greeting. Fails on a bad version, a command other than
// CONNECT (kCommandNotSupported), an unknown address type (kAddressTypeNotSupported) or an
// invalid domain name (kHostUnreachable).
Result<std::optional<std::pair<Request, size_t /*consumed*/>>> parse_request(
    std::span<const uint8_t> bytes);

// {5, 0x00} when accepted, {5, 0xff} when no offered method is acceptable.
std::array<uint8_t, 2> make_method_reply(bool accepted);

// VER REP RSV ATYP BND.ADDR BND.PORT. `bound` is the proxy's local address of the upstream
// connection when known; clients ignore it, so 0.0.0.0:0 is the default.
std::vector<uint8_t> make_connect_reply(Reply reply, const tcp::endpoint& bound = {});

}  // namespace zt::socks5

template <>
struct std::is_error_code_enum<zt::socks5::Reply> : std::true_type {};
