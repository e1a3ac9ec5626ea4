// What meshd computes from the manifests and serves: the workload API resources (by their xDS
// resource names, as istiod names them) and, for the CA, which identities run on which node.
// A snapshot is immutable once published; the xDS server diffs consecutive snapshots per client.
#pragma once

#include <map>
#include <set>
#include <string>
#include <string_view>

#include "ambientmesh/waypoint/v1/waypoint.pb.h"
#include "istio/security/authorization.pb.h"
#include "istio/workload/workload.pb.h"

namespace zt::meshd {

// Same value as waypoint::xds::kWaypointConfigType (waypoint/xds/config_resource.h).
inline constexpr std::string_view kWaypointConfigType =
    "type.googleapis.com/ambientmesh.waypoint.v1.WaypointConfig";

struct MeshSnapshot {
  // type.googleapis.com/istio.workload.Address: workloads by uid, services by "namespace/hostname".
  std::map<std::string, istio::workload::Address> addresses{};
  // type.googleapis.com/istio.security.Authorization: by "namespace/name".
  std::map<std::string, istio::security::Authorization> authorizations{};
  // kWaypointConfigType: one per waypoint Gateway, by "<gateway namespace>/<gateway name>".
  std::map<std::string, ambientmesh::waypoint::v1::WaypointConfig> waypoint_configs{};
  // node name -> SPIFFE identities ("spiffe://td/ns/N/sa/S") of the pods scheduled there. The CA
  // lets a caller authenticated as node X obtain only identities listed under X.
  std::map<std::string, std::set<std::string>> identities_by_node{};
};

}  // namespace zt::meshd
