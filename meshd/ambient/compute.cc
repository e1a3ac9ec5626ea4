// The rules below follow istiod's ambient index (istio/istio
// pilot/pkg/serviceregistry/kube/controller/ambient: workloads.go, services.go, waypoints.go,
// authorization.go, policies.go). Where meshd has to differ because nothing else plays a
// Kubernetes controller's part, the comment at that spot says so.
#include "meshd/ambient/compute.h"

#include <algorithm>
#include <deque>
#include <map>
#include <regex>
#include <set>
#include <tuple>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include "common/base/log.h"
#include "common/net/address.h"

namespace zt::meshd::ambient {
namespace {

using manifest::Labels;
using manifest::ObjectMeta;
using manifest::ObjectSet;

constexpr const char* kDataplaneModeLabel = "istio.io/dataplane-mode";
constexpr const char* kUseWaypointLabel = "istio.io/use-waypoint";
constexpr const char* kUseWaypointNamespaceLabel = "istio.io/use-waypoint-namespace";
constexpr const char* kWaypointForLabel = "istio.io/waypoint-for";
constexpr const char* kGatewayNameLabel = "gateway.networking.k8s.io/gateway-name";
constexpr const char* kManagedGatewayLabel = "gateway.istio.io/managed";
constexpr const char* kManagedByMesh = "istio.io-mesh-controller";
constexpr const char* kRedirectionAnnotation = "ambient.istio.io/redirection";
constexpr const char* kSidecarStatusAnnotation = "sidecar.istio.io/status";
constexpr const char* kTunnelLabel = "networking.istio.io/tunnel";
constexpr const char* kWaypointClass = "istio-waypoint";
constexpr uint32_t kHbonePort = 15008;
constexpr const char* kStaticStrictPolicy = "istio_converted_static_strict";
constexpr const char* kConvertedPeerAuthnPrefix = "converted_peer_authentication_";

std::string label(const Labels& labels, const std::string& key) {
  auto it = labels.find(key);
  return it == labels.end() ? std::string() : it->second;
}

bool has(const Labels& labels, const std::string& key) { return labels.count(key) > 0; }

bool subset(const Labels& selector, const Labels& labels) {
  for (const auto& [k, v] : selector) {
    auto it = labels.find(k);
    if (it == labels.end() || it->second != v) return false;
  }
  return true;
}

std::string ip_bytes(const std::string& text) {
  auto ip = net::parse_ip(text);
  if (!ip) return {};
  if (ip->is_v4()) {
    auto b = ip->to_v4().to_bytes();
    return std::string(b.begin(), b.end());
  }
  auto b = ip->to_v6().to_bytes();
  return std::string(b.begin(), b.end());
}

const Labels* namespace_labels(const ObjectSet& objects, const std::string& ns) {
  auto it = objects.namespaces.find(ns);
  return it == objects.namespaces.end() ? nullptr : &it->second.meta.labels;
}

// --- waypoints ---------------------------------------------------------------------------------

struct Waypoint {
  std::string name, namespace_;
  std::string traffic_type;  // service | workload | all | none
  istio::workload::GatewayAddress address;
};

// A Gateway is a waypoint when a controller published an address for it (istiod's rule), or when
// its class is istio-waypoint: meshd is the controller for that class here, and the address it
// gives is the Service hostname "<gateway>.<ns>.svc.<suffix>" that a waypoint deployment has.
std::optional<Waypoint> make_waypoint(const manifest::Gateway& gw, const Options& options) {
  Waypoint w{gw.meta.name, gw.meta.namespace_, label(gw.meta.labels, kWaypointForLabel), {}};
  if (w.traffic_type.empty()) w.traffic_type = "service";
  const manifest::Gateway::Address* hostname = nullptr;
  const manifest::Gateway::Address* ip = nullptr;
  for (const auto& a : gw.status_addresses) {
    if (a.type == "Hostname" && !hostname) hostname = &a;
    if (a.type == "IPAddress" && !ip) ip = &a;
  }
  std::string host;
  if (hostname) {
    host = hostname->value;
  } else if (ip) {
    auto* address = w.address.mutable_address();
    address->set_network(options.network);
    address->set_address(ip_bytes(ip->value));
  } else if (gw.gateway_class_name == kWaypointClass) {
    host = service_hostname(gw.meta.name, gw.meta.namespace_, options.domain_suffix);
  } else {
    return std::nullopt;  // not a waypoint (yet)
  }
  if (!host.empty()) {
    auto* h = w.address.mutable_hostname();
    h->set_namespace_(gw.meta.namespace_);
    h->set_hostname(host);
  }
  w.address.set_hbone_mtls_port(kHbonePort);
  return w;
}

struct WaypointRef {
  std::string namespace_, name;
};

// istio.io/use-waypoint on one object: nullopt = no label; "none" (or "~", ".../none") = opted out.
struct UseWaypoint {
  bool none = false;
  std::optional<WaypointRef> ref;
};

UseWaypoint use_waypoint(const ObjectMeta& meta, const std::string& default_namespace) {
  UseWaypoint out;
  auto it = meta.labels.find(kUseWaypointLabel);
  if (it == meta.labels.end()) return out;
  const auto& value = it->second;
  if (value == "none" || value == "~" ||
      (value.size() >= 5 && value.compare(value.size() - 5, 5, "/none") == 0)) {
    out.none = true;
    return out;
  }
  auto slash = value.find('/');
  if (slash == std::string::npos) {
    auto ns = label(meta.labels, kUseWaypointNamespaceLabel);
    out.ref = WaypointRef{ns.empty() ? default_namespace : ns, value};
  } else if (value.find('/', slash + 1) == std::string::npos) {
    out.ref = WaypointRef{value.substr(0, slash), value.substr(slash + 1)};
  } else {
    ZT_LOG_WARN("component=ambient {}/{} has a malformed {} label: {}", meta.namespace_, meta.name,
                kUseWaypointLabel, value);
  }
  return out;
}

class Waypoints {
 public:
  Waypoints(const ObjectSet& objects, const Options& options) : objects_(objects) {
    for (const auto& [key, gw] : objects.gateways) {
      if (auto w = make_waypoint(gw, options)) by_key_.emplace(key, std::move(*w));
    }
  }

  // The waypoint the object's (else its namespace's) use-waypoint label names, when it exists
  // and accepts `traffic` ("service" or "workload").
  const Waypoint* for_target(const ObjectMeta& meta, const std::string& traffic) const {
    auto own = use_waypoint(meta, meta.namespace_);
    if (own.none) return nullptr;
    std::optional<WaypointRef> ref = own.ref;
    if (!ref) {
      auto ns = objects_.namespaces.find(meta.namespace_);
      if (ns != objects_.namespaces.end()) ref = use_waypoint(ns->second.meta, meta.namespace_).ref;
    }
    if (!ref) return nullptr;
    auto it = by_key_.find(ref->namespace_ + "/" + ref->name);
    if (it == by_key_.end()) return nullptr;
    const auto& tt = it->second.traffic_type;
    if (tt == traffic || tt == "all") return &it->second;
    ZT_LOG_DEBUG("component=ambient waypoint {}/{} does not take {} traffic (for {}/{})",
                 ref->namespace_, ref->name, traffic, meta.namespace_, meta.name);
    return nullptr;
  }

  const std::map<std::string, Waypoint>& all() const { return by_key_; }

  bool is_instance(const manifest::Pod& pod) const {
    auto name = label(pod.meta.labels, kGatewayNameLabel);
    return !name.empty() && by_key_.count(pod.meta.namespace_ + "/" + name) > 0;
  }

 private:
  const ObjectSet& objects_;
  std::map<std::string, Waypoint> by_key_;
};

// --- services ----------------------------------------------------------------------------------

void set_failover(istio::workload::LoadBalancing* lb) {
  using LB = istio::workload::LoadBalancing;
  lb->clear_routing_preference();
  for (auto scope : {LB::NETWORK, LB::REGION, LB::ZONE, LB::SUBZONE})
    lb->add_routing_preference(scope);
  lb->set_mode(LB::FAILOVER);
}

istio::workload::Service make_service(const manifest::Service& svc, const Waypoints& waypoints,
                                      const Options& options) {
  istio::workload::Service out;
  out.set_name(svc.meta.name);
  out.set_namespace_(svc.meta.namespace_);
  out.set_hostname(service_hostname(svc.meta.name, svc.meta.namespace_, options.domain_suffix));
  for (const auto& ip : svc.cluster_ips) {
    auto* address = out.add_addresses();
    address->set_network(options.network);
    address->set_address(ip_bytes(ip));
  }
  for (const auto& port : svc.ports) {
    auto* p = out.add_ports();
    p->set_service_port(port.port);
    p->set_target_port(port.target_port_name.empty() ? port.target_port : 0);
  }
  // A waypoint's own Service never points at a waypoint.
  if (label(svc.meta.labels, kManagedGatewayLabel) != kManagedByMesh) {
    if (const auto* w = waypoints.for_target(svc.meta, "service"))
      *out.mutable_waypoint() = w->address;
  }
  if (svc.traffic_distribution == "PreferClose" ||
      label(svc.meta.labels, kManagedGatewayLabel) == kManagedByMesh) {
    set_failover(out.mutable_load_balancing());
  }
  if (svc.internal_traffic_policy == "Local") {
    auto* lb = out.mutable_load_balancing();
    lb->clear_routing_preference();
    lb->add_routing_preference(istio::workload::LoadBalancing::NODE);
    lb->set_mode(istio::workload::LoadBalancing::STRICT);
  }
  return out;
}

// --- workloads ---------------------------------------------------------------------------------

std::pair<std::string, istio::workload::WorkloadType> workload_name_and_type(
    const manifest::Pod& pod) {
  using istio::workload::WorkloadType;
  // istiod only trusts the controller reference of pods whose name was generated.
  if (!pod.meta.generate_name.empty()) {
    for (const auto& ref : pod.meta.owner_references) {
      if (!ref.controller) continue;
      auto hash = label(pod.meta.labels, "pod-template-hash");
      if (ref.kind == "ReplicaSet" && !hash.empty() && ref.name.size() > hash.size() + 1 &&
          ref.name.compare(ref.name.size() - hash.size() - 1, std::string::npos, "-" + hash) == 0) {
        return {ref.name.substr(0, ref.name.size() - hash.size() - 1), WorkloadType::DEPLOYMENT};
      }
      if (ref.kind == "Job") {
        static const std::regex cron_job(R"((.+)-\d{8,10})");
        std::smatch m;
        if (std::regex_match(ref.name, m, cron_job)) return {m[1].str(), WorkloadType::CRONJOB};
        return {ref.name, WorkloadType::JOB};
      }
      break;  // other controllers: the pod itself
    }
  }
  return {pod.meta.name, WorkloadType::POD};
}

std::pair<std::string, std::string> canonical_service(const Labels& labels,
                                                      const std::string& workload_name) {
  std::string name;
  for (const char* key : {"service.istio.io/canonical-name", "app.kubernetes.io/name", "app"}) {
    if (auto v = label(labels, key); !v.empty()) {
      name = v;
      break;
    }
  }
  if (name.empty()) name = workload_name;
  std::string revision = "latest";
  for (const char* key :
       {"service.istio.io/canonical-revision", "app.kubernetes.io/version", "version"}) {
    if (auto v = label(labels, key); !v.empty()) {
      revision = v;
      break;
    }
  }
  return {name, revision};
}

// Whether ztunnel captures the pod (the istio-cni decision istiod reads back from the pod's
// redirection annotation; meshd has no CNI, so it applies the CNI's rule to the labels).
bool captured(const manifest::Pod& pod, const Labels* ns_labels) {
  if (label(pod.meta.annotations, kRedirectionAnnotation) == "enabled") return true;
  if (pod.host_network) return false;                                     // never redirected
  if (has(pod.meta.annotations, kSidecarStatusAnnotation)) return false;  // has a sidecar
  auto pod_mode = label(pod.meta.labels, kDataplaneModeLabel);
  if (pod_mode == "none") return false;
  if (pod_mode == "ambient") return true;
  return ns_labels && label(*ns_labels, kDataplaneModeLabel) == "ambient";
}

bool pod_is_workload(const manifest::Pod& pod) {
  // istiod keeps Running and Pending pods; a manifest without a phase is taken as running.
  return pod.phase.empty() || pod.phase == "Running" || pod.phase == "Pending";
}

std::string spiffe_identity(const Options& options, const std::string& ns, const std::string& sa) {
  return fmt::format("spiffe://{}/ns/{}/sa/{}", options.trust_domain, ns, sa);
}

// --- authorization -----------------------------------------------------------------------------

using istio::security::Authorization;
namespace sec = istio::security;

void add_string_matches(const std::vector<std::string>& values,
                        google::protobuf::RepeatedPtrField<sec::StringMatch>* out, bool principal) {
  for (auto v : values) {
    if (principal && v.rfind("spiffe://", 0) == 0) v = v.substr(9);
    auto* m = out->Add();
    if (v == "*") {
      m->mutable_presence();
    } else if (!v.empty() && v.front() == '*') {
      m->set_suffix(v.substr(1));
    } else if (!v.empty() && v.back() == '*') {
      m->set_prefix(v.substr(0, v.size() - 1));
    } else {
      m->set_exact(v);
    }
  }
}

void add_addresses(const std::vector<std::string>& values,
                   google::protobuf::RepeatedPtrField<sec::Address>* out) {
  for (const auto& v : values) {
    auto cidr = net::Cidr::parse(v);
    if (!cidr) continue;  // validated at parse time; istiod skips bad ones too
    auto* a = out->Add();
    a->set_address(ip_bytes(cidr->address.to_string()));
    a->set_length(cidr->prefix);
  }
}

void add_ports(const std::vector<std::string>& values,
               google::protobuf::RepeatedField<uint32_t>* out) {
  for (const auto& v : values) {
    uint32_t port = 0;
    if (v.empty() || v.size() > 5 || !std::all_of(v.begin(), v.end(), ::isdigit)) continue;
    port = static_cast<uint32_t>(std::stoul(v));
    if (port <= 65535) out->Add(port);
  }
}

void add_service_accounts(const std::vector<std::string>& values, const std::string& rule_ns,
                          google::protobuf::RepeatedPtrField<sec::ServiceAccountMatch>* out) {
  for (const auto& v : values) {
    auto* m = out->Add();
    auto slash = v.find('/');
    if (slash == std::string::npos) {
      m->set_namespace_(rule_ns);
      m->set_serviceaccount(v);
    } else {
      m->set_namespace_(v.substr(0, slash));
      m->set_serviceaccount(v.substr(slash + 1));
    }
  }
}

bool is_l4_condition(const std::string& key) {
  return key == "source.ip" || key == "source.namespace" || key == "source.principal" ||
         key == "destination.ip" || key == "destination.port";
}

// The fields only an HTTP proxy can check (istiod's httpOperations / httpSources lists).
template <class T>
using ListField = std::pair<const char*, std::vector<std::string> T::*>;
constexpr ListField<manifest::PolicyOperation> kHttpOperationFields[] = {
    {"hosts", &manifest::PolicyOperation::hosts},
    {"notHosts", &manifest::PolicyOperation::not_hosts},
    {"methods", &manifest::PolicyOperation::methods},
    {"notMethods", &manifest::PolicyOperation::not_methods},
    {"paths", &manifest::PolicyOperation::paths},
    {"notPaths", &manifest::PolicyOperation::not_paths},
};
constexpr ListField<manifest::PolicySource> kHttpSourceFields[] = {
    {"remoteIpBlocks", &manifest::PolicySource::remote_ip_blocks},
    {"notRemoteIpBlocks", &manifest::PolicySource::not_remote_ip_blocks},
    {"requestPrincipals", &manifest::PolicySource::request_principals},
    {"notRequestPrincipals", &manifest::PolicySource::not_request_principals},
};

// One AuthorizationPolicy rule -> one Rule whose clauses are AND-ed: all `to` operations (OR-ed
// within the clause), all `from` sources, then one clause per `when` condition. HTTP-only fields
// cannot be checked at L4: for ALLOW the rule is dropped (it never matches, so the policy allows
// less), for DENY they are left out (it matches more): both err on the side of denying.
std::optional<sec::Rule> convert_rule(const manifest::PolicyRule& rule, bool allow,
                                      const std::string& ns, std::set<std::string>& l7_found) {
  bool l7 = false;
  auto note = [&](bool present, const char* field) {
    if (!present) return;
    l7 = true;
    l7_found.insert(field);
  };
  sec::Rule out;
  if (!rule.to.empty()) {
    auto* clause = out.add_clauses();
    for (const auto& op : rule.to) {
      for (const auto& [name, member] : kHttpOperationFields) note(!(op.*member).empty(), name);
      auto* m = clause->add_matches();
      add_ports(op.ports, m->mutable_destination_ports());
      add_ports(op.not_ports, m->mutable_not_destination_ports());
    }
  }
  if (!rule.from.empty()) {
    auto* clause = out.add_clauses();
    for (const auto& src : rule.from) {
      for (const auto& [name, member] : kHttpSourceFields) note(!(src.*member).empty(), name);
      auto* m = clause->add_matches();
      add_addresses(src.ip_blocks, m->mutable_source_ips());
      add_addresses(src.not_ip_blocks, m->mutable_not_source_ips());
      add_string_matches(src.namespaces, m->mutable_namespaces(), false);
      add_string_matches(src.not_namespaces, m->mutable_not_namespaces(), false);
      add_service_accounts(src.service_accounts, ns, m->mutable_service_accounts());
      add_service_accounts(src.not_service_accounts, ns, m->mutable_not_service_accounts());
      add_string_matches(src.principals, m->mutable_principals(), true);
      add_string_matches(src.not_principals, m->mutable_not_principals(), true);
    }
  }
  for (const auto& when : rule.when) {
    if (!is_l4_condition(when.key)) {
      l7 = true;
      l7_found.insert(when.key);
    }
    auto* m = out.add_clauses()->add_matches();
    const auto& k = when.key;
    if (k == "source.namespace") {
      add_string_matches(when.values, m->mutable_namespaces(), false);
      add_string_matches(when.not_values, m->mutable_not_namespaces(), false);
    } else if (k == "source.principal") {
      add_string_matches(when.values, m->mutable_principals(), true);
      add_string_matches(when.not_values, m->mutable_not_principals(), true);
    } else if (k == "source.ip") {
      add_addresses(when.values, m->mutable_source_ips());
      add_addresses(when.not_values, m->mutable_not_source_ips());
    } else if (k == "destination.port") {
      add_ports(when.values, m->mutable_destination_ports());
      add_ports(when.not_values, m->mutable_not_destination_ports());
    } else if (k == "destination.ip") {
      add_addresses(when.values, m->mutable_destination_ips());
      add_addresses(when.not_values, m->mutable_not_destination_ips());
    }
  }
  if (allow && l7) return std::nullopt;
  return out;
}

sec::Match not_principals_presence() {
  sec::Match m;
  m.add_not_principals()->mutable_presence();
  return m;
}

const manifest::PeerAuthentication* oldest(std::vector<const manifest::PeerAuthentication*> v) {
  const manifest::PeerAuthentication* best = nullptr;
  for (const auto* p : v) {
    if (!best) {
      best = p;
      continue;
    }
    // Empty timestamps sort last; ties go to the first name (deterministic without timestamps).
    const auto& a = p->meta.creation_timestamp;
    const auto& b = best->meta.creation_timestamp;
    bool older = (!a.empty() && (b.empty() || a < b)) || (a == b && p->meta.name < best->meta.name);
    if (older) best = p;
  }
  return best;
}

bool mode_is(const manifest::PeerAuthentication* pa, const char* mode) {
  return pa && pa->mode == mode;
}
bool mode_unset(const manifest::PeerAuthentication* pa) {
  return !pa || pa->mode.empty() || pa->mode == "UNSET";
}
bool has_selector(const manifest::PeerAuthentication& pa) {
  return pa.selector && !pa.selector->empty();
}

class PeerAuthentications {
 public:
  PeerAuthentications(const ObjectSet& objects, const Options& options) : options_(options) {
    for (const auto& [key, pa] : objects.peer_authentications) {
      if (!has_selector(pa)) by_namespace_[pa.meta.namespace_].push_back(&pa);
      all_.push_back(&pa);
    }
  }

  bool any() const { return !all_.empty(); }

  const manifest::PeerAuthentication* namespace_policy(const std::string& ns) const {
    auto it = by_namespace_.find(ns);
    return it == by_namespace_.end() ? nullptr : oldest(it->second);
  }

  // The PeerAuthentication-derived policy keys a workload references (istiod's
  // convertedSelectorPeerAuthentications).
  std::vector<std::string> keys_for(const std::string& ns, const Labels& labels) const {
    const auto& root = options_.root_namespace;
    std::vector<const manifest::PeerAuthentication*> mesh, nsp, workload;
    for (const auto* pa : all_) {
      bool applies =
          (pa->meta.namespace_ == root && !pa->selector) ||
          (pa->meta.namespace_ == ns && (!pa->selector || subset(*pa->selector, labels)));
      if (!applies) continue;
      if (!has_selector(*pa)) {
        (pa->meta.namespace_ == root ? mesh : nsp).push_back(pa);
      } else if (pa->meta.namespace_ != root) {
        workload.push_back(pa);
      }
    }
    const auto* mesh_cfg = oldest(mesh);
    const auto* ns_cfg = oldest(nsp);
    const auto* wl_cfg = oldest(workload);
    bool strict = false;
    if (mesh_cfg) strict = mode_is(mesh_cfg, "STRICT");
    if (ns_cfg && !mode_unset(ns_cfg)) strict = mode_is(ns_cfg, "STRICT");
    std::string port_level_key;
    if (wl_cfg) {
      if (mode_is(wl_cfg, "STRICT")) strict = true;
      if (mode_is(wl_cfg, "PERMISSIVE") || mode_is(wl_cfg, "DISABLE")) strict = false;
      auto converted_key =
          wl_cfg->meta.namespace_ + "/" + kConvertedPeerAuthnPrefix + wl_cfg->meta.name;
      auto any_port = [&](auto pred) {
        for (const auto& [port, mode] : wl_cfg->port_level_mtls) {
          if (pred(mode)) return true;
        }
        return false;
      };
      if (!wl_cfg->port_level_mtls.empty()) {
        if (wl_cfg->mode == "STRICT") {
          if (any_port([](const std::string& m) { return m == "PERMISSIVE" || m == "DISABLE"; })) {
            port_level_key = converted_key;
            strict = false;
          }
        } else if (wl_cfg->mode == "PERMISSIVE" || wl_cfg->mode == "DISABLE") {
          if (any_port([](const std::string& m) { return m == "STRICT"; }))
            port_level_key = converted_key;
        } else if (strict) {
          if (any_port([](const std::string& m) { return m == "PERMISSIVE"; })) {
            port_level_key = converted_key;
            strict = false;
          }
        } else {
          strict = false;
          if (any_port([](const std::string& m) { return m == "STRICT"; }))
            port_level_key = converted_key;
        }
      }
    }
    std::set<std::string> keys;
    if (strict) keys.insert(root + "/" + kStaticStrictPolicy);
    if (!port_level_key.empty()) keys.insert(port_level_key);
    return {keys.begin(), keys.end()};
  }

 private:
  const Options& options_;
  std::map<std::string, std::vector<const manifest::PeerAuthentication*>> by_namespace_;
  std::vector<const manifest::PeerAuthentication*> all_;
};

// A workload PeerAuthentication with port-level mTLS -> DENY (istiod's convertPeerAuthentication).
std::optional<Authorization> convert_peer_authentication(const manifest::PeerAuthentication& pa,
                                                         const PeerAuthentications& index,
                                                         const Options& options) {
  if (pa.meta.namespace_ == options.root_namespace || !pa.selector || pa.port_level_mtls.empty()) {
    return std::nullopt;
  }
  const auto* ns_cfg = index.namespace_policy(pa.meta.namespace_);
  const auto* root_cfg = index.namespace_policy(options.root_namespace);
  const auto* self = &pa;
  std::vector<sec::Match> clauses;  // AND-ed in one rule at the end
  std::vector<sec::Rule> rules;
  if (pa.mode == "STRICT") clauses.push_back(not_principals_presence());
  bool found_non_strict = false;
  for (const auto& [port, mode] : pa.port_level_mtls) {
    if (mode == "STRICT") {
      bool parent_strict = mode_is(self, "STRICT") ||
                           (mode_unset(self) && mode_is(ns_cfg, "STRICT")) ||
                           ((!ns_cfg || mode_unset(ns_cfg)) && mode_is(root_cfg, "STRICT"));
      if (parent_strict) continue;
      sec::Rule rule;
      auto m = not_principals_presence();
      m.add_destination_ports(port);
      *rule.add_clauses()->add_matches() = std::move(m);
      rules.push_back(std::move(rule));
    } else if (mode == "PERMISSIVE" || mode == "DISABLE") {
      if (pa.mode == "PERMISSIVE" || pa.mode == "DISABLE") continue;
      if (mode_unset(self) &&
          ((ns_cfg && !mode_is(ns_cfg, "STRICT")) ||
           (!ns_cfg && root_cfg && !mode_is(root_cfg, "STRICT")) || (!ns_cfg && !root_cfg))) {
        continue;
      }
      found_non_strict = true;
      sec::Match m;
      m.add_not_destination_ports(port);
      clauses.push_back(std::move(m));
    }
  }
  if (pa.mode == "STRICT" && !found_non_strict) return std::nullopt;
  if (clauses.empty() && rules.empty()) return std::nullopt;
  bool merge_strict = (mode_is(root_cfg, "STRICT") &&
                       (!ns_cfg || mode_unset(ns_cfg) || mode_is(ns_cfg, "STRICT"))) ||
                      mode_is(ns_cfg, "STRICT");
  if (merge_strict && found_non_strict) clauses.push_back(not_principals_presence());
  Authorization out;
  out.set_name(kConvertedPeerAuthnPrefix + pa.meta.name);
  out.set_namespace_(pa.meta.namespace_);
  out.set_scope(sec::WORKLOAD_SELECTOR);
  out.set_action(sec::DENY);
  for (auto& r : rules) *out.add_rules() = std::move(r);
  if (!clauses.empty()) {
    auto* rule = out.add_rules();
    for (auto& m : clauses) *rule->add_clauses()->add_matches() = std::move(m);
  }
  return out;
}

}  // namespace

std::string pod_uid(const std::string& cluster_id, const std::string& ns, const std::string& name) {
  return fmt::format("{}//Pod/{}/{}", cluster_id, ns, name);
}

std::string service_hostname(const std::string& name, const std::string& ns,
                             const std::string& domain_suffix) {
  return fmt::format("{}.{}.svc.{}", name, ns, domain_suffix);
}

std::optional<Authorization> convert_authorization_policy(
    const manifest::AuthorizationPolicy& policy, const Options& options,
    std::vector<std::string>* warnings) {
  if (!policy.target_refs.empty()) return std::nullopt;  // for a waypoint, not for ztunnel
  bool allow = policy.action == "ALLOW";
  if (!allow && policy.action != "DENY") {
    if (warnings) {
      warnings->push_back(
          fmt::format("AuthorizationPolicy {}/{}: ztunnel does not support the {} action",
                      policy.meta.namespace_, policy.meta.name, policy.action));
    }
    return std::nullopt;
  }
  Authorization out;
  out.set_name(policy.meta.name);
  out.set_namespace_(policy.meta.namespace_);
  if (policy.selector) {
    out.set_scope(sec::WORKLOAD_SELECTOR);
  } else {
    out.set_scope(policy.meta.namespace_ == options.root_namespace ? sec::GLOBAL : sec::NAMESPACE);
  }
  out.set_action(allow ? sec::ALLOW : sec::DENY);
  out.set_dry_run(policy.dry_run);
  std::set<std::string> l7;
  for (const auto& rule : policy.rules) {
    if (auto converted = convert_rule(rule, allow, policy.meta.namespace_, l7)) {
      *out.add_rules() = std::move(*converted);
    }
  }
  if (!l7.empty() && warnings) {
    std::string found;
    for (const auto& f : l7) found += (found.empty() ? "" : ", ") + f;
    warnings->push_back(fmt::format(
        "AuthorizationPolicy {}/{}: ztunnel does not enforce HTTP attributes (found: {}); {}",
        policy.meta.namespace_, policy.meta.name, found,
        allow ? "rules with them are left out of the ALLOW policy"
              : "the DENY policy is enforced without them"));
  }
  return out;
}

// --- waypoint L7 configuration ----------------------------------------------------------------

// The DestinationRule host `host` (written in namespace `ns`) names service `name`.`svc_ns`, as
// Istio and the waypoint read it: a short name is relative to the rule's namespace, a name with
// a dot is taken as it is (so only the FQDN; "name.ns" names no service).
bool host_names_service(const std::string& host, const std::string& ns, const std::string& name,
                        const std::string& svc_ns, const Options& options) {
  if (host == name) return ns == svc_ns;
  return host == service_hostname(name, svc_ns, options.domain_suffix);
}

// Whether an object of namespace `own` with `export_to` is visible in namespace `ns` (empty:
// everywhere).
bool exported_to(const std::vector<std::string>& export_to, const std::string& own,
                 const std::string& ns) {
  if (export_to.empty()) return true;
  return std::any_of(export_to.begin(), export_to.end(), [&](const std::string& e) {
    return e == "*" || e == ns || (e == "." && own == ns);
  });
}

// The VirtualService host `host` (written in namespace `ns`) names the service with FQDN
// `fqdn`, as Istio resolves it: a short name is in the VirtualService's namespace, a name
// with a dot is an FQDN, "*" and "*.<suffix>" are wildcards.
bool vs_host_names(const std::string& host, const std::string& ns, const std::string& fqdn,
                   const Options& options) {
  if (host == "*") return true;
  if (host.starts_with("*.")) {
    const std::string_view suffix(host.data() + 1, host.size() - 1);
    return fqdn.size() > suffix.size() && fqdn.ends_with(suffix);
  }
  if (host.find('.') == std::string::npos) {
    return service_hostname(host, ns, options.domain_suffix) == fqdn;
  }
  return host == fqdn;
}

// Whether a mesh VirtualService is one Istio applies at `waypoint` for the Service `svc_key`:
// bound to the mesh (no gateways, or "mesh"), exported to the waypoint's namespace, in the
// Service's namespace or the waypoint's, and naming the Service in its hosts.
bool vs_applies(const manifest::VirtualService& vs, const Waypoint& waypoint,
                const manifest::Service& svc, const Options& options) {
  const auto& gw = vs.gateways;
  if (!gw.empty() && std::find(gw.begin(), gw.end(), "mesh") == gw.end()) return false;
  const auto& ns = vs.meta.namespace_;
  if (!exported_to(vs.export_to, ns, waypoint.namespace_)) return false;
  if (ns != svc.meta.namespace_ && ns != waypoint.namespace_) return false;
  const std::string fqdn =
      service_hostname(svc.meta.name, svc.meta.namespace_, options.domain_suffix);
  return std::any_of(vs.hosts.begin(), vs.hosts.end(),
                     [&](const std::string& h) { return vs_host_names(h, ns, fqdn, options); });
}

std::string to_yaml(const YAML::Node& node) {
  YAML::Emitter out;
  out << node;
  return std::string(out.c_str()) + "\n";
}

// A RequestAuthentication's YAML with each jwksUri that `jwks` has keys for replaced by them.
std::string with_inline_jwks(const std::string& yaml,
                             const std::map<std::string, std::string>& jwks) {
  YAML::Node node = YAML::Load(yaml);
  for (auto rule : node["spec"]["jwtRules"]) {
    if (!rule["jwksUri"]) continue;
    auto it = jwks.find(rule["jwksUri"].as<std::string>());
    if (it == jwks.end()) continue;
    rule.remove("jwksUri");
    rule["jwks"] = it->second;
  }
  return to_yaml(node);
}

// A VirtualService's YAML with spec.hosts replaced by the FQDNs of the services it applies to at
// this waypoint: Istio decides per service (a host naming a service of a namespace that is
// neither the VirtualService's nor the waypoint's is not used there), and the waypoint then
// applies it to exactly those.
std::string with_hosts(const std::string& yaml, const std::vector<std::string>& hosts) {
  YAML::Node node = YAML::Load(yaml);
  YAML::Node list(YAML::NodeType::Sequence);
  for (const auto& h : hosts) list.push_back(h);
  node["spec"]["hosts"] = list;
  return to_yaml(node);
}

// `rule`'s YAML with the subsets of `others` (same host and namespace, in Istio's order) that it
// has none of that name for appended, as Istio merges them; `rule.subsets` follows.
std::string with_merged_subsets(manifest::DestinationRule& rule,
                                const std::vector<const manifest::DestinationRule*>& others) {
  YAML::Node node = YAML::Load(rule.yaml);
  YAML::Node subsets = node["spec"]["subsets"];
  if (!subsets || !subsets.IsSequence()) subsets = YAML::Node(YAML::NodeType::Sequence);
  for (const auto* other : others) {
    const YAML::Node theirs = YAML::Load(other->yaml)["spec"]["subsets"];
    for (size_t i = 0; i < theirs.size() && i < other->subsets.size(); ++i) {
      const auto& [name, labels] = other->subsets[i];
      const bool taken = std::any_of(rule.subsets.begin(), rule.subsets.end(),
                                     [&](const auto& s) { return s.first == name; });
      if (taken) continue;
      rule.subsets.emplace_back(name, labels);
      subsets.push_back(theirs[i]);
    }
  }
  node["spec"]["subsets"] = subsets;
  return to_yaml(node);
}

// The SubsetEndpoints document of a DestinationRule with subsets (waypoint/config/parse.h): for
// each subset, the pods ("<namespace>/<name>") of `svc` whose labels include the subset's, as
// istiod picks a subset's endpoints. A waypoint knows no pod labels; it keeps, of the service's
// endpoints, those of these workloads.
std::string subset_endpoints(const manifest::DestinationRule& rule, const manifest::Service& svc,
                             const ObjectSet& objects) {
  YAML::Emitter out;
  out << YAML::BeginMap << YAML::Key << "apiVersion" << YAML::Value << "ambientmesh.io/v1"
      << YAML::Key << "kind" << YAML::Value << "SubsetEndpoints" << YAML::Key << "metadata"
      << YAML::Value << YAML::BeginMap << YAML::Key << "name" << YAML::Value << rule.meta.name
      << YAML::Key << "namespace" << YAML::Value << rule.meta.namespace_ << YAML::EndMap
      << YAML::Key << "spec" << YAML::Value << YAML::BeginMap << YAML::Key << "subsets"
      << YAML::Value << YAML::BeginSeq;
  for (const auto& [name, labels] : rule.subsets) {
    out << YAML::BeginMap << YAML::Key << "name" << YAML::Value << name << YAML::Key << "workloads"
        << YAML::Value << YAML::BeginSeq;
    if (svc.selector && !svc.selector->empty()) {
      // (the pods of the service's namespace: keys "<namespace>/<name>")
      for (auto it = objects.pods.lower_bound(svc.meta.namespace_ + "/");
           it != objects.pods.end() && it->second.meta.namespace_ == svc.meta.namespace_; ++it) {
        const auto& pod = it->second;
        if (!subset(*svc.selector, pod.meta.labels) || !subset(labels, pod.meta.labels)) continue;
        out << pod.meta.namespace_ + "/" + pod.meta.name;
      }
    }
    out << YAML::EndSeq << YAML::EndMap;
  }
  out << YAML::EndSeq << YAML::EndMap << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

// For each waypoint Gateway, the objects that configure it, as one YAML stream: HTTPRoutes and
// GRPCRoutes with a Service parentRef whose Service uses the waypoint, the mesh VirtualServices
// that apply to such Services (their hosts cut down to those Services), DestinationRules for those
// Services (with the SubsetEndpoints of their subsets), and AuthorizationPolicies (with the
// MeshConfig ConfigMap's ext_authz providers when one is CUSTOM), then RequestAuthentications,
// whose targetRefs name the Gateway or such a Service. Every waypoint gets a resource, empty when
// nothing applies, so that removing the last route is a change too.
void compute_waypoint_configs(const ObjectSet& objects, const Waypoints& waypoints,
                              const Options& options, MeshSnapshot& snapshot) {
  for (const auto& [key, waypoint] : waypoints.all()) {
    std::set<std::string> services;  // "ns/name" of the Services using this waypoint
    for (const auto& [k, svc] : objects.services) {
      if (label(svc.meta.labels, kManagedGatewayLabel) == kManagedByMesh) continue;
      const auto* w = waypoints.for_target(svc.meta, "service");
      if (w && w->name == waypoint.name && w->namespace_ == waypoint.namespace_) services.insert(k);
    }
    std::vector<const std::string*> documents;
    std::deque<std::string> rewritten;  // (stable addresses for `documents`)
    auto attached = [&](const ObjectMeta& meta, const std::vector<manifest::RouteParentRef>& refs) {
      for (const auto& parent : refs) {
        // The manifest reader fills an absent group with Gateway API's default; the waypoint
        // reads an absent group as core, so both mean the Service here.
        bool core = parent.group.empty() || parent.group == "core" ||
                    parent.group == "gateway.networking.k8s.io";
        if (parent.kind != "Service" || !core) continue;
        auto ns = parent.namespace_.empty() ? meta.namespace_ : parent.namespace_;
        if (services.contains(ns + "/" + parent.name)) return true;
      }
      return false;
    };
    for (const auto& [k, route] : objects.http_routes) {
      if (attached(route.meta, route.parent_refs)) documents.push_back(&route.yaml);
    }
    for (const auto& [k, route] : objects.grpc_routes) {
      if (attached(route.meta, route.parent_refs)) documents.push_back(&route.yaml);
    }
    for (const auto& [k, vs] : objects.virtual_services) {
      std::vector<std::string> hosts;
      for (const auto& s : services) {
        const auto& svc = objects.services.at(s);
        if (!vs_applies(vs, waypoint, svc, options)) continue;
        hosts.push_back(
            service_hostname(svc.meta.name, svc.meta.namespace_, options.domain_suffix));
      }
      if (hosts.empty()) continue;
      rewritten.push_back(with_hosts(vs.yaml, hosts));
      documents.push_back(&rewritten.back());
    }
    // One DestinationRule per Service: the waypoint takes one per host. As Istio looks a host's
    // rule up: in the proxy's (the waypoint's) namespace, else in the service's, else in the
    // root namespace; never in another; and only rules exported to the waypoint's namespace.
    // The first of those namespaces with a rule for the host is the only one looked at. Istio
    // merges the rules of one namespace, the traffic policy coming from the oldest that has one:
    // so that one wins here, then the oldest, then the first by key (namespace/name). A rule
    // with a workloadSelector still takes its namespace's place, but a waypoint (an inbound
    // lookup in Istio) never applies it: a namespace with only such rules gives the service no
    // rule. Per compute, so the rules passed over are logged at debug only.
    using Candidate = std::pair<const std::string*, const manifest::DestinationRule*>;
    std::map<std::string, std::vector<Candidate>> rules;  // by service, best first below
    auto rank = [&](const manifest::DestinationRule& r, const std::string& svc_ns) {
      const auto& ns = r.meta.namespace_;
      int where = ns == waypoint.namespace_      ? 0
                  : ns == svc_ns                 ? 1
                  : ns == options.root_namespace ? 2
                                                 : 3;
      const auto& t = r.meta.creation_timestamp;
      return std::make_tuple(where, r.has_workload_selector, !r.has_traffic_policy, t.empty(), t);
    };
    for (const auto& [k, rule] : objects.destination_rules) {
      for (const auto& svc_key : services) {
        const auto& svc = objects.services.at(svc_key);
        if (!host_names_service(rule.host, rule.meta.namespace_, svc.meta.name, svc.meta.namespace_,
                                options)) {
          continue;
        }
        if (!exported_to(rule.export_to, rule.meta.namespace_, waypoint.namespace_)) {
          ZT_LOG_DEBUG(
              "component=ambient DestinationRule {} not applied at waypoint {}: not exported to "
              "namespace {}",
              k, key, waypoint.namespace_);
          continue;
        }
        if (std::get<0>(rank(rule, svc.meta.namespace_)) == 3) {
          ZT_LOG_DEBUG(
              "component=ambient DestinationRule {} not applied at waypoint {}: its namespace is "
              "neither the waypoint's, service {}'s nor the root namespace",
              k, key, svc_key);
          continue;
        }
        rules[svc_key].emplace_back(&k, &rule);
      }
    }
    for (auto& [svc_key, candidates] : rules) {
      const auto& svc = objects.services.at(svc_key);
      // (rules are visited in key order, so an equal rank keeps the first by key)
      std::stable_sort(
          candidates.begin(), candidates.end(), [&](const Candidate& a, const Candidate& b) {
            return rank(*a.second, svc.meta.namespace_) < rank(*b.second, svc.meta.namespace_);
          });
      const auto& [winner_key, winner] = candidates.front();
      if (winner->has_workload_selector) {
        ZT_LOG_DEBUG(
            "component=ambient DestinationRule {} not applied at waypoint {}: a workloadSelector "
            "is not applied at waypoints, and service {} gets no rule from another namespace",
            *winner_key, key, svc_key);
        continue;
      }
      // Istio merges the rules of one namespace for a host: the winner's traffic policy, and the
      // subsets of the others that it has no subset of that name for.
      manifest::DestinationRule merged = *winner;
      std::vector<const manifest::DestinationRule*> subset_sources;
      for (size_t i = 1; i < candidates.size(); ++i) {
        const auto* other = candidates[i].second;
        const bool mergeable = other->meta.namespace_ == winner->meta.namespace_ &&
                               !other->has_workload_selector && !other->subsets.empty();
        ZT_LOG_DEBUG(
            "component=ambient DestinationRule {} not applied at waypoint {}: {} sets the traffic "
            "policy of service {}{}",
            *candidates[i].first, key, *winner_key, svc_key,
            mergeable ? " (its subsets are merged in)" : "");
        if (!mergeable) continue;
        subset_sources.push_back(other);
      }
      if (subset_sources.empty()) {
        documents.push_back(&winner->yaml);
      } else {
        rewritten.push_back(with_merged_subsets(merged, subset_sources));
        documents.push_back(&rewritten.back());
      }
      if (!merged.subsets.empty()) {
        rewritten.push_back(subset_endpoints(merged, svc, objects));
        documents.push_back(&rewritten.back());
      }
    }
    // A policy's targetRefs name this waypoint's Gateway or a Service using it.
    auto targets = [&](const ObjectMeta& meta, const std::vector<manifest::PolicyTargetRef>& refs) {
      for (const auto& ref : refs) {
        auto ns = ref.namespace_.empty() ? meta.namespace_ : ref.namespace_;
        if (ref.kind == "Gateway" && ns == waypoint.namespace_ && ref.name == waypoint.name) {
          return true;
        }
        if (ref.kind == "Service" && services.contains(ns + "/" + ref.name)) return true;
      }
      return false;
    };
    bool custom = false;  // a CUSTOM policy applies: the waypoint needs the mesh's authorizers
    for (const auto& [k, policy] : objects.authorization_policies) {
      if (!targets(policy.meta, policy.target_refs)) continue;
      documents.push_back(&policy.yaml);
      custom = custom || policy.action == "CUSTOM";
    }
    // Istio's MeshConfig: the ConfigMap `istio` in the root namespace (istiod's).
    if (auto it = objects.mesh_configs.find(options.root_namespace + "/istio");
        custom && it != objects.mesh_configs.end() && !it->second.yaml.empty()) {
      documents.push_back(&it->second.yaml);
    }
    for (const auto& [k, authn] : objects.request_authentications) {
      if (!targets(authn.meta, authn.target_refs)) continue;
      const bool resolved =
          std::any_of(authn.jwks_uris.begin(), authn.jwks_uris.end(),
                      [&](const std::string& uri) { return options.jwks_by_uri.contains(uri); });
      if (!resolved) {
        documents.push_back(&authn.yaml);
        continue;
      }
      rewritten.push_back(with_inline_jwks(authn.yaml, options.jwks_by_uri));
      documents.push_back(&rewritten.back());
    }
    std::string yaml;
    for (const auto* doc : documents) {
      if (!yaml.empty()) yaml += "---\n";
      yaml += *doc;
      if (!yaml.empty() && yaml.back() != '\n') yaml += '\n';
    }
    ambientmesh::waypoint::v1::WaypointConfig config;
    config.set_yaml(std::move(yaml));
    snapshot.waypoint_configs.emplace(key, std::move(config));
  }
}

std::set<std::string> waypoint_jwks_uris(const manifest::ObjectSet& objects) {
  std::set<std::string> out;
  for (const auto& [k, authn] : objects.request_authentications) {
    if (!authn.target_refs.empty()) out.insert(authn.jwks_uris.begin(), authn.jwks_uris.end());
  }
  return out;
}

MeshSnapshot compute(const manifest::ObjectSet& objects, const Options& options) {
  MeshSnapshot snapshot;
  Waypoints waypoints(objects, options);
  PeerAuthentications peer_authns(objects, options);

  // Authorizations, and which WORKLOAD_SELECTOR ones exist (to bind them to workloads).
  std::vector<std::string> warnings;
  std::vector<const manifest::AuthorizationPolicy*> selector_policies;
  for (const auto& [key, policy] : objects.authorization_policies) {
    auto converted = convert_authorization_policy(policy, options, &warnings);
    if (!converted) continue;
    if (converted->scope() == sec::WORKLOAD_SELECTOR) selector_policies.push_back(&policy);
    snapshot.authorizations.emplace(key, std::move(*converted));
  }
  for (const auto& w : warnings) ZT_LOG_DEBUG("component=ambient {}", w);
  if (peer_authns.any()) {
    Authorization strict;
    strict.set_name(kStaticStrictPolicy);
    strict.set_namespace_(options.root_namespace);
    strict.set_scope(sec::WORKLOAD_SELECTOR);
    strict.set_action(sec::DENY);
    *strict.add_rules()->add_clauses()->add_matches() = not_principals_presence();
    snapshot.authorizations.emplace(options.root_namespace + "/" + kStaticStrictPolicy,
                                    std::move(strict));
  }
  for (const auto& [key, pa] : objects.peer_authentications) {
    if (auto converted = convert_peer_authentication(pa, peer_authns, options)) {
      snapshot.authorizations.emplace(converted->namespace_() + "/" + converted->name(),
                                      std::move(*converted));
    }
  }

  // Services.
  struct ServiceInfo {
    const manifest::Service* source;
    std::string key;  // "ns/hostname"
  };
  std::map<std::string, std::vector<ServiceInfo>> services_by_namespace;
  for (const auto& [k, svc] : objects.services) {
    auto service = make_service(svc, waypoints, options);
    auto key = svc.meta.namespace_ + "/" + service.hostname();
    services_by_namespace[svc.meta.namespace_].push_back({&svc, key});
    istio::workload::Address address;
    *address.mutable_service() = std::move(service);
    snapshot.addresses.emplace(std::move(key), std::move(address));
  }

  // Workloads.
  std::string trust_domain = options.trust_domain == "cluster.local" ? "" : options.trust_domain;
  for (const auto& [k, pod] : objects.pods) {
    if (pod.ips.empty() || !pod_is_workload(pod)) continue;
    const auto* ns_labels = namespace_labels(objects, pod.meta.namespace_);
    istio::workload::Workload w;
    w.set_uid(pod_uid(options.cluster_id, pod.meta.namespace_, pod.meta.name));
    w.set_name(pod.meta.name);
    w.set_namespace_(pod.meta.namespace_);
    for (const auto& ip : pod.ips) w.add_addresses(ip_bytes(ip));
    w.set_network(options.network);
    w.set_cluster_id(options.cluster_id);
    w.set_service_account(pod.service_account_name);
    w.set_trust_domain(trust_domain);
    w.set_node(pod.node_name);
    if (pod.host_network) w.set_network_mode(istio::workload::HOST_NETWORK);
    w.set_tunnel_protocol(captured(pod, ns_labels) ? istio::workload::HBONE
                                                   : istio::workload::NONE);
    if (label(pod.meta.labels, kTunnelLabel) == "http") {
      w.set_tunnel_protocol(istio::workload::HBONE);
      w.set_native_tunnel(true);
    }
    w.set_status(pod.ready.value_or(true) ? istio::workload::HEALTHY : istio::workload::UNHEALTHY);
    auto [workload_name, workload_type] = workload_name_and_type(pod);
    auto [canonical_name, canonical_revision] = canonical_service(pod.meta.labels, workload_name);
    w.set_workload_name(workload_name);
    w.set_workload_type(workload_type);
    w.set_canonical_name(canonical_name);
    w.set_canonical_revision(canonical_revision);
    if (!waypoints.is_instance(pod)) {
      if (const auto* wp = waypoints.for_target(pod.meta, "workload")) {
        *w.mutable_waypoint() = wp->address;
      }
    }
    // Services selecting the pod: same namespace, non-empty selector.
    for (const auto& info : services_by_namespace[pod.meta.namespace_]) {
      const auto& svc = *info.source;
      if (!svc.selector || svc.selector->empty() || !subset(*svc.selector, pod.meta.labels)) {
        continue;
      }
      auto& ports = (*w.mutable_services())[info.key];
      for (const auto& port : svc.ports) {
        uint32_t target = port.target_port;
        if (!port.target_port_name.empty()) {
          auto it = std::find_if(pod.ports.begin(), pod.ports.end(),
                                 [&](const auto& cp) { return cp.name == port.target_port_name; });
          if (it == pod.ports.end()) continue;  // not served by this pod
          target = it->container_port;
        }
        auto* p = ports.add_ports();
        p->set_service_port(port.port);
        p->set_target_port(target);
      }
    }
    // Policies: selecting WORKLOAD_SELECTOR policies (sorted), then PeerAuthentication ones.
    std::vector<std::string> policies;
    for (const auto* policy : selector_policies) {
      const auto& ns = policy->meta.namespace_;
      if (ns != pod.meta.namespace_ && ns != options.root_namespace) continue;
      if (!subset(*policy->selector, pod.meta.labels)) continue;
      policies.push_back(ns + "/" + policy->meta.name);
    }
    std::sort(policies.begin(), policies.end());
    for (auto& key : peer_authns.keys_for(pod.meta.namespace_, pod.meta.labels)) {
      policies.push_back(std::move(key));
    }
    for (auto& key : policies) w.add_authorization_policies(std::move(key));

    if (!pod.node_name.empty()) {
      snapshot.identities_by_node[pod.node_name].insert(
          spiffe_identity(options, pod.meta.namespace_, pod.service_account_name));
    }
    istio::workload::Address address;
    auto uid = w.uid();
    *address.mutable_workload() = std::move(w);
    snapshot.addresses.emplace(std::move(uid), std::move(address));
  }
  compute_waypoint_configs(objects, waypoints, options, snapshot);
  return snapshot;
}

}  // namespace zt::meshd::ambient
