#include "ztunnel/xds/translate.h"

#include <cstring>

#include <fmt/format.h>

namespace zt::xds {
namespace {

namespace pb = istio::workload;
namespace sec = istio::security;

std::string field(std::string_view path, std::string_view name) {
  if (path.empty()) return std::string(name);
  return fmt::format("{}.{}", path, name);
}

std::string index(std::string_view path, size_t i) { return fmt::format("{}[{}]", path, i); }

tl::unexpected<Error> error_at(std::string_view path, std::string_view message) {
  return failf("{}: {}", path, message);
}

Status required(const std::string& value, std::string_view path) {
  if (value.empty()) return error_at(path, "must not be empty");
  return {};
}

void set_or_default(const std::string& value, std::string& out) {
  if (!value.empty()) out = value;
}

// Ports come as uint32 on the wire; anything above 65535 is an error rather than truncated.
Result<uint16_t> to_port(uint32_t value, std::string_view path, uint32_t min = 1) {
  if (value < min || value > 65535) {
    return error_at(path,
                    fmt::format("{} is out of range for a port number ({}-65535)", value, min));
  }
  return static_cast<uint16_t>(value);
}

Status validate_hostname(const std::string& value, std::string_view path) {
  if (auto s = required(value, path); !s) return s;
  if (auto valid = net::validate_hostname(value); !valid)
    return error_at(path, valid.error().message);
  return {};
}

Result<asio::ip::address> to_ip(const std::string& bytes, std::string_view path) {
  auto ip = address_from_bytes(bytes);
  if (!ip) return error_at(path, ip.error().message);
  return ip;
}

// Service port -> target port. A repeated service port keeps the last entry, as ztunnel's map
// collect does; target port 0 means "named port, each endpoint says".
template <class Ports>
Result<state::PortMap> to_port_map(const Ports& ports, std::string_view path) {
  state::PortMap out;
  for (int i = 0; i < ports.size(); ++i) {
    auto p = index(path, static_cast<size_t>(i));
    auto service_port = to_port(ports[i].service_port(), field(p, "service_port"));
    if (!service_port) return tl::unexpected(service_port.error());
    auto target_port = to_port(ports[i].target_port(), field(p, "target_port"), 0);
    if (!target_port) return tl::unexpected(target_port.error());
    out[*service_port] = *target_port;
  }
  return out;
}

Result<state::NetworkAddress> to_network_address(const pb::NetworkAddress& in,
                                                 std::string_view path) {
  auto ip = to_ip(in.address(), field(path, "address"));
  if (!ip) return tl::unexpected(ip.error());
  if (in.has_length()) {
    // The model keeps an address, not a block: a valid length is accepted and the address kept.
    uint32_t max = ip->is_v4() ? 32 : 128;
    if (in.length() > max) {
      return error_at(field(path, "length"),
                      fmt::format("prefix length {} is more than {}", in.length(), max));
    }
  }
  return state::NetworkAddress{in.network(), *ip};
}

Result<state::GatewayAddress> to_gateway(const pb::GatewayAddress& in, std::string_view path) {
  state::GatewayAddress out;
  switch (in.destination_case()) {
    case pb::GatewayAddress::kHostname: {
      const auto& host = in.hostname();
      auto host_path = field(path, "hostname");
      if (auto s = required(host.namespace_(), field(host_path, "namespace")); !s) {
        return tl::unexpected(s.error());
      }
      if (auto s = validate_hostname(host.hostname(), field(host_path, "hostname")); !s) {
        return tl::unexpected(s.error());
      }
      out.destination = state::NamespacedHostname{host.namespace_(), host.hostname()};
      break;
    }
    case pb::GatewayAddress::kAddress: {
      auto address = to_network_address(in.address(), field(path, "address"));
      if (!address) return tl::unexpected(address.error());
      out.destination = std::move(*address);
      break;
    }
    case pb::GatewayAddress::DESTINATION_NOT_SET:
      return error_at(path, "destination (hostname or address) is not set");
  }
  // 0 is proto3's "unset": the HBONE port then is the default one.
  if (in.hbone_mtls_port() != 0) {
    auto port = to_port(in.hbone_mtls_port(), field(path, "hbone_mtls_port"));
    if (!port) return tl::unexpected(port.error());
    out.hbone_mtls_port = *port;
  }
  return out;
}

template <class E>
tl::unexpected<Error> unknown_enum(std::string_view path, E value) {
  return error_at(path, fmt::format("{} is not a known value", static_cast<int>(value)));
}

Status read_services(const pb::Workload& in, state::Workload& w) {
  for (const auto& [key, list] : in.services()) {
    auto path = fmt::format("services[{}]", net::quote(key));
    auto slash = key.find('/');
    if (slash == std::string::npos || slash == 0 || slash + 1 == key.size()) {
      return error_at(path, "service key must be namespace/hostname");
    }
    auto ports = to_port_map(list.ports(), field(path, "ports"));
    if (!ports) return tl::unexpected(ports.error());
    w.services[key] = std::move(*ports);
  }
  return {};
}

Status read_workload_enums(const pb::Workload& in, state::Workload& w) {
  switch (in.tunnel_protocol()) {
    case pb::NONE:
      w.protocol = state::TunnelProtocol::kTcp;
      break;
    case pb::HBONE:
      w.protocol = state::TunnelProtocol::kHbone;
      break;
    case pb::LEGACY_ISTIO_MTLS:
      return error_at("tunnel_protocol", "LEGACY_ISTIO_MTLS is not supported (use HBONE or NONE)");
    default:
      return unknown_enum("tunnel_protocol", in.tunnel_protocol());
  }
  switch (in.workload_type()) {
    case pb::DEPLOYMENT:
      w.workload_type = "deployment";
      break;
    case pb::CRONJOB:
      w.workload_type = "cronjob";
      break;
    case pb::POD:
      w.workload_type = "pod";
      break;
    case pb::JOB:
      w.workload_type = "job";
      break;
    default:
      return unknown_enum("workload_type", in.workload_type());
  }
  switch (in.status()) {
    case pb::HEALTHY:
      w.status = state::HealthStatus::kHealthy;
      break;
    case pb::UNHEALTHY:
      w.status = state::HealthStatus::kUnhealthy;
      break;
    default:
      return unknown_enum("status", in.status());
  }
  switch (in.network_mode()) {
    case pb::STANDARD:
      w.network_mode = state::NetworkMode::kStandard;
      break;
    case pb::HOST_NETWORK:
      w.network_mode = state::NetworkMode::kHostNetwork;
      break;
    default:
      return unknown_enum("network_mode", in.network_mode());
  }
  return {};
}

Result<state::ApplicationTunnel> to_application_tunnel(const pb::ApplicationTunnel& in) {
  state::ApplicationTunnel out;
  switch (in.protocol()) {
    case pb::ApplicationTunnel::NONE:
      out.protocol = state::ApplicationTunnel::Protocol::kNone;
      break;
    case pb::ApplicationTunnel::PROXY:
      out.protocol = state::ApplicationTunnel::Protocol::kProxy;
      break;
    default:
      return unknown_enum("application_tunnel.protocol", in.protocol());
  }
  if (in.port() != 0) {
    auto port = to_port(in.port(), "application_tunnel.port");
    if (!port) return tl::unexpected(port.error());
    out.port = *port;
  }
  return out;
}

Result<state::LoadBalancer> to_load_balancer(const pb::LoadBalancing& in) {
  state::LoadBalancer out;
  for (int i = 0; i < in.routing_preference_size(); ++i) {
    auto path = index("load_balancing.routing_preference", static_cast<size_t>(i));
    switch (in.routing_preference(i)) {
      case pb::LoadBalancing::REGION:
        out.routing_preferences.push_back(state::LoadBalancerScope::kRegion);
        break;
      case pb::LoadBalancing::ZONE:
        out.routing_preferences.push_back(state::LoadBalancerScope::kZone);
        break;
      case pb::LoadBalancing::SUBZONE:
        out.routing_preferences.push_back(state::LoadBalancerScope::kSubzone);
        break;
      case pb::LoadBalancing::NODE:
        out.routing_preferences.push_back(state::LoadBalancerScope::kNode);
        break;
      case pb::LoadBalancing::CLUSTER:
        out.routing_preferences.push_back(state::LoadBalancerScope::kCluster);
        break;
      case pb::LoadBalancing::NETWORK:
        out.routing_preferences.push_back(state::LoadBalancerScope::kNetwork);
        break;
      case pb::LoadBalancing::UNSPECIFIED_SCOPE:
        return error_at(path, "UNSPECIFIED_SCOPE is not a scope");
      default:
        return unknown_enum(path, in.routing_preference(i));
    }
  }
  switch (in.mode()) {
    // Unspecified is what istiod sends for a service without a traffic distribution: standard.
    case pb::LoadBalancing::UNSPECIFIED_MODE:
      out.mode = state::LoadBalancerMode::kStandard;
      break;
    case pb::LoadBalancing::STRICT:
      out.mode = state::LoadBalancerMode::kStrict;
      break;
    case pb::LoadBalancing::FAILOVER:
      out.mode = state::LoadBalancerMode::kFailover;
      break;
    case pb::LoadBalancing::PASSTHROUGH:
      out.mode = state::LoadBalancerMode::kPassthrough;
      break;
    default:
      return unknown_enum("load_balancing.mode", in.mode());
  }
  switch (in.health_policy()) {
    case pb::LoadBalancing::ONLY_HEALTHY:
      out.health_policy = state::LoadBalancerHealthPolicy::kOnlyHealthy;
      break;
    case pb::LoadBalancing::ALLOW_ALL:
      out.health_policy = state::LoadBalancerHealthPolicy::kAllowAll;
      break;
    default:
      return unknown_enum("load_balancing.health_policy", in.health_policy());
  }
  return out;
}

// ---- authorization --------------------------------------------------------------------------

Result<state::StringMatch> to_string_match(const sec::StringMatch& in, std::string_view path) {
  using Kind = state::StringMatch::Kind;
  switch (in.match_type_case()) {
    case sec::StringMatch::kExact:
      return state::StringMatch{Kind::kExact, in.exact()};
    case sec::StringMatch::kPrefix:
      return state::StringMatch{Kind::kPrefix, in.prefix()};
    case sec::StringMatch::kSuffix:
      return state::StringMatch{Kind::kSuffix, in.suffix()};
    case sec::StringMatch::kPresence:
      return state::StringMatch{Kind::kPresence, {}};
    case sec::StringMatch::MATCH_TYPE_NOT_SET:
      break;
  }
  // An empty match would widen or narrow a policy in ways nobody wrote: refuse it.
  return error_at(path, "no match type (exact, prefix, suffix or presence) is set");
}

Result<net::Cidr> to_cidr(const sec::Address& in, std::string_view path) {
  auto ip = to_ip(in.address(), field(path, "address"));
  if (!ip) return tl::unexpected(ip.error());
  uint32_t max = ip->is_v4() ? 32 : 128;
  if (in.length() > max) {
    return error_at(field(path, "length"),
                    fmt::format("prefix length {} is more than {}", in.length(), max));
  }
  return net::Cidr{*ip, static_cast<uint8_t>(in.length())};
}

template <class In, class Out, class Fn>
Status each(const In& in, std::string_view path, std::vector<Out>& out, Fn&& convert) {
  out.reserve(static_cast<size_t>(in.size()));
  for (int i = 0; i < in.size(); ++i) {
    auto converted = convert(in[i], index(path, static_cast<size_t>(i)));
    if (!converted) return tl::unexpected(converted.error());
    out.push_back(std::move(*converted));
  }
  return {};
}

Result<state::ServiceAccountMatch> to_service_account(const sec::ServiceAccountMatch& in,
                                                      std::string_view path) {
  if (auto s = required(in.namespace_(), field(path, "namespace")); !s) {
    return tl::unexpected(s.error());
  }
  if (auto s = required(in.serviceaccount(), field(path, "serviceAccount")); !s) {
    return tl::unexpected(s.error());
  }
  return state::ServiceAccountMatch{in.namespace_(), in.serviceaccount()};
}

Result<state::Match> to_match(const sec::Match& in, std::string_view path) {
  state::Match m;
  auto strings = [&](const auto& list, std::string_view name,
                     std::vector<state::StringMatch>& out) {
    return each(list, field(path, name), out, to_string_match);
  };
  auto accounts = [&](const auto& list, std::string_view name,
                      std::vector<state::ServiceAccountMatch>& out) {
    return each(list, field(path, name), out, to_service_account);
  };
  auto cidrs = [&](const auto& list, std::string_view name, std::vector<net::Cidr>& out) {
    return each(list, field(path, name), out, to_cidr);
  };
  auto ports = [&](const auto& list, std::string_view name, std::vector<uint16_t>& out) {
    return each(list, field(path, name), out,
                [](uint32_t port, const std::string& p) { return to_port(port, p); });
  };
  Status s;
  if (s = strings(in.namespaces(), "namespaces", m.namespaces); !s)
    return tl::unexpected(s.error());
  if (s = strings(in.not_namespaces(), "not_namespaces", m.not_namespaces); !s) {
    return tl::unexpected(s.error());
  }
  if (s = strings(in.principals(), "principals", m.principals); !s)
    return tl::unexpected(s.error());
  if (s = strings(in.not_principals(), "not_principals", m.not_principals); !s) {
    return tl::unexpected(s.error());
  }
  if (s = cidrs(in.source_ips(), "source_ips", m.source_ips); !s) return tl::unexpected(s.error());
  if (s = cidrs(in.not_source_ips(), "not_source_ips", m.not_source_ips); !s) {
    return tl::unexpected(s.error());
  }
  if (s = cidrs(in.destination_ips(), "destination_ips", m.destination_ips); !s) {
    return tl::unexpected(s.error());
  }
  if (s = cidrs(in.not_destination_ips(), "not_destination_ips", m.not_destination_ips); !s) {
    return tl::unexpected(s.error());
  }
  if (s = ports(in.destination_ports(), "destination_ports", m.destination_ports); !s) {
    return tl::unexpected(s.error());
  }
  if (s = ports(in.not_destination_ports(), "not_destination_ports", m.not_destination_ports); !s) {
    return tl::unexpected(s.error());
  }
  if (s = accounts(in.service_accounts(), "service_accounts", m.service_accounts); !s) {
    return tl::unexpected(s.error());
  }
  if (s = accounts(in.not_service_accounts(), "not_service_accounts", m.not_service_accounts); !s) {
    return tl::unexpected(s.error());
  }
  return m;
}

}  // namespace

Result<asio::ip::address> address_from_bytes(const std::string& bytes) {
  if (bytes.size() == 4) {
    asio::ip::address_v4::bytes_type raw;
    std::memcpy(raw.data(), bytes.data(), raw.size());
    return asio::ip::address(asio::ip::address_v4(raw));
  }
  if (bytes.size() == 16) {
    asio::ip::address_v6::bytes_type raw;
    std::memcpy(raw.data(), bytes.data(), raw.size());
    return asio::ip::address(asio::ip::address_v6(raw));
  }
  return failf("{} bytes is not an IPv4 or IPv6 address", bytes.size());
}

Result<state::Workload> to_workload(const pb::Workload& in) {
  state::Workload w;
  if (auto s = required(in.uid(), "uid"); !s) return tl::unexpected(s.error());
  if (auto s = required(in.name(), "name"); !s) return tl::unexpected(s.error());
  if (auto s = required(in.namespace_(), "namespace"); !s) return tl::unexpected(s.error());
  w.uid = in.uid();
  w.name = in.name();
  w.namespace_name = in.namespace_();
  set_or_default(in.service_account(), w.service_account);
  set_or_default(in.trust_domain(), w.trust_domain);
  set_or_default(in.cluster_id(), w.cluster_id);

  w.workload_ips.reserve(static_cast<size_t>(in.addresses_size()));
  for (int i = 0; i < in.addresses_size(); ++i) {
    auto ip = to_ip(in.addresses(i), index("addresses", static_cast<size_t>(i)));
    if (!ip) return tl::unexpected(ip.error());
    w.workload_ips.push_back(*ip);
  }
  if (!in.hostname().empty()) {
    if (auto s = validate_hostname(in.hostname(), "hostname"); !s) return tl::unexpected(s.error());
    w.hostname = in.hostname();
  }
  if (w.workload_ips.empty() && w.hostname.empty()) {
    return fail("addresses: a workload needs addresses or a hostname");
  }

  if (auto s = read_workload_enums(in, w); !s) return tl::unexpected(s.error());
  w.node = in.node();
  w.network = in.network();
  w.workload_name = in.workload_name();
  w.canonical_name = in.canonical_name();
  w.canonical_revision = in.canonical_revision();
  w.native_tunnel = in.native_tunnel();
  if (in.has_capacity()) w.capacity = in.capacity().value();

  if (auto s = read_services(in, w); !s) return tl::unexpected(s.error());
  for (int i = 0; i < in.authorization_policies_size(); ++i) {
    auto path = index("authorization_policies", static_cast<size_t>(i));
    if (auto s = required(in.authorization_policies(i), path); !s) return tl::unexpected(s.error());
    w.authorization_policies.push_back(in.authorization_policies(i));
  }

  if (in.has_waypoint()) {
    auto gw = to_gateway(in.waypoint(), "waypoint");
    if (!gw) return tl::unexpected(gw.error());
    w.waypoint = std::move(*gw);
  }
  if (in.has_network_gateway()) {
    auto gw = to_gateway(in.network_gateway(), "network_gateway");
    if (!gw) return tl::unexpected(gw.error());
    w.network_gateway = std::move(*gw);
  }
  if (in.has_application_tunnel()) {
    auto tunnel = to_application_tunnel(in.application_tunnel());
    if (!tunnel) return tl::unexpected(tunnel.error());
    w.application_tunnel = *tunnel;
  }
  if (in.has_locality()) {
    w.locality =
        state::Locality{in.locality().region(), in.locality().zone(), in.locality().subzone()};
  }
  return w;
}

Result<state::Service> to_service(const pb::Service& in) {
  state::Service svc;
  if (auto s = required(in.name(), "name"); !s) return tl::unexpected(s.error());
  if (auto s = required(in.namespace_(), "namespace"); !s) return tl::unexpected(s.error());
  if (auto s = validate_hostname(in.hostname(), "hostname"); !s) return tl::unexpected(s.error());
  svc.name = in.name();
  svc.namespace_name = in.namespace_();
  svc.hostname = in.hostname();

  svc.vips.reserve(static_cast<size_t>(in.addresses_size()));
  for (int i = 0; i < in.addresses_size(); ++i) {
    auto vip = to_network_address(in.addresses(i), index("addresses", static_cast<size_t>(i)));
    if (!vip) return tl::unexpected(vip.error());
    svc.vips.push_back(std::move(*vip));
  }
  auto ports = to_port_map(in.ports(), "ports");
  if (!ports) return tl::unexpected(ports.error());
  svc.ports = std::move(*ports);
  for (int i = 0; i < in.subject_alt_names_size(); ++i) {
    auto path = index("subject_alt_names", static_cast<size_t>(i));
    if (auto s = required(in.subject_alt_names(i), path); !s) return tl::unexpected(s.error());
    svc.subject_alt_names.push_back(in.subject_alt_names(i));
  }
  if (in.has_waypoint()) {
    auto gw = to_gateway(in.waypoint(), "waypoint");
    if (!gw) return tl::unexpected(gw.error());
    svc.waypoint = std::move(*gw);
  }
  if (in.has_load_balancing()) {
    auto lb = to_load_balancer(in.load_balancing());
    if (!lb) return tl::unexpected(lb.error());
    svc.load_balancer = std::move(*lb);
  }
  switch (in.ip_families()) {
    case pb::AUTOMATIC:
      break;  // no preference: left unset
    case pb::IPV4_ONLY:
      svc.ip_families = state::IpFamily::kIpv4;
      break;
    case pb::IPV6_ONLY:
      svc.ip_families = state::IpFamily::kIpv6;
      break;
    case pb::DUAL:
      svc.ip_families = state::IpFamily::kDual;
      break;
    default:
      return unknown_enum("ip_families", in.ip_families());
  }
  svc.canonical = in.canonical();
  return svc;
}

Result<state::Authorization> to_authorization(const sec::Authorization& in) {
  state::Authorization a;
  if (auto s = required(in.name(), "name"); !s) return tl::unexpected(s.error());
  if (auto s = required(in.namespace_(), "namespace"); !s) return tl::unexpected(s.error());
  a.name = in.name();
  a.namespace_name = in.namespace_();
  switch (in.scope()) {
    case sec::GLOBAL:
      a.scope = state::PolicyScope::kGlobal;
      break;
    case sec::NAMESPACE:
      a.scope = state::PolicyScope::kNamespace;
      break;
    case sec::WORKLOAD_SELECTOR:
      a.scope = state::PolicyScope::kWorkloadSelector;
      break;
    default:
      return unknown_enum("scope", in.scope());
  }
  switch (in.action()) {
    case sec::ALLOW:
      a.action = state::PolicyAction::kAllow;
      break;
    case sec::DENY:
      a.action = state::PolicyAction::kDeny;
      break;
    default:
      return unknown_enum("action", in.action());
  }
  a.dry_run = in.dry_run();
  a.rules.reserve(static_cast<size_t>(in.rules_size()));
  for (int r = 0; r < in.rules_size(); ++r) {
    auto rule_path = index("rules", static_cast<size_t>(r));
    state::Rule rule;
    const auto& clauses = in.rules(r).clauses();
    for (int c = 0; c < clauses.size(); ++c) {
      auto clause_path = index(field(rule_path, "clauses"), static_cast<size_t>(c));
      state::Clause clause;
      auto s = each(clauses[c].matches(), field(clause_path, "matches"), clause, to_match);
      if (!s) return tl::unexpected(s.error());
      rule.push_back(std::move(clause));
    }
    a.rules.push_back(std::move(rule));
  }
  return a;
}

}  // namespace zt::xds
