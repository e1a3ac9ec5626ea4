// Conversion of manifest documents into objects. Inside this file a validation failure is thrown
// as Invalid{field, problem} from the field readers and caught once per document in convert(),
// which turns it into a value; nothing thrown here escapes the file.
#include "meshd/manifest/parse.h"

#include <algorithm>
#include <charconv>

#include <fmt/format.h>

#include "common/base/log.h"
#include "common/net/address.h"
#include "common/yaml/load.h"
#include "waypoint/authz/parse.h"
#include "waypoint/config/parse.h"

namespace zt::meshd::manifest {
namespace {

struct Invalid {
  std::string field;
  std::string problem;
};

std::string join(const std::string& path, std::string_view key) {
  return path.empty() ? std::string(key) : fmt::format("{}.{}", path, key);
}

std::string index(const std::string& path, size_t i) { return fmt::format("{}[{}]", path, i); }

bool absent(const YAML::Node& node) { return !node.IsDefined() || node.IsNull(); }

// Reader for one mapping node at a known field path. Every accessor names the offending field.
class Fields {
 public:
  Fields(YAML::Node node, std::string path) : node_(std::move(node)), path_(std::move(path)) {}

  const std::string& path() const { return path_; }
  const YAML::Node& node() const { return node_; }

  YAML::Node raw(std::string_view key) const { return node_[std::string(key)]; }

  std::optional<std::string> opt_string(std::string_view key) const {
    auto n = raw(key);
    if (absent(n)) return std::nullopt;
    if (!n.IsScalar()) throw Invalid{join(path_, key), "must be a string"};
    return n.Scalar();
  }
  std::string string(std::string_view key, std::string fallback = {}) const {
    return opt_string(key).value_or(std::move(fallback));
  }
  std::string required_string(std::string_view key) const {
    auto v = opt_string(key);
    if (!v || v->empty()) throw Invalid{join(path_, key), "is required"};
    return *v;
  }

  std::optional<uint32_t> opt_uint(std::string_view key, uint32_t min, uint32_t max) const {
    auto n = raw(key);
    if (absent(n)) return std::nullopt;
    return uint_value(n, join(path_, key), min, max);
  }

  bool boolean(std::string_view key) const {
    auto n = raw(key);
    if (absent(n)) return false;
    if (n.IsScalar()) {
      if (n.Scalar() == "true") return true;
      if (n.Scalar() == "false") return false;
    }
    throw Invalid{join(path_, key), "must be true or false"};
  }

  std::optional<Fields> opt_map(std::string_view key) const {
    auto n = raw(key);
    if (absent(n)) return std::nullopt;
    if (!n.IsMap()) throw Invalid{join(path_, key), "must be a map"};
    return Fields(n, join(path_, key));
  }
  Fields map_or_empty(std::string_view key) const {
    auto m = opt_map(key);
    return m ? *m : Fields(YAML::Node(YAML::NodeType::Map), join(path_, key));
  }

  // Each element of a list of maps, with its path ("spec.ports[2]").
  std::vector<Fields> maps(std::string_view key) const {
    std::vector<Fields> out;
    auto n = raw(key);
    if (absent(n)) return out;
    auto path = join(path_, key);
    if (!n.IsSequence()) throw Invalid{path, "must be a list"};
    for (size_t i = 0; i < n.size(); ++i) {
      if (!n[i].IsMap()) throw Invalid{index(path, i), "must be a map"};
      out.emplace_back(n[i], index(path, i));
    }
    return out;
  }

  std::vector<std::string> strings(std::string_view key) const {
    std::vector<std::string> out;
    auto n = raw(key);
    if (absent(n)) return out;
    auto path = join(path_, key);
    if (!n.IsSequence()) throw Invalid{path, "must be a list of strings"};
    for (size_t i = 0; i < n.size(); ++i) {
      if (!n[i].IsScalar()) throw Invalid{index(path, i), "must be a string"};
      out.push_back(n[i].Scalar());
    }
    return out;
  }

  std::optional<Labels> opt_string_map(std::string_view key) const {
    auto n = raw(key);
    if (absent(n)) return std::nullopt;
    auto path = join(path_, key);
    if (!n.IsMap()) throw Invalid{path, "must be a map of strings"};
    Labels out;
    for (const auto& entry : n) {
      if (!entry.first.IsScalar()) throw Invalid{path, "keys must be strings"};
      auto name = entry.first.Scalar();
      if (!entry.second.IsScalar()) throw Invalid{join(path, name), "must be a string"};
      out[name] = entry.second.Scalar();
    }
    return out;
  }
  Labels string_map(std::string_view key) const { return opt_string_map(key).value_or(Labels{}); }

  static uint32_t uint_value(const YAML::Node& n, const std::string& path, uint32_t min,
                             uint32_t max) {
    if (n.IsScalar()) {
      const auto& text = n.Scalar();
      uint64_t value = 0;
      auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
      if (ec == std::errc() && end == text.data() + text.size() && !text.empty() && value >= min &&
          value <= max) {
        return static_cast<uint32_t>(value);
      }
    }
    throw Invalid{path, fmt::format("must be an integer from {} to {}", min, max)};
  }

 private:
  YAML::Node node_;
  std::string path_;
};

void check_one_of(const std::string& value, std::initializer_list<std::string_view> allowed,
                  const std::string& field) {
  for (auto a : allowed) {
    if (value == a) return;
  }
  std::string list;
  for (auto a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
  throw Invalid{field, fmt::format("must be one of {} (got {})", list, net::quote(value))};
}

void check_ip(const std::string& value, const std::string& field) {
  if (!net::parse_ip(value))
    throw Invalid{field, "must be an IP address, got " + net::quote(value)};
}

void check_ip_blocks(const std::vector<std::string>& values, const std::string& field) {
  for (size_t i = 0; i < values.size(); ++i) {
    if (!net::Cidr::parse(values[i])) {
      throw Invalid{index(field, i), "must be an IP address or CIDR, got " + net::quote(values[i])};
    }
  }
}

void check_ports(const std::vector<std::string>& values, const std::string& field) {
  for (size_t i = 0; i < values.size(); ++i) {
    Fields::uint_value(YAML::Node(values[i]), index(field, i), 0, 65535);
  }
}

ObjectMeta read_meta(const Fields& doc, bool namespaced) {
  ObjectMeta meta;
  auto md = doc.map_or_empty("metadata");
  meta.name = md.string("name");
  meta.generate_name = md.string("generateName");
  meta.uid = md.string("uid");
  meta.creation_timestamp = md.string("creationTimestamp");
  meta.namespace_ = namespaced ? md.string("namespace", "default") : "";
  if (meta.namespace_.empty() && namespaced) meta.namespace_ = "default";
  meta.labels = md.string_map("labels");
  meta.annotations = md.string_map("annotations");
  for (const auto& ref : md.maps("ownerReferences")) {
    OwnerReference owner;
    owner.api_version = ref.string("apiVersion");
    owner.kind = ref.required_string("kind");
    owner.name = ref.required_string("name");
    owner.controller = ref.boolean("controller");
    meta.owner_references.push_back(std::move(owner));
  }
  return meta;
}

std::optional<Labels> read_selector(const Fields& spec) {
  auto selector = spec.opt_map("selector");
  if (!selector) return std::nullopt;
  return selector->string_map("matchLabels");
}

Pod read_pod(const Fields& doc, ObjectMeta meta) {
  Pod pod;
  pod.meta = std::move(meta);
  pod.terminating = !absent(doc.map_or_empty("metadata").raw("deletionTimestamp"));
  auto spec = doc.map_or_empty("spec");
  pod.node_name = spec.string("nodeName");
  pod.service_account_name = spec.string("serviceAccountName");
  if (pod.service_account_name.empty()) pod.service_account_name = spec.string("serviceAccount");
  if (pod.service_account_name.empty()) pod.service_account_name = "default";
  pod.host_network = spec.boolean("hostNetwork");
  for (const auto& container : spec.maps("containers")) {
    // Only the simulator reads it: a malformed command is "" here, not an error for meshd.
    auto command = container.raw("command");
    pod.commands.push_back(!absent(command) && command.IsSequence() && command.size() > 0 &&
                                   command[0].IsScalar()
                               ? command[0].Scalar()
                               : std::string());
    for (const auto& port : container.maps("ports")) {
      ContainerPort p;
      p.name = port.string("name");
      auto number = port.opt_uint("containerPort", 1, 65535);
      if (!number) throw Invalid{join(port.path(), "containerPort"), "is required"};
      p.container_port = *number;
      p.protocol = port.string("protocol", "TCP");
      pod.ports.push_back(std::move(p));
    }
  }
  auto status = doc.map_or_empty("status");
  if (auto ip = status.opt_string("podIP"); ip && !ip->empty()) {
    check_ip(*ip, join(status.path(), "podIP"));
    pod.ips.push_back(*ip);
  }
  for (const auto& entry : status.maps("podIPs")) {
    auto ip = entry.required_string("ip");
    check_ip(ip, join(entry.path(), "ip"));
    if (std::find(pod.ips.begin(), pod.ips.end(), ip) == pod.ips.end()) pod.ips.push_back(ip);
  }
  pod.phase = status.string("phase");
  if (!pod.phase.empty()) {
    check_one_of(pod.phase, {"Pending", "Running", "Succeeded", "Failed", "Unknown"},
                 join(status.path(), "phase"));
  }
  for (const auto& condition : status.maps("conditions")) {
    if (condition.string("type") != "Ready") continue;
    pod.ready = condition.string("status") == "True";
  }
  return pod;
}

Service read_service(const Fields& doc, ObjectMeta meta) {
  Service svc;
  svc.meta = std::move(meta);
  auto spec = doc.map_or_empty("spec");
  svc.type = spec.string("type", "ClusterIP");
  check_one_of(svc.type, {"ClusterIP", "NodePort", "LoadBalancer", "ExternalName"},
               join(spec.path(), "type"));
  auto add_ip = [&](const std::string& ip, const std::string& field) {
    if (ip.empty()) return;
    if (ip == "None") {
      svc.headless = true;
      return;
    }
    check_ip(ip, field);
    if (std::find(svc.cluster_ips.begin(), svc.cluster_ips.end(), ip) == svc.cluster_ips.end()) {
      svc.cluster_ips.push_back(ip);
    }
  };
  add_ip(spec.string("clusterIP"), join(spec.path(), "clusterIP"));
  auto ips = spec.strings("clusterIPs");
  for (size_t i = 0; i < ips.size(); ++i) add_ip(ips[i], index(join(spec.path(), "clusterIPs"), i));
  svc.selector = spec.opt_string_map("selector");
  for (const auto& port : spec.maps("ports")) {
    ServicePort p;
    p.name = port.string("name");
    auto number = port.opt_uint("port", 1, 65535);
    if (!number) throw Invalid{join(port.path(), "port"), "is required"};
    p.port = *number;
    auto target = port.raw("targetPort");
    if (absent(target)) {
      p.target_port = p.port;  // the API server's default
    } else if (!target.IsScalar() || target.Scalar().empty()) {
      throw Invalid{join(port.path(), "targetPort"), "must be a port number or a port name"};
    } else if (std::isdigit(static_cast<unsigned char>(target.Scalar()[0]))) {
      p.target_port = Fields::uint_value(target, join(port.path(), "targetPort"), 1, 65535);
    } else {
      p.target_port_name = target.Scalar();
    }
    p.protocol = port.string("protocol", "TCP");
    p.app_protocol = port.string("appProtocol");
    svc.ports.push_back(std::move(p));
  }
  svc.internal_traffic_policy = spec.string("internalTrafficPolicy");
  svc.traffic_distribution = spec.string("trafficDistribution");
  return svc;
}

// The list fields of an AuthorizationPolicy source and operation, by their API names.
template <class T>
using ListField = std::pair<const char*, std::vector<std::string> T::*>;

constexpr ListField<PolicySource> kSourceLists[] = {
    {"principals", &PolicySource::principals},
    {"notPrincipals", &PolicySource::not_principals},
    {"requestPrincipals", &PolicySource::request_principals},
    {"notRequestPrincipals", &PolicySource::not_request_principals},
    {"namespaces", &PolicySource::namespaces},
    {"notNamespaces", &PolicySource::not_namespaces},
    {"serviceAccounts", &PolicySource::service_accounts},
    {"notServiceAccounts", &PolicySource::not_service_accounts},
    {"ipBlocks", &PolicySource::ip_blocks},
    {"notIpBlocks", &PolicySource::not_ip_blocks},
    {"remoteIpBlocks", &PolicySource::remote_ip_blocks},
    {"notRemoteIpBlocks", &PolicySource::not_remote_ip_blocks},
};

constexpr ListField<PolicySource> kSourceIpLists[] = {
    {"ipBlocks", &PolicySource::ip_blocks},
    {"notIpBlocks", &PolicySource::not_ip_blocks},
    {"remoteIpBlocks", &PolicySource::remote_ip_blocks},
    {"notRemoteIpBlocks", &PolicySource::not_remote_ip_blocks},
};

constexpr ListField<PolicyOperation> kOperationLists[] = {
    {"hosts", &PolicyOperation::hosts},     {"notHosts", &PolicyOperation::not_hosts},
    {"ports", &PolicyOperation::ports},     {"notPorts", &PolicyOperation::not_ports},
    {"methods", &PolicyOperation::methods}, {"notMethods", &PolicyOperation::not_methods},
    {"paths", &PolicyOperation::paths},     {"notPaths", &PolicyOperation::not_paths},
};

constexpr const char* kDryRunAnnotation = "istio.io/dry-run";

// spec.targetRef and spec.targetRefs, in that order.
std::vector<PolicyTargetRef> read_target_refs(const Fields& spec) {
  std::vector<PolicyTargetRef> refs;
  if (auto ref = spec.opt_map("targetRef")) {
    refs.push_back({ref->string("group"), ref->required_string("kind"),
                    ref->required_string("name"), ref->string("namespace")});
  }
  for (const auto& ref : spec.maps("targetRefs")) {
    refs.push_back({ref.string("group"), ref.required_string("kind"), ref.required_string("name"),
                    ref.string("namespace")});
  }
  return refs;
}

// What a policy applies to and what it does: selector, targetRef(s), action, dry run (with
// `lenient_dry_run`, an unreadable dry-run annotation is read as false instead of refused).
void read_policy_scope(const Fields& spec, AuthorizationPolicy& policy,
                       bool lenient_dry_run = false) {
  if (auto it = policy.meta.annotations.find(kDryRunAnnotation);
      it != policy.meta.annotations.end()) {
    auto dry_run = waypoint::authz::parse_go_bool(it->second);
    if (!dry_run && lenient_dry_run) dry_run = false;
    if (!dry_run) {
      throw Invalid{"metadata.annotations[istio.io/dry-run]",
                    "must be true or false, got " + net::quote(it->second)};
    }
    policy.dry_run = *dry_run;
  }
  policy.selector = read_selector(spec);
  policy.target_refs = read_target_refs(spec);
  policy.action = spec.string("action", "ALLOW");
  check_one_of(policy.action, {"ALLOW", "DENY", "AUDIT", "CUSTOM"}, join(spec.path(), "action"));
}

AuthorizationPolicy read_authorization_policy(const Fields& doc, ObjectMeta meta) {
  AuthorizationPolicy policy;
  policy.meta = std::move(meta);
  auto spec = doc.map_or_empty("spec");
  read_policy_scope(spec, policy);
  if (auto provider = spec.opt_map("provider")) policy.provider = provider->string("name");
  for (const auto& rule_fields : spec.maps("rules")) {
    PolicyRule rule;
    for (const auto& from : rule_fields.maps("from")) {
      auto fields = from.map_or_empty("source");
      PolicySource src;
      for (const auto& [name, member] : kSourceLists) src.*member = fields.strings(name);
      for (const auto& [name, member] : kSourceIpLists) {
        check_ip_blocks(src.*member, join(fields.path(), name));
      }
      rule.from.push_back(std::move(src));
    }
    for (const auto& to : rule_fields.maps("to")) {
      auto fields = to.map_or_empty("operation");
      PolicyOperation op;
      for (const auto& [name, member] : kOperationLists) op.*member = fields.strings(name);
      check_ports(op.ports, join(fields.path(), "ports"));
      check_ports(op.not_ports, join(fields.path(), "notPorts"));
      rule.to.push_back(std::move(op));
    }
    for (const auto& when : rule_fields.maps("when")) {
      PolicyCondition c;
      c.key = when.required_string("key");
      c.values = when.strings("values");
      c.not_values = when.strings("notValues");
      if (c.values.empty() && c.not_values.empty()) {
        throw Invalid{when.path(), "needs values or notValues"};
      }
      if (c.key == "source.ip" || c.key == "destination.ip") {
        check_ip_blocks(c.values, join(when.path(), "values"));
        check_ip_blocks(c.not_values, join(when.path(), "notValues"));
      } else if (c.key == "destination.port") {
        check_ports(c.values, join(when.path(), "values"));
        check_ports(c.not_values, join(when.path(), "notValues"));
      }
      rule.when.push_back(std::move(c));
    }
    policy.rules.push_back(std::move(rule));
  }
  return policy;
}

void check_mtls_mode(const std::string& mode, const std::string& field) {
  if (mode.empty()) return;
  check_one_of(mode, {"UNSET", "STRICT", "PERMISSIVE", "DISABLE"}, field);
}

PeerAuthentication read_peer_authentication(const Fields& doc, ObjectMeta meta) {
  PeerAuthentication pa;
  pa.meta = std::move(meta);
  auto spec = doc.map_or_empty("spec");
  pa.selector = read_selector(spec);
  if (auto mtls = spec.opt_map("mtls")) {
    pa.mode = mtls->string("mode");
    check_mtls_mode(pa.mode, join(mtls->path(), "mode"));
  }
  auto ports = spec.raw("portLevelMtls");
  if (!absent(ports)) {
    auto path = join(spec.path(), "portLevelMtls");
    if (!ports.IsMap()) throw Invalid{path, "must be a map of port to mtls"};
    for (const auto& entry : ports) {
      auto port = Fields::uint_value(entry.first, path, 1, 65535);
      auto entry_path = join(path, entry.first.Scalar());
      if (!entry.second.IsMap()) throw Invalid{entry_path, "must be a map"};
      Fields mtls(entry.second, entry_path);
      auto mode = mtls.string("mode");
      check_mtls_mode(mode, join(entry_path, "mode"));
      pa.port_level_mtls[port] = mode;
    }
  }
  return pa;
}

Gateway read_gateway(const Fields& doc, ObjectMeta meta) {
  Gateway gw;
  gw.meta = std::move(meta);
  auto spec = doc.map_or_empty("spec");
  gw.gateway_class_name = spec.required_string("gatewayClassName");
  for (const auto& l : spec.maps("listeners")) {
    GatewayListener listener;
    listener.name = l.string("name");
    listener.hostname = l.string("hostname");
    auto port = l.opt_uint("port", 1, 65535);
    if (!port) throw Invalid{join(l.path(), "port"), "is required"};
    listener.port = *port;
    listener.protocol = l.required_string("protocol");
    gw.listeners.push_back(std::move(listener));
  }
  auto status = doc.map_or_empty("status");
  for (const auto& a : status.maps("addresses")) {
    Gateway::Address address{a.string("type", "IPAddress"), a.required_string("value")};
    if (address.type == "IPAddress") check_ip(address.value, join(a.path(), "value"));
    gw.status_addresses.push_back(std::move(address));
  }
  return gw;
}

// A route's spec.parentRefs, with Gateway API's defaults.
std::vector<RouteParentRef> read_parent_refs(const Fields& spec, const std::string& route_ns) {
  std::vector<RouteParentRef> out;
  for (const auto& p : spec.maps("parentRefs")) {
    RouteParentRef ref;
    ref.group = p.string("group", "gateway.networking.k8s.io");
    ref.kind = p.string("kind", "Gateway");
    ref.namespace_ = p.string("namespace", route_ns);
    ref.name = p.required_string("name");
    ref.section_name = p.string("sectionName");
    ref.port = p.opt_uint("port", 1, 65535).value_or(0);
    out.push_back(std::move(ref));
  }
  return out;
}

HttpRoute read_http_route(const Fields& doc, ObjectMeta meta) {
  HttpRoute route;
  route.meta = std::move(meta);
  auto spec = doc.map_or_empty("spec");
  route.parent_refs = read_parent_refs(spec, route.meta.namespace_);
  route.hostnames = spec.strings("hostnames");
  for (const auto& r : spec.maps("rules")) {
    HttpRouteRule rule;
    for (const auto& m : r.maps("matches")) {
      HttpRouteMatch match;
      if (auto path = m.opt_map("path")) {
        match.path_type = path->string("type", "PathPrefix");
        check_one_of(match.path_type, {"Exact", "PathPrefix", "RegularExpression"},
                     join(path->path(), "type"));
        match.path_value = path->string("value", "/");
      }
      match.method = m.string("method");
      for (const auto& h : m.maps("headers")) {
        match.headers.push_back(
            {h.string("type", "Exact"), h.required_string("name"), h.string("value")});
      }
      rule.matches.push_back(std::move(match));
    }
    for (const auto& b : r.maps("backendRefs")) {
      HttpBackendRef backend;
      backend.group = b.string("group");
      backend.kind = b.string("kind", "Service");
      backend.namespace_ = b.string("namespace", route.meta.namespace_);
      backend.name = b.required_string("name");
      backend.port = b.opt_uint("port", 1, 65535).value_or(0);
      backend.weight = b.opt_uint("weight", 0, 1000000).value_or(1);
      rule.backend_refs.push_back(std::move(backend));
    }
    auto filters = r.raw("filters");
    if (!absent(filters)) {
      if (!filters.IsSequence()) throw Invalid{join(r.path(), "filters"), "must be a list"};
      YAML::Emitter out;
      out << filters;
      rule.filters_yaml = out.c_str();
    }
    route.rules.push_back(std::move(rule));
  }
  return route;
}

// "" for the core group ("v1"), else the part before the slash.
std::string api_group(const std::string& api_version) {
  auto slash = api_version.find('/');
  return slash == std::string::npos ? "" : api_version.substr(0, slash);
}

// Canonical form: block style and map keys in order, so the same object read from YAML or from
// the API server's JSON (flow style, sorted keys) is emitted as the same text.
void emit_canonical(YAML::Emitter& out, const YAML::Node& node) {
  if (node.IsMap()) {
    // Keys are sorted, never the nodes: assigning a yaml-cpp Node writes through to the node
    // it refers to, so moving Nodes around (as std::sort does) would overwrite the document.
    std::vector<std::string> keys;
    for (auto it = node.begin(); it != node.end(); ++it) keys.push_back(it->first.Scalar());
    std::sort(keys.begin(), keys.end());
    out << YAML::BeginMap;
    for (const auto& key : keys) {
      out << YAML::Key << key << YAML::Value;
      emit_canonical(out, node[key]);
    }
    out << YAML::EndMap;
  } else if (node.IsSequence()) {
    out << YAML::BeginSeq;
    for (auto it = node.begin(); it != node.end(); ++it) emit_canonical(out, *it);
    out << YAML::EndSeq;
  } else if (node.IsScalar()) {
    out << node.Scalar();
  } else {
    out << YAML::Null;
  }
}

// The object as a waypoint reads it: apiVersion, kind, metadata (name, namespace,
// creationTimestamp, the dry-run annotation; the rest is of no use to it) and spec, as one YAML
// document.
std::string emit_object(const YAML::Node& document, const ObjectMeta& meta) {
  YAML::Emitter out;
  out << YAML::BeginMap;
  out << YAML::Key << "apiVersion" << YAML::Value << document["apiVersion"];
  out << YAML::Key << "kind" << YAML::Value << document["kind"];
  out << YAML::Key << "metadata" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "name" << YAML::Value << meta.name;
  out << YAML::Key << "namespace" << YAML::Value << meta.namespace_;
  if (!meta.creation_timestamp.empty()) {
    out << YAML::Key << "creationTimestamp" << YAML::Value << meta.creation_timestamp;
  }
  // The one annotation a waypoint reads: an AuthorizationPolicy's dry run (it only logs).
  if (auto it = meta.annotations.find(kDryRunAnnotation); it != meta.annotations.end()) {
    out << YAML::Key << "annotations" << YAML::Value << YAML::BeginMap;
    out << YAML::Key << it->first << YAML::Value << it->second;
    out << YAML::EndMap;
  }
  out << YAML::EndMap;
  if (auto spec = document["spec"]; spec && !spec.IsNull()) {
    out << YAML::Key << "spec" << YAML::Value;
    emit_canonical(out, spec);
  }
  out << YAML::EndMap;
  return out.c_str();
}

// The objects meshd may forward to waypoints (DestinationRules, HTTP/GRPCRoutes with a Service
// parent, mesh VirtualServices, AuthorizationPolicies with targetRefs) are checked with the
// waypoint's own readers. A waypoint refuses its whole configuration for one object it cannot read,
// so without this check one bad update would hold back every other change to that waypoint. Refused
// here, as an admission check would refuse it, the source keeps the object's last good version and
// reports why.
template <typename Parse>
void check_waypoint_reads(const std::string& yaml, Parse parse) {
  auto read = parse(YAML::Load(yaml));
  if (!read) throw Invalid{{}, read.error().message + " (a waypoint would refuse it)"};
}

// An HTTPRoute or GRPCRoute with a Service parent may reach a waypoint. (A route whose parents
// are all Gateways is for an ingress, which meshd does not serve: it is not checked.)
void check_route_for_waypoint(const std::vector<RouteParentRef>& parents, const std::string& yaml) {
  const bool for_waypoint = std::any_of(
      parents.begin(), parents.end(), [](const RouteParentRef& p) { return p.kind == "Service"; });
  if (!for_waypoint) return;
  check_waypoint_reads(
      yaml, [](const YAML::Node& n) { return waypoint::config::parse_http_route(n, ""); });
}

// An AuthorizationPolicy that cannot be read must not simply vanish: a DENY policy would fail
// open. When its scope and action can still be read, this is what stands in for it while no
// good version of it exists: a policy that fails closed for the same workloads or targets. A
// DENY (or, at a waypoint, CUSTOM) policy denies every request; an ALLOW policy allows none
// (other ALLOW policies still can). None for AUDIT (it decides nothing), for a dry run (it
// enforces nothing), for CUSTOM at ztunnel (which does not enforce CUSTOM), or when the
// scope itself is unreadable.
// `nothing_needed` is set when the policy enforces nothing (then nullopt is no loss).
std::optional<AuthorizationPolicy> closed_stand_in(const Fields& doc, const ObjectMeta& meta,
                                                   bool& nothing_needed) {
  nothing_needed = false;
  try {
    AuthorizationPolicy policy;
    policy.meta = meta;
    read_policy_scope(doc.map_or_empty("spec"), policy, /*lenient_dry_run=*/true);
    nothing_needed = policy.action == "AUDIT" || policy.dry_run ||
                     (policy.action == "CUSTOM" && policy.target_refs.empty());
    if (nothing_needed) return std::nullopt;
    if (policy.action != "ALLOW") {
      policy.action = "DENY";
      policy.rules.emplace_back();  // an empty rule matches every request
    }
    YAML::Emitter out;
    out << YAML::BeginMap;
    out << YAML::Key << "apiVersion" << YAML::Value << "security.istio.io/v1";
    out << YAML::Key << "kind" << YAML::Value << "AuthorizationPolicy";
    out << YAML::Key << "metadata" << YAML::Value << YAML::BeginMap;
    out << YAML::Key << "name" << YAML::Value << meta.name;
    out << YAML::Key << "namespace" << YAML::Value << meta.namespace_;
    if (!meta.creation_timestamp.empty()) {
      out << YAML::Key << "creationTimestamp" << YAML::Value << meta.creation_timestamp;
    }
    out << YAML::EndMap;
    out << YAML::Key << "spec" << YAML::Value << YAML::BeginMap;
    if (!policy.target_refs.empty()) {
      out << YAML::Key << "targetRefs" << YAML::Value << YAML::BeginSeq;
      for (const auto& ref : policy.target_refs) {
        out << YAML::BeginMap;
        if (!ref.group.empty()) out << YAML::Key << "group" << YAML::Value << ref.group;
        out << YAML::Key << "kind" << YAML::Value << ref.kind;
        out << YAML::Key << "name" << YAML::Value << ref.name;
        if (!ref.namespace_.empty()) {
          out << YAML::Key << "namespace" << YAML::Value << ref.namespace_;
        }
        out << YAML::EndMap;
      }
      out << YAML::EndSeq;
    }
    out << YAML::Key << "action" << YAML::Value << policy.action;
    out << YAML::Key << "rules" << YAML::Value << YAML::Flow << YAML::BeginSeq;
    if (!policy.rules.empty()) out << YAML::BeginMap << YAML::EndMap;
    out << YAML::EndSeq;
    out << YAML::EndMap;
    out << YAML::EndMap;
    policy.yaml = out.c_str();
    if (!policy.target_refs.empty()) {
      check_waypoint_reads(policy.yaml, [](const YAML::Node& n) {
        return waypoint::authz::parse_authorization_policy(n, "");
      });
    }
    return policy;
  } catch (const Invalid&) {
    return std::nullopt;
  } catch (const YAML::Exception&) {
    return std::nullopt;
  }
}

// Istio reads its MeshConfig from the ConfigMap `istio` (meshd serves no revisions).
bool is_mesh_config_name(const YAML::Node& document) {
  auto md = document["metadata"];
  if (!md.IsMap() || !md["name"].IsDefined() || !md["name"].IsScalar()) return false;
  return md["name"].Scalar() == "istio";
}

// The MeshConfig's extensionProviders, checked with the waypoint's reader, as a ConfigMap for
// waypoints (without the rest of the MeshConfig, which they do not use).
MeshConfigMap read_mesh_config(const Fields& doc, ObjectMeta meta) {
  MeshConfigMap out;
  out.meta = std::move(meta);
  auto data = doc.map_or_empty("data");
  auto text = data.string("mesh");
  if (text.empty()) return out;
  YAML::Node mesh;
  try {
    mesh = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw Invalid{"data.mesh", fmt::format("is not YAML: {}", e.msg)};
  }
  if (absent(mesh)) return out;
  if (!mesh.IsMap()) throw Invalid{"data.mesh", "must be a MeshConfig (a map)"};
  auto named = waypoint::authz::with_json_names(mesh, "data.mesh");
  if (!named) throw Invalid{{}, named.error().message};
  auto providers = (*named)["extensionProviders"];
  if (absent(providers)) return out;
  auto read = waypoint::authz::parse_extension_providers(providers, "data.mesh.extensionProviders");
  if (!read) throw Invalid{{}, read.error().message + " (a waypoint would refuse it)"};
  if (read->empty()) return out;
  // Only the authorizers, field by field as the waypoint's reader accepted them: what else a
  // MeshConfig holds (other providers, unknown keys) is never re-emitted, so an alias-laden
  // part of it cannot grow here.
  YAML::Emitter inner;
  inner << YAML::BeginMap << YAML::Key << "extensionProviders" << YAML::Value << YAML::BeginSeq;
  for (const auto& raw : providers) {
    auto named_item = waypoint::authz::with_json_names(raw, "");
    if (!named_item) continue;  // (refused above)
    const auto& item = *named_item;
    for (const char* key : {"envoyExtAuthzHttp", "envoyExtAuthzGrpc"}) {
      if (absent(item[key])) continue;
      inner << YAML::BeginMap << YAML::Key << "name" << YAML::Value << item["name"].Scalar();
      inner << YAML::Key << key << YAML::Value;
      emit_canonical(inner, item[key]);
      inner << YAML::EndMap;
    }
  }
  inner << YAML::EndSeq << YAML::EndMap;
  YAML::Emitter o;
  o << YAML::BeginMap;
  o << YAML::Key << "apiVersion" << YAML::Value << "v1";
  o << YAML::Key << "kind" << YAML::Value << "ConfigMap";
  o << YAML::Key << "metadata" << YAML::Value << YAML::BeginMap;
  o << YAML::Key << "name" << YAML::Value << out.meta.name;
  o << YAML::Key << "namespace" << YAML::Value << out.meta.namespace_;
  o << YAML::EndMap;
  o << YAML::Key << "data" << YAML::Value << YAML::BeginMap;
  o << YAML::Key << "mesh" << YAML::Value << YAML::Literal << std::string(inner.c_str());
  o << YAML::EndMap;
  o << YAML::EndMap;
  out.yaml = std::string(o.c_str()) + "\n";
  return out;
}

}  // namespace

tl::expected<std::optional<Object>, ConvertError> convert(const YAML::Node& document,
                                                          size_t document_index) {
  std::string where = fmt::format("document {}", document_index + 1);
  if (absent(document)) return std::nullopt;
  if (!document.IsMap()) return tl::unexpected(ConvertError{{}, where + ": must be a map", {}});
  std::optional<ObjectKey> key;
  std::optional<Object> fallback;
  bool nothing_to_stand_in = false;
  try {
    Fields doc(document, "");
    auto kind = doc.required_string("kind");
    auto api_version = doc.required_string("apiVersion");
    auto group = api_group(api_version);
    enum class Known {
      kNamespace,
      kPod,
      kService,
      kServiceAccount,
      kAuthz,
      kPeerAuthn,
      kGateway,
      kHttpRoute,
      kDestinationRule,
      kGrpcRoute,
      kRequestAuthn,
      kMeshConfig,
      kVirtualService
    } known;
    if (group.empty() && kind == "Namespace") {
      known = Known::kNamespace;
    } else if (group.empty() && kind == "Pod") {
      known = Known::kPod;
    } else if (group.empty() && kind == "Service") {
      known = Known::kService;
    } else if (group.empty() && kind == "ServiceAccount") {
      known = Known::kServiceAccount;
    } else if (group == "security.istio.io" && kind == "AuthorizationPolicy") {
      known = Known::kAuthz;
    } else if (group == "security.istio.io" && kind == "PeerAuthentication") {
      known = Known::kPeerAuthn;
    } else if (group == "security.istio.io" && kind == "RequestAuthentication") {
      known = Known::kRequestAuthn;
    } else if (group == "gateway.networking.k8s.io" && kind == "Gateway") {
      known = Known::kGateway;
    } else if (group == "gateway.networking.k8s.io" && kind == "HTTPRoute") {
      known = Known::kHttpRoute;
    } else if (group == "gateway.networking.k8s.io" && kind == "GRPCRoute") {
      known = Known::kGrpcRoute;
    } else if (group == "networking.istio.io" && kind == "DestinationRule") {
      known = Known::kDestinationRule;
    } else if (group == "networking.istio.io" && kind == "VirtualService") {
      known = Known::kVirtualService;
    } else if (group.empty() && kind == "ConfigMap" && is_mesh_config_name(document)) {
      known = Known::kMeshConfig;
    } else {
      ZT_LOG_DEBUG("component=manifest ignoring {}: kind {} ({}) is not used", where, kind,
                   api_version);
      return std::nullopt;
    }
    where = fmt::format("{} ({})", where, kind);
    bool namespaced = known != Known::kNamespace;
    // Name the object first, so that errors in the rest of its metadata name it too.
    auto md = doc.map_or_empty("metadata");
    auto name = md.string("name");
    if (name.empty()) throw Invalid{"metadata.name", "is required"};
    auto ns = namespaced ? md.string("namespace") : std::string();
    if (namespaced && ns.empty()) ns = "default";
    key = ObjectKey{kind, ns, name};
    where = key->describe();
    auto meta = read_meta(doc, namespaced);
    switch (known) {
      case Known::kNamespace:
        return Object(Namespace{std::move(meta)});
      case Known::kServiceAccount:
        return Object(ServiceAccount{std::move(meta)});
      case Known::kPod:
        return Object(read_pod(doc, std::move(meta)));
      case Known::kService:
        return Object(read_service(doc, std::move(meta)));
      case Known::kAuthz: {
        try {
          auto policy = read_authorization_policy(doc, meta);
          policy.yaml = emit_object(document, policy.meta);
          if (!policy.target_refs.empty()) {
            check_waypoint_reads(policy.yaml, [](const YAML::Node& n) {
              return waypoint::authz::parse_authorization_policy(n, "");
            });
          }
          return Object(std::move(policy));
        } catch (const Invalid&) {
          auto closed = closed_stand_in(doc, meta, nothing_to_stand_in);
          if (closed) fallback = Object(std::move(*closed));
          throw;
        } catch (const YAML::Exception&) {
          auto closed = closed_stand_in(doc, meta, nothing_to_stand_in);
          if (closed) fallback = Object(std::move(*closed));
          throw;
        }
      }
      case Known::kPeerAuthn:
        return Object(read_peer_authentication(doc, std::move(meta)));
      case Known::kGateway:
        return Object(read_gateway(doc, std::move(meta)));
      case Known::kHttpRoute: {
        auto route = read_http_route(doc, std::move(meta));
        route.yaml = emit_object(document, route.meta);
        check_route_for_waypoint(route.parent_refs, route.yaml);
        return Object(std::move(route));
      }
      case Known::kGrpcRoute: {
        GrpcRoute route;
        route.meta = std::move(meta);
        route.parent_refs = read_parent_refs(doc.map_or_empty("spec"), route.meta.namespace_);
        route.yaml = emit_object(document, route.meta);
        check_route_for_waypoint(route.parent_refs, route.yaml);
        return Object(std::move(route));
      }
      case Known::kRequestAuthn: {
        RequestAuthentication authn;
        authn.meta = std::move(meta);
        auto spec = doc.map_or_empty("spec");
        authn.has_selector = spec.opt_map("selector").has_value();
        authn.target_refs = read_target_refs(spec);
        for (const auto& rule : spec.maps("jwtRules")) {
          if (auto uri = rule.string("jwksUri"); !uri.empty()) authn.jwks_uris.push_back(uri);
        }
        authn.yaml = emit_object(document, authn.meta);
        if (!authn.target_refs.empty()) {
          check_waypoint_reads(authn.yaml, [](const YAML::Node& n) {
            return waypoint::authz::parse_request_authentication(n, "");
          });
        }
        return Object(std::move(authn));
      }
      case Known::kMeshConfig:
        return Object(read_mesh_config(doc, std::move(meta)));
      case Known::kVirtualService: {
        VirtualService vs;
        vs.meta = std::move(meta);
        auto spec = doc.map_or_empty("spec");
        vs.hosts = spec.strings("hosts");
        vs.gateways = spec.strings("gateways");
        vs.export_to = spec.strings("exportTo");
        vs.yaml = emit_object(document, vs.meta);
        // (One bound only to gateways is for an ingress, which meshd does not serve.)
        if (vs.gateways.empty() ||
            std::find(vs.gateways.begin(), vs.gateways.end(), "mesh") != vs.gateways.end()) {
          check_waypoint_reads(vs.yaml, [](const YAML::Node& n) {
            return waypoint::config::parse_virtual_service(n, "cluster.local", "");
          });
        }
        return Object(std::move(vs));
      }
      case Known::kDestinationRule: {
        DestinationRule rule;
        rule.meta = std::move(meta);
        auto spec = doc.map_or_empty("spec");
        rule.host = spec.required_string("host");
        rule.export_to = spec.strings("exportTo");
        rule.has_workload_selector = spec.opt_map("workloadSelector").has_value();
        rule.has_traffic_policy = spec.opt_map("trafficPolicy").has_value();
        for (const auto& subset : spec.maps("subsets")) {
          rule.subsets.emplace_back(subset.required_string("name"), subset.string_map("labels"));
        }
        rule.yaml = emit_object(document, rule.meta);
        check_waypoint_reads(rule.yaml, [](const YAML::Node& n) {
          // (the domain only qualifies a short host, which the check does not look at)
          return waypoint::config::parse_destination_rule(n, "cluster.local", "");
        });
        return Object(std::move(rule));
      }
    }
    return std::nullopt;
  } catch (const Invalid& e) {
    if (e.field.empty()) {
      return tl::unexpected(
          ConvertError{key, where + ": " + e.problem, std::move(fallback), nothing_to_stand_in});
    }
    return tl::unexpected(ConvertError{key, fmt::format("{}: {}: {}", where, e.field, e.problem),
                                       std::move(fallback), nothing_to_stand_in});
  } catch (const YAML::Exception& e) {
    return tl::unexpected(ConvertError{key, fmt::format("{}: {}", where, e.what()),
                                       std::move(fallback), nothing_to_stand_in});
  }
}

ParsedManifest parse_manifest(std::string_view text, const std::string& file) {
  ParsedManifest out;
  std::vector<YAML::Node> documents;
  try {
    documents = zt::yaml::load_all(text);
  } catch (const YAML::Exception& e) {
    out.unreadable = true;
    out.errors.push_back(ManifestError{file,
                                       0,
                                       std::nullopt,
                                       fmt::format("{}: not valid YAML at line {}, column {}: {}",
                                                   file, e.mark.line + 1, e.mark.column + 1, e.msg),
                                       {}});
    return out;
  }
  auto add = [&](const YAML::Node& node, size_t doc_index) {
    tl::expected<std::optional<Object>, ConvertError> converted;
    try {
      converted = convert(node, doc_index);
    } catch (const std::exception& e) {  // convert() catches its own; this is a last guard
      converted = tl::unexpected(
          ConvertError{std::nullopt, fmt::format("document {}: {}", doc_index + 1, e.what()), {}});
    }
    if (!converted) {
      out.errors.push_back(ManifestError{file, doc_index, converted.error().object,
                                         fmt::format("{}: {}", file, converted.error().message),
                                         std::move(converted.error().fallback),
                                         converted.error().nothing_to_stand_in});
    } else if (*converted) {
      out.objects.push_back(std::move(**converted));
      out.documents.push_back(doc_index);
    }
  };
  for (size_t i = 0; i < documents.size(); ++i) {
    const auto& doc = documents[i];
    // kubectl's List wrapper (what `kubectl get -o yaml` writes).
    if (doc.IsMap() && doc["kind"].IsDefined() && doc["kind"].IsScalar() &&
        doc["kind"].Scalar() == "List" && doc["items"].IsDefined() && doc["items"].IsSequence()) {
      for (const auto& item : doc["items"]) add(item, i);
      continue;
    }
    add(doc, i);
  }
  return out;
}

}  // namespace zt::meshd::manifest
