// The inbound checks on an HBONE CONNECT request that need no state (DESIGN §4): the method, the
// authority's syntax, and that an IP authority names the pod the stream arrived at. What the
// target is (unknown workload, self call, app refused) is decided later with the workload state
// (ztunnel/state/routing.h) and answered 503; policy denials are 401.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/hbone/authority.h"
#include "common/net/address.h"

namespace zt::hbone {

inline constexpr uint16_t kHbonePort = 15008;

inline constexpr int kStatusOk = 200;
inline constexpr int kStatusBadRequest = 400;
inline constexpr int kStatusUnauthorized = 401;
inline constexpr int kStatusServiceUnavailable = 503;

// A request as the HTTP/2 layer saw it. Header names are lower case (HTTP/2 requires it).
struct ConnectRequest {
  std::string method{};
  std::string authority{};
  std::vector<std::pair<std::string, std::string>> headers{};
};

struct ConnectDecision {
  int status = kStatusBadRequest;  // kStatusOk or kStatusBadRequest
  std::string reason{};              // empty when accepted
  Authority authority{};             // parsed authority when accepted
};

// `arrived_at` is the local address of the TCP connection that carries the stream: the pod IP.
// v4-mapped addresses compare equal to their IPv4 form.
ConnectDecision check_connect_request(const ConnectRequest& request,
                                      const asio::ip::address& arrived_at);

// The first header called `name` (compared without case), if any.
std::optional<std::string_view> find_header(const ConnectRequest& request, std::string_view name);

}  // namespace zt::hbone
