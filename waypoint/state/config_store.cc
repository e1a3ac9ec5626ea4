#include "waypoint/state/config_store.h"

#include <algorithm>
#include <utility>

#include "waypoint/authz/parse.h"
#include "waypoint/config/parse.h"

namespace zt::waypoint::state {

namespace {

// Whether a policy in `own_namespace` with `refs` names the Gateway or the Service.
bool targets(const std::vector<authz::TargetRef>& refs, const std::string& own_namespace,
             std::string_view gateway_namespace, std::string_view gateway_name,
             std::string_view service_namespace, std::string_view service_name) {
  for (const auto& ref : refs) {
    const std::string& ns = ref.namespace_name.empty() ? own_namespace : ref.namespace_name;
    if (ref.kind == "Gateway") {
      if (ns == gateway_namespace && ref.name == gateway_name) return true;
    } else if (ref.kind == "Service" || ref.kind == "ServiceEntry") {
      if (!service_name.empty() && ns == service_namespace && ref.name == service_name) return true;
    }
  }
  return false;
}

}  // namespace

std::vector<authz::Policy> ConfigSnapshot::policies_for(std::string_view gateway_namespace,
                                                        std::string_view gateway_name,
                                                        std::string_view service_namespace,
                                                        std::string_view service_name) const {
  std::vector<authz::Policy> out;
  for (const auto& p : policies) {
    if (targets(p.target_refs, p.namespace_name, gateway_namespace, gateway_name, service_namespace,
                service_name)) {
      out.push_back(p);
    }
  }
  return out;
}

std::vector<const authz::RequestAuthentication*> ConfigSnapshot::authentications_for(
    std::string_view gateway_namespace, std::string_view gateway_name,
    std::string_view service_namespace, std::string_view service_name) const {
  std::vector<const authz::RequestAuthentication*> out;
  for (const auto& a : authentications) {
    if (targets(a.target_refs, a.namespace_name, gateway_namespace, gateway_name, service_namespace,
                service_name)) {
      out.push_back(&a);
    }
  }
  return out;
}

const authz::ExtAuthzProvider* ConfigSnapshot::provider(std::string_view name) const {
  for (const auto& p : providers) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

Result<std::shared_ptr<ConfigSnapshot>> build_config_snapshot(std::string_view yaml,
                                                              std::string origin) {
  auto snap = std::make_shared<ConfigSnapshot>();
  // One load for both parsers.
  auto docs = config::load_documents(yaml);
  if (!docs) return tl::unexpected(wrap(docs.error(), "waypoint configuration"));
  auto cfg = config::parse_waypoint_config(*docs);
  if (!cfg) return tl::unexpected(wrap(cfg.error(), "waypoint configuration"));
  snap->config = std::make_shared<const config::WaypointConfig>(std::move(*cfg));
  snap->routes = route::RouteTable(snap->config);
  auto policies = authz::parse_authorization_policies(*docs);
  if (!policies) return tl::unexpected(wrap(policies.error(), "authorization policies"));
  for (auto& p : *policies) {
    if (!p.target_refs.empty()) snap->policies.push_back(std::move(p));
  }
  std::sort(snap->policies.begin(), snap->policies.end(),
            [](const authz::Policy& a, const authz::Policy& b) { return a.key() < b.key(); });
  auto authns = authz::parse_request_authentications(*docs);
  if (!authns) return tl::unexpected(wrap(authns.error(), "request authentications"));
  for (auto& a : *authns) {
    if (!a.target_refs.empty()) snap->authentications.push_back(std::move(a));
  }
  std::sort(snap->authentications.begin(), snap->authentications.end(),
            [](const authz::RequestAuthentication& a, const authz::RequestAuthentication& b) {
              return a.key() < b.key();
            });
  auto providers = authz::parse_extension_providers(*docs);
  if (!providers) return tl::unexpected(wrap(providers.error(), "extension providers"));
  snap->providers = std::move(*providers);
  snap->origin = std::move(origin);
  return snap;
}

ConfigStore::ConfigStore() {
  auto empty = std::make_shared<ConfigSnapshot>();
  empty->config = std::make_shared<const config::WaypointConfig>();
  empty->routes = route::RouteTable(empty->config);
  empty->origin = "empty";
  current_ = std::move(empty);
}

std::shared_ptr<const ConfigSnapshot> ConfigStore::current() const {
  std::lock_guard lock(mu_);
  return current_;
}

void ConfigStore::publish(std::shared_ptr<ConfigSnapshot> snapshot) {
  std::lock_guard lock(mu_);
  snapshot->generation = ++generation_;
  current_ = std::move(snapshot);
}

}  // namespace zt::waypoint::state
