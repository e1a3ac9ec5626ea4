// The workload API model (facts §4.2, §4.3): workloads, services and authorization policies as
// ztunnel keeps them, whether they came from the local config file or (later) from xDS. Plain
// aggregates so tests and the xDS translation can build them with designated initializers.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/net/address.h"

namespace zt::state {

inline constexpr std::string_view kDefaultTrustDomain = "cluster.local";
inline constexpr std::string_view kDefaultServiceAccount = "default";
inline constexpr std::string_view kDefaultClusterId = "Kubernetes";
inline constexpr std::string_view kDefaultWorkloadType = "deployment";
inline constexpr uint16_t kDefaultHboneMtlsPort = 15008;

// Service port -> target port. A target port of 0 means "named port": each endpoint says.
using PortMap = std::map<uint16_t, uint16_t>;

enum class TunnelProtocol { kTcp, kHbone };
enum class HealthStatus { kHealthy, kUnhealthy };
enum class NetworkMode { kStandard, kHostNetwork };

// An address qualified by its network ("" is the default network). Text form "network/ip".
struct NetworkAddress {
  std::string network{};
  asio::ip::address address{};

  std::string to_string() const;
  friend bool operator==(const NetworkAddress&, const NetworkAddress&) = default;
};

struct NamespacedHostname {
  std::string namespace_name{};
  std::string hostname{};

  std::string to_string() const;  // "namespace/hostname", the service key
  friend bool operator==(const NamespacedHostname&, const NamespacedHostname&) = default;
};

// Where a waypoint or network gateway is reached. Parsed and kept; routing through waypoints
// and gateways is not implemented yet.
struct GatewayAddress {
  std::variant<NetworkAddress, NamespacedHostname> destination{};
  uint16_t hbone_mtls_port = kDefaultHboneMtlsPort;

  friend bool operator==(const GatewayAddress&, const GatewayAddress&) = default;
};

struct ApplicationTunnel {
  enum class Protocol { kNone, kProxy };
  Protocol protocol = Protocol::kNone;
  std::optional<uint16_t> port{};

  friend bool operator==(const ApplicationTunnel&, const ApplicationTunnel&) = default;
};

struct Locality {
  std::string region{};
  std::string zone{};
  std::string subzone{};

  friend bool operator==(const Locality&, const Locality&) = default;
};

struct Workload {
  std::string uid{};  // primary key, e.g. "cluster1//v1/Pod/default/local"
  std::string name{};
  std::string namespace_name{};
  std::string service_account{kDefaultServiceAccount};
  std::string trust_domain{kDefaultTrustDomain};
  std::vector<asio::ip::address> workload_ips{};
  TunnelProtocol protocol = TunnelProtocol::kTcp;
  std::string node{};
  std::string network{};
  std::string hostname{};
  std::string workload_name{};
  std::string workload_type{kDefaultWorkloadType};  // deployment|cronjob|pod|job
  std::string canonical_name{};
  std::string canonical_revision{};
  std::string cluster_id{kDefaultClusterId};
  HealthStatus status = HealthStatus::kHealthy;
  uint32_t capacity = 1;  // load-balancing weight
  // Services this workload is an endpoint of: "namespace/hostname" -> its own port map.
  std::map<std::string, PortMap> services{};
  // Keys ("namespace/name") of the WorkloadSelector policies that select this workload.
  std::vector<std::string> authorization_policies{};
  std::optional<GatewayAddress> waypoint{};
  std::optional<GatewayAddress> network_gateway{};
  NetworkMode network_mode = NetworkMode::kStandard;
  bool native_tunnel = false;
  std::optional<ApplicationTunnel> application_tunnel{};
  std::optional<Locality> locality{};

  // "spiffe://<trust domain>/ns/<namespace>/sa/<service account>"
  std::string identity() const;
};

enum class LoadBalancerMode { kStandard, kStrict, kFailover, kPassthrough };
enum class LoadBalancerHealthPolicy { kOnlyHealthy, kAllowAll };
enum class LoadBalancerScope { kRegion, kZone, kSubzone, kNode, kCluster, kNetwork };
enum class IpFamily { kDual, kIpv4, kIpv6 };

struct LoadBalancer {
  std::vector<LoadBalancerScope> routing_preferences{};  // parsed; locality ranking not used yet
  LoadBalancerMode mode = LoadBalancerMode::kStandard;
  LoadBalancerHealthPolicy health_policy = LoadBalancerHealthPolicy::kOnlyHealthy;

  friend bool operator==(const LoadBalancer&, const LoadBalancer&) = default;
};

// An endpoint listed on the service itself (the `endpoints` map of the local config), in
// addition to the workloads whose `services` map names the service.
struct ServiceEndpoint {
  std::string workload_uid{};
  PortMap ports{};
  HealthStatus status = HealthStatus::kHealthy;

  friend bool operator==(const ServiceEndpoint&, const ServiceEndpoint&) = default;
};

struct Service {
  std::string name{};
  std::string namespace_name{};
  std::string hostname{};
  std::vector<NetworkAddress> vips{};
  PortMap ports{};
  std::vector<std::string> subject_alt_names{};  // extra identities a server may present
  std::optional<GatewayAddress> waypoint{};
  std::optional<LoadBalancer> load_balancer{};
  std::optional<IpFamily> ip_families{};
  bool canonical = false;
  std::vector<ServiceEndpoint> endpoints{};

  std::string key() const;  // "namespace/hostname"
};

enum class PolicyScope { kGlobal, kNamespace, kWorkloadSelector };
enum class PolicyAction { kAllow, kDeny };

struct StringMatch {
  enum class Kind { kExact, kPrefix, kSuffix, kPresence };
  Kind kind = Kind::kExact;
  std::string value{};  // empty for kPresence

  // Presence matches any non-empty value.
  bool matches(std::string_view candidate) const;
  friend bool operator==(const StringMatch&, const StringMatch&) = default;
};

struct ServiceAccountMatch {
  std::string namespace_name{};
  std::string service_account{};

  friend bool operator==(const ServiceAccountMatch&, const ServiceAccountMatch&) = default;
};

// All non-empty fields must pass; a positive list passes when any element matches, a not_ list
// when none does. Evaluation lives with authorization; this is the parsed form.
struct Match {
  std::vector<StringMatch> namespaces{};
  std::vector<StringMatch> not_namespaces{};
  std::vector<ServiceAccountMatch> service_accounts{};
  std::vector<ServiceAccountMatch> not_service_accounts{};
  std::vector<StringMatch> principals{};  // compared without "spiffe://"
  std::vector<StringMatch> not_principals{};
  std::vector<net::Cidr> source_ips{};
  std::vector<net::Cidr> not_source_ips{};
  std::vector<net::Cidr> destination_ips{};
  std::vector<net::Cidr> not_destination_ips{};
  std::vector<uint16_t> destination_ports{};
  std::vector<uint16_t> not_destination_ports{};

  // An all-empty match never matches (facts §5.3).
  bool empty() const;
  friend bool operator==(const Match&, const Match&) = default;
};

using Clause = std::vector<Match>;  // matches OR-ed
using Rule = std::vector<Clause>;   // clauses AND-ed

struct Authorization {
  std::string name{};
  std::string namespace_name{};
  PolicyScope scope = PolicyScope::kGlobal;
  PolicyAction action = PolicyAction::kAllow;
  std::vector<Rule> rules{};  // rules OR-ed; no rules never matches
  bool dry_run = false;

  std::string key() const;  // "namespace/name"
};

std::string_view to_string(TunnelProtocol value);
std::string_view to_string(HealthStatus value);
std::string_view to_string(PolicyScope value);
std::string_view to_string(PolicyAction value);

}  // namespace zt::state
