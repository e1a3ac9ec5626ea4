#include "waypoint/server/binding.h"

#include <fmt/format.h>

#include "common/hbone/request.h"
#include "common/net/address.h"
#include "waypoint/http2/http2.h"

namespace zt::waypoint::server {
namespace {

bool is_tchar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

// Visible ASCII, as a request target may contain.
bool is_target_char(char c) { return c > 0x20 && c < 0x7f; }

std::string gateway_text(const std::optional<zt::state::GatewayAddress>& gw) {
  if (!gw) return "no waypoint";
  if (const auto* addr = std::get_if<zt::state::NetworkAddress>(&gw->destination)) {
    return "waypoint " + addr->to_string();
  }
  return "waypoint " + std::get<zt::state::NamespacedHostname>(gw->destination).to_string();
}

}  // namespace

Sniffed sniff(std::string_view bytes, bool complete) {
  if (bytes.empty()) return complete ? Sniffed::kOther : Sniffed::kNeedMore;
  const std::string_view preface = http2::kClientPreface;
  if (bytes.size() >= preface.size()) {
    if (bytes.starts_with(preface)) return Sniffed::kHttp2;
  } else if (preface.starts_with(bytes)) {
    return complete ? Sniffed::kOther : Sniffed::kNeedMore;
  }
  // method SP request-target SP "HTTP/1." DIGIT CRLF
  size_t i = 0;
  while (i < bytes.size() && i <= 32 && is_tchar(bytes[i])) ++i;
  if (i == bytes.size()) return (complete || i > 32) ? Sniffed::kOther : Sniffed::kNeedMore;
  if (i == 0 || i > 32 || bytes[i] != ' ') return Sniffed::kOther;
  size_t target = ++i;
  while (i < bytes.size() && is_target_char(bytes[i])) ++i;
  // A request line in progress: once the method is known the rest belongs to the HTTP codec
  // (which answers an over-long or stalled line), never to a raw TCP relay that would bypass
  // L7 policy.
  if (i == bytes.size()) {
    if (complete || bytes.size() >= kMaxSniffBytes) {
      return i > target ? Sniffed::kHttp1 : Sniffed::kOther;
    }
    return Sniffed::kNeedMore;
  }
  if (i == target || bytes[i] != ' ') return Sniffed::kOther;
  auto rest = bytes.substr(i + 1);
  constexpr std::string_view kVersion = "HTTP/1.";
  auto have = std::min(rest.size(), kVersion.size());
  if (rest.substr(0, have) != kVersion.substr(0, have)) return Sniffed::kOther;
  if (rest.size() <= kVersion.size()) return complete ? Sniffed::kHttp1 : Sniffed::kNeedMore;
  char digit = rest[kVersion.size()];
  if (digit != '0' && digit != '1') return Sniffed::kOther;
  return Sniffed::kHttp1;
}

Binding bind_target(const zt::state::State& state, const proxy::Self& self,
                    const asio::ip::address& raw_ip, uint16_t port, std::string_view network) {
  Binding b;
  auto ip = net::unmap(raw_ip);
  auto self_name = fmt::format("{}/{}", self.namespace_name, self.name);
  if (auto svc = state.find_service(network, ip)) {
    if (!svc->waypoint || !self.is(*svc->waypoint)) {
      b.status = hbone::kStatusUnauthorized;
      b.reason = fmt::format("service {} at {} uses {}, not waypoint {}", svc->key(),
                             ip.to_string(), gateway_text(svc->waypoint), self_name);
      return b;
    }
    if (!svc->ports.empty() && svc->ports.count(port) == 0) {
      b.status = hbone::kStatusServiceUnavailable;
      b.reason = fmt::format("service {} has no port {}", svc->key(), port);
      return b;
    }
    b.service = std::move(svc);
    return b;
  }
  if (auto w = state.find_workload(network, ip)) {
    if (!w->waypoint || !self.is(*w->waypoint)) {
      b.status = hbone::kStatusUnauthorized;
      b.reason = fmt::format("workload {}/{} at {} uses {}, not waypoint {}", w->namespace_name,
                             w->name, ip.to_string(), gateway_text(w->waypoint), self_name);
      return b;
    }
    b.workload = std::move(w);
    return b;
  }
  b.status = hbone::kStatusServiceUnavailable;
  b.reason = fmt::format("no service or workload at {}", ip.to_string());
  return b;
}

}  // namespace zt::waypoint::server
