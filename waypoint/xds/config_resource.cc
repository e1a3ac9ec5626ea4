#include "waypoint/xds/config_resource.h"

#include <fmt/format.h>

#include "ambientmesh/waypoint/v1/waypoint.pb.h"
#include "common/base/log.h"

namespace zt::waypoint::xds {

std::string resource_name(std::string_view gateway_namespace, std::string_view gateway_name) {
  return fmt::format("{}/{}", gateway_namespace, gateway_name);
}

WaypointConfigCache::WaypointConfigCache(std::string gateway_namespace, std::string gateway_name)
    : name_(resource_name(gateway_namespace, gateway_name)) {}

std::vector<zt::xds::Rejection> WaypointConfigCache::apply(const zt::xds::DeltaUpdate& update,
                                                           state::ConfigStore& store) {
  std::vector<zt::xds::Rejection> rejected;
  if (update.type_url != kWaypointConfigType) return rejected;
  for (const auto& resource : update.added) {
    if (resource.name != name_) continue;  // another waypoint's configuration
    ambientmesh::waypoint::v1::WaypointConfig message;
    if (resource.body.type_url() != kWaypointConfigType ||
        !zt::xds::parse_body(resource.body, message)) {
      rejected.push_back({resource.name, fmt::format("not a {} (got {})", kWaypointConfigType,
                                                     resource.body.type_url())});
      continue;
    }
    auto snapshot = state::build_config_snapshot(message.yaml(),
                                                 fmt::format("xds version {}", resource.version));
    if (!snapshot) {
      ZT_LOG_WARN("component=xds rejected waypoint configuration {} version {}: {}", resource.name,
                  resource.version, snapshot.error().describe());
      rejected.push_back({resource.name, snapshot.error().describe()});
      continue;
    }
    ZT_LOG_INFO("component=xds applied waypoint configuration {} version {}", resource.name,
                resource.version);
    store.publish(std::move(*snapshot));
  }
  for (const auto& name : update.removed) {
    if (name != name_) continue;
    auto empty = state::build_config_snapshot("", "xds (removed)");
    if (empty) {
      ZT_LOG_INFO("component=xds waypoint configuration {} removed: serving none", name);
      store.publish(std::move(*empty));
    }
  }
  return rejected;
}

}  // namespace zt::waypoint::xds
