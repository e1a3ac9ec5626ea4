#include "ztunnel/state/types.h"

#include <fmt/format.h>

namespace zt::state {

std::string NetworkAddress::to_string() const {
  return fmt::format("{}/{}", network, address.to_string());
}

std::string NamespacedHostname::to_string() const {
  return fmt::format("{}/{}", namespace_name, hostname);
}

std::string Workload::identity() const {
  return fmt::format("spiffe://{}/ns/{}/sa/{}", trust_domain, namespace_name, service_account);
}

std::string Service::key() const { return fmt::format("{}/{}", namespace_name, hostname); }

std::string Authorization::key() const { return fmt::format("{}/{}", namespace_name, name); }

bool StringMatch::matches(std::string_view candidate) const {
  switch (kind) {
    case Kind::kExact: return candidate == value;
    case Kind::kPrefix: return candidate.substr(0, value.size()) == value;
    case Kind::kSuffix:
      return candidate.size() >= value.size() &&
             candidate.substr(candidate.size() - value.size()) == value;
    case Kind::kPresence: return !candidate.empty();
  }
  return false;
}

bool Match::empty() const {
  return namespaces.empty() && not_namespaces.empty() && service_accounts.empty() &&
         not_service_accounts.empty() && principals.empty() && not_principals.empty() &&
         source_ips.empty() && not_source_ips.empty() && destination_ips.empty() &&
         not_destination_ips.empty() && destination_ports.empty() && not_destination_ports.empty();
}

std::string_view to_string(TunnelProtocol value) {
  return value == TunnelProtocol::kHbone ? "HBONE" : "TCP";
}

std::string_view to_string(HealthStatus value) {
  return value == HealthStatus::kHealthy ? "Healthy" : "Unhealthy";
}

std::string_view to_string(PolicyScope value) {
  switch (value) {
    case PolicyScope::kGlobal: return "Global";
    case PolicyScope::kNamespace: return "Namespace";
    case PolicyScope::kWorkloadSelector: return "WorkloadSelector";
  }
  return "?";
}

std::string_view to_string(PolicyAction value) {
  return value == PolicyAction::kAllow ? "Allow" : "Deny";
}

}  // namespace zt::state
