// Kubernetes objects -> the workload API, as istiod computes it for ambient
// (pilot/pkg/serviceregistry/kube/controller/ambient). A pure function: same objects, same
// snapshot, so meshd can recompute on every manifest change and let the xDS server diff.
//
// API summary:
//   ambient::Options options{.trust_domain = "cluster.local", .cluster_id = "Kubernetes",
//                            .network = ""};
//   MeshSnapshot snapshot = ambient::compute(objects, options);   // objects: manifest::ObjectSet
//   snapshot.addresses       // workloads by uid ("<cluster>//Pod/<ns>/<name>"),
//                            // services by "<ns>/<name>.<ns>.svc.<domain>"
//   snapshot.authorizations  // by "<ns>/<name>"
//   snapshot.identities_by_node  // node -> {"spiffe://<td>/ns/<ns>/sa/<sa>"}
//   snapshot.waypoint_configs    // waypoint Gateway "<ns>/<name>" -> WaypointConfig{yaml}
//
// Rules (istiod's, summarised; details at each function in compute.cc):
// - Pods with an IP (phase Running/Pending/unset) are Workloads. HBONE when captured: pod label
//   istio.io/dataplane-mode=ambient, or the namespace has it and the pod is not labelled "none";
//   host-network and sidecar pods are never captured (TCP = TunnelProtocol NONE). Host-network
//   pods get network_mode HOST_NETWORK. No Ready condition in the manifest counts as healthy.
// - trust_domain is left empty when it is cluster.local (istiod's pickTrustDomain).
// - istio.io/use-waypoint on the pod/service, else its namespace, names a waypoint Gateway
//   ("name" or "ns/name"; istio.io/use-waypoint-namespace sets the namespace); "none" opts out.
//   A Gateway's istio.io/waypoint-for (default "service") decides whether Services, Workloads or
//   both may use it. Address: its status Hostname/IP, else for class istio-waypoint the hostname
//   <gw>.<ns>.svc.<suffix>; HBONE port 15008.
// - AuthorizationPolicy: root namespace without selector = GLOBAL, other namespaces without
//   selector = NAMESPACE, with selector = WORKLOAD_SELECTOR (listed on the selected workloads of
//   its namespace, or of every namespace when in the root namespace); AUDIT and CUSTOM are not
//   sent; a policy with targetRef(s) is for a waypoint and is not sent to ztunnel.
// - Waypoint L7 configuration: for each waypoint Gateway, a YAML stream of the HTTPRoutes (then
//   the GRPCRoutes) with a Service parentRef (namespace defaults to the route's) whose Service
//   uses that waypoint; the mesh VirtualServices that apply to such Services (bound to the mesh,
//   exported to the waypoint's namespace, in the Service's namespace or the waypoint's; hosts
//   cut down to those Services' FQDNs); one DestinationRule per such Service (host: short name
//   in the rule's namespace or the FQDN, a name with a dot being taken as it is, as Istio does;
//   exported to the waypoint's namespace; from the waypoint's namespace, else the service's,
//   else the root; there the oldest with a traffic policy, then the oldest, with the subsets of
//   that namespace's other rules merged in; none when that namespace has only rules with a
//   workloadSelector, which waypoints do not apply, as Istio's), followed by a SubsetEndpoints
//   document naming each subset's pods when it has subsets; the AuthorizationPolicies, then the
//   RequestAuthentications, whose targetRefs name the Gateway or such a Service (a jwksUri whose
//   keys Options::jwks_by_uri has is replaced by those keys, `jwks`); in that order, each by
//   namespace/name. Empty when none apply.
// - PeerAuthentication: when any exists, the static DENY
// "istio-system/istio_converted_static_strict"
//   (notPrincipals: [presence]) is sent and every workload whose effective mode (mesh, then
//   namespace, then workload selector) is STRICT lists it; workload policies with port-level
//   exceptions become "<ns>/converted_peer_authentication_<name>".
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "meshd/manifest/objects.h"
#include "meshd/model/snapshot.h"

namespace zt::meshd::ambient {

struct Options {
  std::string trust_domain = "cluster.local";
  std::string cluster_id = "Kubernetes";
  std::string network;                          // "" = default network
  std::string root_namespace = "istio-system";  // mesh-wide policies live here
  std::string domain_suffix = "cluster.local";  // service hostnames <svc>.<ns>.svc.<suffix>
  // The keys fetched for RequestAuthentication jwksUris (jwks::JwksResolver): a rule whose URI
  // has keys here reaches the waypoint with them inline (`jwks`), as istiod inlines them.
  std::map<std::string, std::string> jwks_by_uri;
};

// The jwksUris of the RequestAuthentications that may reach a waypoint (those with targetRefs).
std::set<std::string> waypoint_jwks_uris(const manifest::ObjectSet& objects);

MeshSnapshot compute(const manifest::ObjectSet& objects, const Options& options);

// One AuthorizationPolicy as ztunnel receives it; nullopt when it is not sent to ztunnel
// (targetRef(s), AUDIT, CUSTOM). `warnings` (optional) gets istiod-style notes: unsupported
// actions, HTTP attributes left out (ALLOW: rules with HTTP attributes are dropped, so they never
// match; DENY: the rule is kept without them, so it matches more).
std::optional<istio::security::Authorization> convert_authorization_policy(
    const manifest::AuthorizationPolicy& policy, const Options& options,
    std::vector<std::string>* warnings = nullptr);

// "<cluster>//Pod/<namespace>/<name>" (istiod's workload uid for a pod).
std::string pod_uid(const std::string& cluster_id, const std::string& ns, const std::string& name);
// "<name>.<namespace>.svc.<domain_suffix>".
std::string service_hostname(const std::string& name, const std::string& ns,
                             const std::string& domain_suffix = "cluster.local");

}  // namespace zt::meshd::ambient
