// The Kubernetes objects meshd understands, as plain values independent of where they came from
// (YAML files today, the Kubernetes API's JSON later). Only the fields meshd uses are kept;
// everything else in a manifest is ignored. Field names follow the Kubernetes/Istio API (camelCase
// there, snake_case here).
//
// Invariant: an object in an ObjectSet has passed validation (convert() in parse.h), so its
// required fields are present and typed; the ambient computation never re-validates.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace zt::meshd::manifest {

using Labels = std::map<std::string, std::string>;

struct OwnerReference {
  std::string api_version;
  std::string kind;  // "ReplicaSet", "Job", "StatefulSet", ...
  std::string name;
  bool controller = false;
  bool operator==(const OwnerReference&) const = default;
};

struct ObjectMeta {
  std::string name;
  std::string generate_name;       // metadata.generateName (istiod's deployment heuristic needs it)
  std::string uid;                 // metadata.uid as written; "" when absent (see kube_uid)
  std::string creation_timestamp;  // RFC 3339 as written; "" when absent (oldest-policy-wins rules)
  std::string namespace_;          // "" for cluster-scoped kinds (Namespace); defaults to "default"
  Labels labels;
  Labels annotations;
  std::vector<OwnerReference> owner_references;
  bool operator==(const ObjectMeta&) const = default;
};

// The object's Kubernetes UID: metadata.uid when the manifest has one (objects read from the
// API always do), else a stable UUID-shaped value derived from kind, namespace and name, so the
// node agent and the simulator name the same pod the same way without an API server.
std::string kube_uid(std::string_view kind, const ObjectMeta& meta);

struct Namespace {
  ObjectMeta meta;
  bool operator==(const Namespace&) const = default;
};

struct ServiceAccount {
  ObjectMeta meta;
  bool operator==(const ServiceAccount&) const = default;
};

struct ContainerPort {
  std::string name;  // "" when unnamed
  uint32_t container_port = 0;
  std::string protocol = "TCP";
  bool operator==(const ContainerPort&) const = default;
};

struct Pod {
  ObjectMeta meta;
  std::string node_name;             // spec.nodeName ("" = unscheduled)
  std::string service_account_name;  // spec.serviceAccountName, "default" when absent
  bool host_network = false;         // spec.hostNetwork
  std::vector<ContainerPort> ports;  // named and unnamed ports of all containers
  // Each container's program: the first word of its `command` ("" when it has none and runs its
  // image's entrypoint). The simulator runs our own binaries for the ones it knows ("waypoint").
  std::vector<std::string> commands;
  std::vector<std::string> ips;  // status.podIPs (or status.podIP), textual
  std::string phase;             // status.phase ("" when absent)
  std::optional<bool> ready;     // status.conditions[type=Ready]; nullopt = no condition
  bool terminating = false;      // metadata.deletionTimestamp present
  bool operator==(const Pod&) const = default;
};

struct ServicePort {
  std::string name;
  uint32_t port = 0;
  // targetPort: a number, a name (resolved per pod from its container ports), or absent (= port).
  uint32_t target_port = 0;
  std::string target_port_name;
  std::string protocol = "TCP";
  std::string app_protocol;
  bool operator==(const ServicePort&) const = default;
};

struct Service {
  ObjectMeta meta;
  std::string type = "ClusterIP";
  std::vector<std::string> cluster_ips;  // spec.clusterIPs, else spec.clusterIP; "None" dropped
  bool headless = false;                 // clusterIP: None
  std::optional<Labels> selector;        // nullopt = no selector (no endpoints from pods)
  std::vector<ServicePort> ports;
  std::string internal_traffic_policy;  // "" | Cluster | Local
  std::string traffic_distribution;     // "" | PreferClose
  bool operator==(const Service&) const = default;
};

// security.istio.io AuthorizationPolicy (v1 and v1beta1 are the same schema).
struct PolicySource {
  std::vector<std::string> principals, not_principals;
  std::vector<std::string> request_principals, not_request_principals;
  std::vector<std::string> namespaces, not_namespaces;
  std::vector<std::string> service_accounts, not_service_accounts;  // "sa" or "ns/sa"
  std::vector<std::string> ip_blocks, not_ip_blocks;
  std::vector<std::string> remote_ip_blocks, not_remote_ip_blocks;
  bool operator==(const PolicySource&) const = default;
};

struct PolicyOperation {
  std::vector<std::string> hosts, not_hosts;
  std::vector<std::string> ports, not_ports;  // strings in the API ("8080")
  std::vector<std::string> methods, not_methods;
  std::vector<std::string> paths, not_paths;
  bool operator==(const PolicyOperation&) const = default;
};

struct PolicyCondition {
  std::string key;
  std::vector<std::string> values, not_values;
  bool operator==(const PolicyCondition&) const = default;
};

struct PolicyRule {
  std::vector<PolicySource> from;   // each entry's `source`
  std::vector<PolicyOperation> to;  // each entry's `operation`
  std::vector<PolicyCondition> when;
  bool operator==(const PolicyRule&) const = default;
};

struct PolicyTargetRef {
  std::string group, kind, name, namespace_;
  bool operator==(const PolicyTargetRef&) const = default;
};

struct AuthorizationPolicy {
  ObjectMeta meta;
  std::optional<Labels> selector;            // spec.selector.matchLabels; nullopt = no selector
  std::vector<PolicyTargetRef> target_refs;  // spec.targetRef / spec.targetRefs (waypoints)
  std::string action = "ALLOW";              // ALLOW | DENY | AUDIT | CUSTOM
  std::string provider;                      // spec.provider.name (CUSTOM)
  bool dry_run = false;  // metadata.annotations["istio.io/dry-run"] (Go boolean syntax)
  std::vector<PolicyRule> rules;
  // The object re-emitted as YAML (apiVersion, kind, metadata name/namespace/creationTimestamp
  // and the istio.io/dry-run annotation, spec), for waypoints; set for every policy, used for
  // those with targetRefs.
  std::string yaml;
  bool operator==(const AuthorizationPolicy&) const = default;
};

struct PeerAuthentication {
  ObjectMeta meta;
  std::optional<Labels> selector;
  std::string mode;  // spec.mtls.mode: "" (unset/inherit) | UNSET | STRICT | PERMISSIVE | DISABLE
  std::map<uint32_t, std::string> port_level_mtls;  // port -> mode
  bool operator==(const PeerAuthentication&) const = default;
};

// gateway.networking.k8s.io Gateway (waypoints: gatewayClassName istio-waypoint).
struct GatewayListener {
  std::string name;
  std::string hostname;
  uint32_t port = 0;
  std::string protocol;
  bool operator==(const GatewayListener&) const = default;
};

struct Gateway {
  ObjectMeta meta;
  std::string gateway_class_name;
  std::vector<GatewayListener> listeners;
  // status.addresses (type "IPAddress" or "Hostname"); a waypoint controller publishes them.
  struct Address {
    std::string type, value;
    bool operator==(const Address&) const = default;
  };
  std::vector<Address> status_addresses;
  bool operator==(const Gateway&) const = default;
};

struct RouteParentRef {
  std::string group, kind, namespace_, name, section_name;
  uint32_t port = 0;
  bool operator==(const RouteParentRef&) const = default;
};

struct HttpHeaderMatch {
  std::string type = "Exact";
  std::string name, value;
  bool operator==(const HttpHeaderMatch&) const = default;
};

struct HttpRouteMatch {
  std::string path_type;  // "" when no path match; Exact | PathPrefix | RegularExpression
  std::string path_value;
  std::string method;
  std::vector<HttpHeaderMatch> headers;
  bool operator==(const HttpRouteMatch&) const = default;
};

struct HttpBackendRef {
  std::string group, kind = "Service", namespace_, name;
  uint32_t port = 0;
  uint32_t weight = 1;
  bool operator==(const HttpBackendRef&) const = default;
};

struct HttpRouteRule {
  std::vector<HttpRouteMatch> matches;
  std::vector<HttpBackendRef> backend_refs;
  std::string filters_yaml;  // spec.rules[].filters kept verbatim (YAML text) for later use
  bool operator==(const HttpRouteRule&) const = default;
};

struct HttpRoute {
  ObjectMeta meta;
  std::vector<RouteParentRef> parent_refs;
  std::vector<std::string> hostnames;
  std::vector<HttpRouteRule> rules;
  std::string yaml;  // the object re-emitted as YAML, as AuthorizationPolicy::yaml
  bool operator==(const HttpRoute&) const = default;
};

// gateway.networking.k8s.io GRPCRoute: meshd reads its parents; waypoints get the whole object.
struct GrpcRoute {
  ObjectMeta meta;
  std::vector<RouteParentRef> parent_refs;
  std::string yaml;  // the object re-emitted as YAML, as AuthorizationPolicy::yaml
  bool operator==(const GrpcRoute&) const = default;
};

// networking.istio.io DestinationRule: meshd reads what picks the rule for a waypoint (host,
// exportTo, whether it has a workloadSelector or a traffic policy); waypoints get the whole
// object.
struct DestinationRule {
  ObjectMeta meta;
  std::string host;  // spec.host as written (short names are relative to the rule's namespace)
  std::string yaml;  // the object re-emitted as YAML, as AuthorizationPolicy::yaml
  // spec.exportTo as written: namespaces, "." (its own), "*" (all), "~" (none); empty = all.
  std::vector<std::string> export_to;
  bool has_workload_selector = false;  // spec.workloadSelector is set
  bool has_traffic_policy = false;     // spec.trafficPolicy is set
  // spec.subsets: name -> labels (a waypoint gets the workloads each selects, SubsetEndpoints)
  std::vector<std::pair<std::string, Labels>> subsets;
  bool operator==(const DestinationRule&) const = default;
};

// networking.istio.io VirtualService: meshd reads what binds it to a waypoint (hosts,
// gateways, exportTo); waypoints get the whole object.
struct VirtualService {
  ObjectMeta meta;
  std::vector<std::string> hosts;      // spec.hosts as written (short names: its namespace)
  std::vector<std::string> gateways;   // spec.gateways; empty = the mesh
  std::vector<std::string> export_to;  // spec.exportTo as written; empty = all
  std::string yaml;  // the object re-emitted as YAML, as AuthorizationPolicy::yaml
  bool operator==(const VirtualService&) const = default;
};

// security.istio.io RequestAuthentication: meshd reads its scope; waypoints get the whole object
// (those with targetRefs). ztunnel does not validate JWTs, so a selector one is not used.
struct RequestAuthentication {
  ObjectMeta meta;
  bool has_selector = false;
  std::vector<PolicyTargetRef> target_refs;
  std::vector<std::string> jwks_uris;  // spec.jwtRules[].jwksUri, those set
  std::string yaml;  // the object re-emitted as YAML, as AuthorizationPolicy::yaml
  bool operator==(const RequestAuthentication&) const = default;
};

// v1 ConfigMap `istio`: Istio's MeshConfig, under data.mesh. meshd
// reads what waypoints need of it, the ext_authz extensionProviders that CUSTOM
// AuthorizationPolicies name; other ConfigMaps are not read.
struct MeshConfigMap {
  ObjectMeta meta;
  // A ConfigMap whose data.mesh holds only the ext_authz providers of extensionProviders, for
  // waypoints; "" when the MeshConfig has none. meshd reads it in its root namespace
  // (istio-system) only.
  std::string yaml;
  bool operator==(const MeshConfigMap&) const = default;
};

using Object = std::variant<Namespace, Pod, Service, ServiceAccount, AuthorizationPolicy,
                            PeerAuthentication, Gateway, HttpRoute, DestinationRule, GrpcRoute,
                            RequestAuthentication, MeshConfigMap, VirtualService>;

// kind ("Pod"), namespace ("" for Namespace), name.
struct ObjectKey {
  std::string kind, namespace_, name;
  auto operator<=>(const ObjectKey&) const = default;
  std::string describe() const;  // "Pod default/web", "Namespace prod"
};

ObjectKey key_of(const Object& object);
const ObjectMeta& meta_of(const Object& object);

// A consistent set of validated objects; maps keyed by "namespace/name" (Namespace: by name).
struct ObjectSet {
  std::map<std::string, Namespace> namespaces;
  std::map<std::string, Pod> pods;
  std::map<std::string, Service> services;
  std::map<std::string, ServiceAccount> service_accounts;
  std::map<std::string, AuthorizationPolicy> authorization_policies;
  std::map<std::string, PeerAuthentication> peer_authentications;
  std::map<std::string, Gateway> gateways;
  std::map<std::string, HttpRoute> http_routes;
  std::map<std::string, DestinationRule> destination_rules;
  std::map<std::string, GrpcRoute> grpc_routes;
  std::map<std::string, RequestAuthentication> request_authentications;
  std::map<std::string, MeshConfigMap> mesh_configs;
  std::map<std::string, VirtualService> virtual_services;

  // Inserts or replaces the object with the same key.
  void put(Object object);
  size_t size() const;
  bool operator==(const ObjectSet&) const = default;
};

}  // namespace zt::meshd::manifest
