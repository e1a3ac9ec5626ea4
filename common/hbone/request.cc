#include "common/hbone/request.h"

#include <algorithm>

#include <fmt/format.h>

namespace zt::hbone {

ConnectDecision check_connect_request(const ConnectRequest& request,
                                      const asio::ip::address& arrived_at) {
  if (request.method != "CONNECT") {
    return {kStatusBadRequest, fmt::format("method {} is not CONNECT", net::quote(request.method)),
            {}};
  }
  auto authority = parse_authority(request.authority);
  if (!authority) {
    return {kStatusBadRequest, fmt::format("malformed authority: {}", authority.error().message),
            {}};
  }
  // Hostname authorities name a service; which pod serves it is the router's business.
  if (authority->ip && net::unmap(*authority->ip) != net::unmap(arrived_at)) {
    return {kStatusBadRequest,
            fmt::format("ip mismatch: {} != {}", net::unmap(arrived_at).to_string(),
                        authority->ip->to_string()),
            {}};
  }
  return {kStatusOk, {}, std::move(*authority)};
}

std::optional<std::string_view> find_header(const ConnectRequest& request, std::string_view name) {
  auto lower = [](char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; };
  for (const auto& [key, value] : request.headers) {
    if (key.size() == name.size() &&
        std::equal(key.begin(), key.end(), name.begin(),
                   [&](char a, char b) { return lower(a) == lower(b); })) {
      return std::string_view(value);
    }
  }
  return std::nullopt;
}

}  // namespace zt::hbone
