#include "waypoint/proxy/context.h"

#include <algorithm>
#include <variant>

#include "waypoint/base/strings.h"

namespace zt::waypoint::proxy {

bool Self::is(const zt::state::GatewayAddress& gw) const {
  if (const auto* addr = std::get_if<zt::state::NetworkAddress>(&gw.destination)) {
    return std::find(ips.begin(), ips.end(), addr->address) != ips.end();
  }
  const auto& host = std::get<zt::state::NamespacedHostname>(gw.destination);
  if (!host.namespace_name.empty() && host.namespace_name != namespace_name) return false;
  return !hostname.empty() && iequals(host.hostname, hostname);
}

}  // namespace zt::waypoint::proxy
