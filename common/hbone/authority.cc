#include "common/hbone/authority.h"

#include <fmt/format.h>

namespace zt::hbone {

std::string Authority::to_string() const {
  if (ip) return net::format_endpoint(tcp::endpoint(*ip, port));
  return fmt::format("{}:{}", host, port);
}

Result<Authority> parse_authority(std::string_view text) {
  if (text.empty()) return fail("empty authority");
  if (text.front() == '[') {
    auto endpoint = net::parse_endpoint(text);
    if (!endpoint) return tl::unexpected(endpoint.error());
    if (endpoint->port() == 0) return failf("authority {} has port 0", net::quote(text));
    return Authority{.ip = endpoint->address(), .host = {}, .port = endpoint->port()};
  }
  auto colon = text.rfind(':');
  if (colon == std::string_view::npos) {
    return failf("authority {} has no port (expected host:port)", net::quote(text));
  }
  auto host = text.substr(0, colon);
  if (host.find(':') != std::string_view::npos) {
    return failf("authority {}: an IPv6 address needs brackets, [ip]:port", net::quote(text));
  }
  auto port = net::parse_port(text.substr(colon + 1));
  if (!port) return failf("authority {}: {}", net::quote(text), port.error().message);
  if (*port == 0) return failf("authority {} has port 0", net::quote(text));

  if (auto ip = net::parse_ip(host)) return Authority{.ip = *ip, .host = {}, .port = *port};
  if (auto valid = net::validate_hostname(host); !valid) {
    return failf("authority {}: {}", net::quote(text), valid.error().message);
  }
  return Authority{.ip = std::nullopt, .host = std::string(host), .port = *port};
}

}  // namespace zt::hbone
