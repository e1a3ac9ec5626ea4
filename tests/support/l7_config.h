// Waypoint L7 configuration documents for tests (the YAML the waypoint's --config reads).
#pragma once

#include <string>
#include <string_view>

#include <fmt/format.h>

namespace zt::testing {

// An AuthorizationPolicy `name` in namespace default on Service `service` (targetRefs), `action`
// (ALLOW, DENY), with `rules` (YAML list items, indented 2), then a document separator.
inline std::string authorization_policy(std::string_view name, std::string_view service,
                                        std::string_view action, std::string_view rules) {
  return fmt::format(R"(apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: {0}, namespace: default}}
spec:
  targetRefs: [{{kind: Service, group: "", name: {1}}}]
  action: {2}
  rules:
{3}---
)",
                     name, service, action, rules);
}

}  // namespace zt::testing
