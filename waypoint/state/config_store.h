// The waypoint's L7 configuration as one immutable snapshot (routes, destination policies,
// authorization policies, request authentications), built from a YAML stream of Kubernetes objects
// (HTTPRoute, GRPCRoute, DestinationRule, AuthorizationPolicy, RequestAuthentication, the
// ConfigMap `istio` for MeshConfig's extensionProviders; other kinds are skipped) or the waypoint
// document of config/parse.h (with `extensionProviders`), and published atomically: a request reads
// one snapshot from start to end.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "common/base/result.h"
#include "waypoint/authz/ext_authz.h"
#include "waypoint/authz/policy.h"
#include "waypoint/authz/request_authn.h"
#include "waypoint/config/model.h"
#include "waypoint/route/route.h"

namespace zt::waypoint::state {

struct ConfigSnapshot {
  std::shared_ptr<const config::WaypointConfig> config;
  route::RouteTable routes;
  // Every AuthorizationPolicy with targetRefs (selector policies are for ztunnel, not us).
  std::vector<authz::Policy> policies;
  // Every RequestAuthentication with targetRefs, likewise.
  std::vector<authz::RequestAuthentication> authentications;
  // The ext_authz providers CUSTOM policies name (MeshConfig extensionProviders).
  std::vector<authz::ExtAuthzProvider> providers;
  std::string origin;       // where it came from: "file /etc/waypoint.yaml", "xds version 7"
  uint64_t generation = 0;  // set by ConfigStore::publish, 1 for the first

  // The policies that apply to a request for `service` (namespace/name) arriving at the waypoint
  // `gateway` (namespace/name): those whose targetRefs name the Gateway or that Service (kind
  // Service or ServiceEntry with its hostname), in a stable order (namespace/name).
  std::vector<authz::Policy> policies_for(std::string_view gateway_namespace,
                                          std::string_view gateway_name,
                                          std::string_view service_namespace,
                                          std::string_view service_name) const;
  // The RequestAuthentications that apply, by the same targetRef rule (pointers into this
  // snapshot).
  // The provider called `name`, null when none is.
  const authz::ExtAuthzProvider* provider(std::string_view name) const;
  std::vector<const authz::RequestAuthentication*> authentications_for(
      std::string_view gateway_namespace, std::string_view gateway_name,
      std::string_view service_namespace, std::string_view service_name) const;
};

// Parses `yaml` (both forms above). An empty text is an empty configuration. Errors name the
// object and field.
Result<std::shared_ptr<ConfigSnapshot>> build_config_snapshot(std::string_view yaml,
                                                              std::string origin);

class ConfigStore {
 public:
  ConfigStore();  // starts with an empty configuration (generation 0)
  std::shared_ptr<const ConfigSnapshot> current() const;
  void publish(std::shared_ptr<ConfigSnapshot> snapshot);

 private:
  mutable std::mutex mu_;
  std::shared_ptr<const ConfigSnapshot> current_;
  uint64_t generation_ = 0;
};

}  // namespace zt::waypoint::state
