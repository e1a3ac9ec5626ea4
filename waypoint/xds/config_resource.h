// The waypoint's L7 configuration over the control plane's Delta xDS stream: one resource per
// waypoint, of our own type (proto/ambientmesh/waypoint/v1/waypoint.proto, message
// WaypointConfig), named "<gateway namespace>/<gateway name>". Its payload is the YAML stream
// that waypoint/state/config_store.h parses (HTTPRoute, GRPCRoute, DestinationRule,
// AuthorizationPolicy objects as the control plane holds them), so a file and xDS configure the
// waypoint the same way. The waypoint subscribes with a wildcard and keeps only its own resource.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/xds/delta_types.h"
#include "waypoint/state/config_store.h"

namespace zt::waypoint::xds {

inline constexpr std::string_view kWaypointConfigType =
    "type.googleapis.com/ambientmesh.waypoint.v1.WaypointConfig";

// "<namespace>/<name>"
std::string resource_name(std::string_view gateway_namespace, std::string_view gateway_name);

class WaypointConfigCache {
 public:
  WaypointConfigCache(std::string gateway_namespace, std::string gateway_name);

  // Applies the kWaypointConfigType part of `update` (other types are ignored): this
  // waypoint's resource, when valid, is published to `store` (origin "xds version <v>"); an
  // invalid one is rejected with the parse error (NACK) and the last good configuration stays;
  // its removal publishes an empty configuration. Other waypoints' resources are ignored.
  std::vector<zt::xds::Rejection> apply(const zt::xds::DeltaUpdate& update,
                                        state::ConfigStore& store);

 private:
  std::string name_;
};

}  // namespace zt::waypoint::xds
