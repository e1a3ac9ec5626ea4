#include "ztunnel/state/local_config.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

namespace zt::state {
namespace {

constexpr size_t kMaxDocumentBytes = 16 * 1024 * 1024;
// YAML aliases let a small document name the same subtree many times; bounding the nodes we
// visit keeps a hostile or broken file from costing more than a big honest one.
constexpr size_t kMaxVisitedNodes = 2'000'000;

std::string join(const std::string& path, std::string_view key) {
  if (path.empty()) return std::string(key);
  return fmt::format("{}.{}", path, key);
}

std::string index(const std::string& path, size_t i) { return fmt::format("{}[{}]", path, i); }

std::string entry(const std::string& path, std::string_view key) {
  return fmt::format("{}[{}]", path, net::quote(key));
}

Status error_at(const std::string& path, std::string_view message) {
  return failf("{}: {}", path, message);
}

class Parser {
 public:
  using FieldParser = std::function<Status(const YAML::Node&, const std::string&)>;
  struct Field {
    std::string_view key;
    bool required;
    FieldParser parse;
  };

  Status count(const std::string& path) {
    if (++visited_ > kMaxVisitedNodes) return error_at(path, "document too large (too many nodes)");
    return {};
  }

  // A map whose keys must all be among `fields`.
  Status object(const YAML::Node& node, const std::string& path, std::initializer_list<Field> fields) {
    if (!node.IsMap()) return error_at(path, "must be a map");
    std::set<std::string, std::less<>> seen;
    for (auto it = node.begin(); it != node.end(); ++it) {
      if (auto s = count(path); !s) return s;
      if (!it->first.IsScalar()) return error_at(path, "keys must be plain strings");
      const std::string& key = it->first.Scalar();
      auto field = std::find_if(fields.begin(), fields.end(),
                                [&](const Field& f) { return f.key == key; });
      if (field == fields.end()) {
        std::string expected;
        for (const auto& f : fields) expected += fmt::format("{}{}", expected.empty() ? "" : ", ", f.key);
        return error_at(join(path, key), fmt::format("unknown key (expected one of: {})", expected));
      }
      if (!seen.insert(key).second) return error_at(join(path, key), "duplicate key");
      if (auto s = field->parse(it->second, join(path, key)); !s) return s;
    }
    for (const auto& f : fields) {
      if (f.required && !seen.contains(f.key)) {
        return error_at(path, fmt::format("missing required key \"{}\"", f.key));
      }
    }
    return {};
  }

  // A list (null = empty); `fn(item, item_path)` per element.
  template <class Fn>
  Status list(const YAML::Node& node, const std::string& path, Fn&& fn) {
    if (node.IsNull()) return {};
    if (!node.IsSequence()) return error_at(path, "must be a list");
    size_t i = 0;
    for (auto it = node.begin(); it != node.end(); ++it, ++i) {
      if (auto s = count(path); !s) return s;
      if (auto s = fn(*it, index(path, i)); !s) return s;
    }
    return {};
  }

  // A map with free-form keys (null = empty); `fn(key, value, entry_path)` per entry.
  template <class Fn>
  Status entries(const YAML::Node& node, const std::string& path, Fn&& fn) {
    if (node.IsNull()) return {};
    if (!node.IsMap()) return error_at(path, "must be a map");
    std::set<std::string, std::less<>> seen;
    for (auto it = node.begin(); it != node.end(); ++it) {
      if (auto s = count(path); !s) return s;
      if (!it->first.IsScalar()) return error_at(path, "keys must be plain strings");
      const std::string& key = it->first.Scalar();
      if (!seen.insert(key).second) return error_at(entry(path, key), "duplicate key");
      if (auto s = fn(key, it->second, entry(path, key)); !s) return s;
    }
    return {};
  }

 private:
  size_t visited_ = 0;
};

using Field = Parser::Field;

// ---- scalars -------------------------------------------------------------------------------

Status read_string(const YAML::Node& node, const std::string& path, std::string& out) {
  if (node.IsNull()) {
    out.clear();
    return {};
  }
  if (!node.IsScalar()) return error_at(path, "must be a string");
  out = node.Scalar();
  return {};
}

Status read_required_string(const YAML::Node& node, const std::string& path, std::string& out) {
  if (auto s = read_string(node, path, out); !s) return s;
  if (out.empty()) return error_at(path, "must not be empty");
  return {};
}

// Keeps the default when the value is empty, as ztunnel does for these fields.
Status read_string_or_default(const YAML::Node& node, const std::string& path, std::string& out) {
  std::string value;
  if (auto s = read_string(node, path, value); !s) return s;
  if (!value.empty()) out = std::move(value);
  return {};
}

Status read_bool(const YAML::Node& node, const std::string& path, bool& out) {
  if (node.IsScalar()) {
    const auto& v = node.Scalar();
    if (v == "true" || v == "True" || v == "TRUE") {
      out = true;
      return {};
    }
    if (v == "false" || v == "False" || v == "FALSE") {
      out = false;
      return {};
    }
    return error_at(path, fmt::format("{} is not true or false", net::quote(v)));
  }
  return error_at(path, "must be true or false");
}

Result<uint64_t> unsigned_value(std::string_view text, uint64_t min, uint64_t max,
                                std::string_view what) {
  bool digits = !text.empty() && text.size() <= 10 &&
                std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (!digits) return failf("{} is not {}", net::quote(text), what);
  uint64_t value = 0;
  for (char c : text) value = value * 10 + static_cast<uint64_t>(c - '0');
  if (value < min || value > max) {
    return failf("{} is out of range for {} ({}-{})", value, what, min, max);
  }
  return value;
}

Status read_port_text(std::string_view text, const std::string& path, uint16_t& out, uint16_t min = 1) {
  auto v = unsigned_value(text, min, 65535, "a port number");
  if (!v) return error_at(path, v.error().message);
  out = static_cast<uint16_t>(*v);
  return {};
}

Status read_port(const YAML::Node& node, const std::string& path, uint16_t& out, uint16_t min = 1) {
  if (!node.IsScalar()) return error_at(path, "must be a port number");
  return read_port_text(node.Scalar(), path, out, min);
}

Status read_u32(const YAML::Node& node, const std::string& path, uint32_t& out) {
  if (!node.IsScalar()) return error_at(path, "must be a number");
  auto v = unsigned_value(node.Scalar(), 0, UINT32_MAX, "a number");
  if (!v) return error_at(path, v.error().message);
  out = static_cast<uint32_t>(*v);
  return {};
}

Status read_ip(const YAML::Node& node, const std::string& path, asio::ip::address& out) {
  if (!node.IsScalar()) return error_at(path, "must be an IP address");
  auto ip = net::parse_ip(node.Scalar());
  if (!ip) return error_at(path, ip.error().message);
  out = *ip;
  return {};
}

template <class E>
struct EnumName {
  std::string_view name;
  E value;
};

template <class E>
Status read_enum(const YAML::Node& node, const std::string& path,
                 std::initializer_list<EnumName<E>> names, E& out) {
  std::string expected;
  for (const auto& n : names) expected += fmt::format("{}{}", expected.empty() ? "" : ", ", n.name);
  if (node.IsScalar()) {
    for (const auto& n : names) {
      if (n.name == node.Scalar()) {
        out = n.value;
        return {};
      }
    }
    return error_at(path, fmt::format("{} is not one of {}", net::quote(node.Scalar()), expected));
  }
  return error_at(path, fmt::format("must be one of {}", expected));
}

Status read_string_list(Parser& p, const YAML::Node& node, const std::string& path,
                        std::vector<std::string>& out) {
  return p.list(node, path, [&](const YAML::Node& item, const std::string& item_path) -> Status {
    std::string value;
    if (auto s = read_required_string(item, item_path, value); !s) return s;
    out.push_back(std::move(value));
    return {};
  });
}

// "network/ip"; the network may be empty ("/10.0.0.1").
Status read_network_address(const YAML::Node& node, const std::string& path, NetworkAddress& out) {
  if (!node.IsScalar()) return error_at(path, "must be a string network/IP");
  const std::string& text = node.Scalar();
  auto slash = text.find('/');
  if (slash == std::string::npos) {
    return error_at(path, fmt::format("{} is not network/IP (use \"/{}\" for the default network)",
                                      net::quote(text), text));
  }
  auto ip = net::parse_ip(std::string_view(text).substr(slash + 1));
  if (!ip) return error_at(path, ip.error().message);
  out = NetworkAddress{text.substr(0, slash), *ip};
  return {};
}

Status read_port_map(Parser& p, const YAML::Node& node, const std::string& path, PortMap& out) {
  return p.entries(node, path, [&](const std::string& key, const YAML::Node& value,
                                   const std::string& entry_path) -> Status {
    uint16_t service_port = 0;
    uint16_t target = 0;
    if (auto s = read_port_text(key, entry_path, service_port); !s) return s;
    // Target 0 is a named port: each endpoint supplies its own number.
    if (auto s = read_port(value, entry_path, target, 0); !s) return s;
    out[service_port] = target;
    return {};
  });
}

Status read_hostname(const YAML::Node& node, const std::string& path, std::string& out) {
  if (auto s = read_required_string(node, path, out); !s) return s;
  if (auto valid = net::validate_hostname(out); !valid) return error_at(path, valid.error().message);
  return {};
}

// ---- objects -------------------------------------------------------------------------------

Status read_gateway(Parser& p, const YAML::Node& node, const std::string& path,
                    std::optional<GatewayAddress>& out) {
  GatewayAddress gw;
  auto s = p.object(
      node, path,
      {{"destination", true,
        [&](const YAML::Node& n, const std::string& np) -> Status {
          if (n.IsScalar()) {
            NetworkAddress address;
            if (auto r = read_network_address(n, np, address); !r) return r;
            gw.destination = std::move(address);
            return {};
          }
          NamespacedHostname host;
          auto r = p.object(n, np,
                            {{"namespace", true,
                              [&](const YAML::Node& v, const std::string& vp) {
                                return read_required_string(v, vp, host.namespace_name);
                              }},
                             {"hostname", true, [&](const YAML::Node& v, const std::string& vp) {
                                return read_hostname(v, vp, host.hostname);
                              }}});
          if (!r) return r;
          gw.destination = std::move(host);
          return {};
        }},
       {"hboneMtlsPort", false, [&](const YAML::Node& n, const std::string& np) {
          return read_port(n, np, gw.hbone_mtls_port);
        }}});
  if (!s) return s;
  out = std::move(gw);
  return {};
}

Status read_workload(Parser& p, const YAML::Node& node, const std::string& path, Workload& w) {
  auto string_field = [](std::string& target) {
    return [&target](const YAML::Node& n, const std::string& np) { return read_string(n, np, target); };
  };
  auto s = p.object(
      node, path,
      {{"uid", true,
        [&](const YAML::Node& n, const std::string& np) { return read_required_string(n, np, w.uid); }},
       {"name", true,
        [&](const YAML::Node& n, const std::string& np) { return read_required_string(n, np, w.name); }},
       {"namespace", true,
        [&](const YAML::Node& n, const std::string& np) {
          return read_required_string(n, np, w.namespace_name);
        }},
       {"serviceAccount", false,
        [&](const YAML::Node& n, const std::string& np) {
          return read_string_or_default(n, np, w.service_account);
        }},
       {"trustDomain", false,
        [&](const YAML::Node& n, const std::string& np) {
          return read_string_or_default(n, np, w.trust_domain);
        }},
       {"workloadIps", false,
        [&](const YAML::Node& n, const std::string& np) {
          return p.list(n, np, [&](const YAML::Node& item, const std::string& ip_path) -> Status {
            asio::ip::address ip;
            if (auto r = read_ip(item, ip_path, ip); !r) return r;
            w.workload_ips.push_back(ip);
            return {};
          });
        }},
       {"protocol", false,
        [&](const YAML::Node& n, const std::string& np) {
          return read_enum<TunnelProtocol>(
              n, np, {{"HBONE", TunnelProtocol::kHbone}, {"TCP", TunnelProtocol::kTcp}}, w.protocol);
        }},
       {"node", false, string_field(w.node)},
       {"network", false, string_field(w.network)},
       {"hostname", false,
        [&](const YAML::Node& n, const std::string& np) -> Status {
          if (n.IsNull() || (n.IsScalar() && n.Scalar().empty())) return {};
          return read_hostname(n, np, w.hostname);
        }},
       {"workloadName", false, string_field(w.workload_name)},
       {"workloadType", false,
        [&](const YAML::Node& n, const std::string& np) -> Status {
          std::string type;
          if (auto r = read_string(n, np, type); !r) return r;
          if (type.empty()) return {};
          static constexpr std::string_view kTypes[] = {"deployment", "cronjob", "pod", "job"};
          if (std::find(std::begin(kTypes), std::end(kTypes), type) == std::end(kTypes)) {
            return error_at(np, fmt::format("{} is not one of deployment, cronjob, pod, job",
                                            net::quote(type)));
          }
          w.workload_type = std::move(type);
          return {};
        }},
       {"canonicalName", false, string_field(w.canonical_name)},
       {"canonicalRevision", false, string_field(w.canonical_revision)},
       {"clusterId", false,
        [&](const YAML::Node& n, const std::string& np) {
          return read_string_or_default(n, np, w.cluster_id);
        }},
       {"status", false,
        [&](const YAML::Node& n, const std::string& np) {
          return read_enum<HealthStatus>(
              n, np, {{"Healthy", HealthStatus::kHealthy}, {"Unhealthy", HealthStatus::kUnhealthy}},
              w.status);
        }},
       {"capacity", false,
        [&](const YAML::Node& n, const std::string& np) { return read_u32(n, np, w.capacity); }},
       {"services", false,
        [&](const YAML::Node& n, const std::string& np) {
          return p.entries(n, np, [&](const std::string& key, const YAML::Node& value,
                                      const std::string& ep) -> Status {
            auto slash = key.find('/');
            if (slash == std::string::npos || slash == 0 || slash + 1 == key.size()) {
              return error_at(ep, "service key must be namespace/hostname");
            }
            return read_port_map(p, value, ep, w.services[key]);
          });
        }},
       {"authorizationPolicies", false,
        [&](const YAML::Node& n, const std::string& np) {
          return read_string_list(p, n, np, w.authorization_policies);
        }},
       {"waypoint", false,
        [&](const YAML::Node& n, const std::string& np) { return read_gateway(p, n, np, w.waypoint); }},
       {"networkGateway", false,
        [&](const YAML::Node& n, const std::string& np) {
          return read_gateway(p, n, np, w.network_gateway);
        }},
       {"networkMode", false,
        [&](const YAML::Node& n, const std::string& np) {
          return read_enum<NetworkMode>(
              n, np,
              {{"Standard", NetworkMode::kStandard}, {"HostNetwork", NetworkMode::kHostNetwork}},
              w.network_mode);
        }},
       {"nativeTunnel", false,
        [&](const YAML::Node& n, const std::string& np) { return read_bool(n, np, w.native_tunnel); }},
       {"applicationTunnel", false,
        [&](const YAML::Node& n, const std::string& np) -> Status {
          ApplicationTunnel tunnel;
          auto r = p.object(
              n, np,
              {{"protocol", true,
                [&](const YAML::Node& v, const std::string& vp) {
                  return read_enum<ApplicationTunnel::Protocol>(
                      v, vp,
                      {{"NONE", ApplicationTunnel::Protocol::kNone},
                       {"PROXY", ApplicationTunnel::Protocol::kProxy}},
                      tunnel.protocol);
                }},
               {"port", false, [&](const YAML::Node& v, const std::string& vp) -> Status {
                  uint16_t port = 0;
                  if (auto q = read_port(v, vp, port); !q) return q;
                  tunnel.port = port;
                  return {};
                }}});
          if (!r) return r;
          w.application_tunnel = tunnel;
          return {};
        }},
       {"locality", false,
        [&](const YAML::Node& n, const std::string& np) -> Status {
          Locality locality;
          auto r = p.object(n, np,
                            {{"region", false, string_field(locality.region)},
                             {"zone", false, string_field(locality.zone)},
                             {"subzone", false, string_field(locality.subzone)}});
          if (!r) return r;
          w.locality = std::move(locality);
          return {};
        }}});
  if (!s) return s;
  if (w.workload_ips.empty() && w.hostname.empty()) {
    return error_at(path, "needs workloadIps or a hostname");
  }
  return {};
}

Status read_service(Parser& p, const YAML::Node& node, const std::string& path, Service& svc) {
  return p.object(
      node, path,
      {{"name", true,
        [&](const YAML::Node& n, const std::string& np) { return read_required_string(n, np, svc.name); }},
       {"namespace", true,
        [&](const YAML::Node& n, const std::string& np) {
          return read_required_string(n, np, svc.namespace_name);
        }},
       {"hostname", true,
        [&](const YAML::Node& n, const std::string& np) { return read_hostname(n, np, svc.hostname); }},
       {"vips", false,
        [&](const YAML::Node& n, const std::string& np) {
          return p.list(n, np, [&](const YAML::Node& item, const std::string& ip_path) -> Status {
            NetworkAddress vip;
            if (auto r = read_network_address(item, ip_path, vip); !r) return r;
            svc.vips.push_back(std::move(vip));
            return {};
          });
        }},
       {"ports", false,
        [&](const YAML::Node& n, const std::string& np) { return read_port_map(p, n, np, svc.ports); }},
       {"subjectAltNames", false,
        [&](const YAML::Node& n, const std::string& np) {
          return read_string_list(p, n, np, svc.subject_alt_names);
        }},
       {"waypoint", false,
        [&](const YAML::Node& n, const std::string& np) { return read_gateway(p, n, np, svc.waypoint); }},
       {"loadBalancer", false,
        [&](const YAML::Node& n, const std::string& np) -> Status {
          LoadBalancer lb;
          auto r = p.object(
              n, np,
              {{"routingPreferences", false,
                [&](const YAML::Node& v, const std::string& vp) {
                  return p.list(v, vp, [&](const YAML::Node& item, const std::string& ip) -> Status {
                    LoadBalancerScope scope{};
                    auto q = read_enum<LoadBalancerScope>(
                        item, ip,
                        {{"Region", LoadBalancerScope::kRegion},
                         {"Zone", LoadBalancerScope::kZone},
                         {"Subzone", LoadBalancerScope::kSubzone},
                         {"Node", LoadBalancerScope::kNode},
                         {"Cluster", LoadBalancerScope::kCluster},
                         {"Network", LoadBalancerScope::kNetwork}},
                        scope);
                    if (!q) return q;
                    lb.routing_preferences.push_back(scope);
                    return {};
                  });
                }},
               {"mode", false,
                [&](const YAML::Node& v, const std::string& vp) {
                  return read_enum<LoadBalancerMode>(
                      v, vp,
                      {{"Standard", LoadBalancerMode::kStandard},
                       {"Strict", LoadBalancerMode::kStrict},
                       {"Failover", LoadBalancerMode::kFailover},
                       {"Passthrough", LoadBalancerMode::kPassthrough}},
                      lb.mode);
                }},
               {"healthPolicy", false, [&](const YAML::Node& v, const std::string& vp) {
                  return read_enum<LoadBalancerHealthPolicy>(
                      v, vp,
                      {{"OnlyHealthy", LoadBalancerHealthPolicy::kOnlyHealthy},
                       {"AllowAll", LoadBalancerHealthPolicy::kAllowAll}},
                      lb.health_policy);
                }}});
          if (!r) return r;
          svc.load_balancer = std::move(lb);
          return {};
        }},
       {"ipFamilies", false,
        [&](const YAML::Node& n, const std::string& np) -> Status {
          IpFamily family{};
          auto r = read_enum<IpFamily>(
              n, np, {{"Dual", IpFamily::kDual}, {"IPv4", IpFamily::kIpv4}, {"IPv6", IpFamily::kIpv6}},
              family);
          if (!r) return r;
          svc.ip_families = family;
          return {};
        }},
       {"canonical", false,
        [&](const YAML::Node& n, const std::string& np) { return read_bool(n, np, svc.canonical); }},
       {"endpoints", false, [&](const YAML::Node& n, const std::string& np) {
          return p.entries(n, np, [&](const std::string&, const YAML::Node& value,
                                      const std::string& ep) -> Status {
            ServiceEndpoint endpoint;
            auto r = p.object(
                value, ep,
                {{"workloadUid", true,
                  [&](const YAML::Node& v, const std::string& vp) {
                    return read_required_string(v, vp, endpoint.workload_uid);
                  }},
                 {"port", false,
                  [&](const YAML::Node& v, const std::string& vp) {
                    return read_port_map(p, v, vp, endpoint.ports);
                  }},
                 {"status", false, [&](const YAML::Node& v, const std::string& vp) {
                    return read_enum<HealthStatus>(v, vp,
                                                   {{"Healthy", HealthStatus::kHealthy},
                                                    {"Unhealthy", HealthStatus::kUnhealthy}},
                                                   endpoint.status);
                  }}});
            if (!r) return r;
            svc.endpoints.push_back(std::move(endpoint));
            return {};
          });
        }}});
}

// `Exact: x`, `Prefix: x`, `Suffix: x`, or `Presence` (also `Presence: {}` / `Presence: []`).
Status read_string_match(Parser& p, const YAML::Node& node, const std::string& path,
                         StringMatch& out) {
  if (node.IsScalar()) {
    if (node.Scalar() == "Presence") {
      out = StringMatch{StringMatch::Kind::kPresence, {}};
      return {};
    }
    return error_at(path, fmt::format("{} is not a string match (Exact, Prefix, Suffix: value, or "
                                      "Presence)",
                                      net::quote(node.Scalar())));
  }
  if (!node.IsMap() || node.size() != 1) {
    return error_at(path, "must be one of Exact, Prefix, Suffix: value, or Presence");
  }
  auto kind_value = [&](StringMatch::Kind kind) {
    return [&, kind](const YAML::Node& v, const std::string& vp) -> Status {
      out.kind = kind;
      return read_string(v, vp, out.value);
    };
  };
  return p.object(node, path,
                  {{"Exact", false, kind_value(StringMatch::Kind::kExact)},
                   {"Prefix", false, kind_value(StringMatch::Kind::kPrefix)},
                   {"Suffix", false, kind_value(StringMatch::Kind::kSuffix)},
                   {"Presence", false, [&](const YAML::Node& v, const std::string& vp) -> Status {
                      bool empty = v.IsNull() || ((v.IsSequence() || v.IsMap()) && v.size() == 0);
                      if (!empty) return error_at(vp, "Presence takes no value");
                      out = StringMatch{StringMatch::Kind::kPresence, {}};
                      return {};
                    }}});
}

Status read_match(Parser& p, const YAML::Node& node, const std::string& path, Match& m) {
  auto strings = [&](std::vector<StringMatch>& target) {
    return [&p, &target](const YAML::Node& n, const std::string& np) {
      return p.list(n, np, [&](const YAML::Node& item, const std::string& ip) -> Status {
        StringMatch sm;
        if (auto r = read_string_match(p, item, ip, sm); !r) return r;
        target.push_back(std::move(sm));
        return {};
      });
    };
  };
  auto accounts = [&](std::vector<ServiceAccountMatch>& target) {
    return [&p, &target](const YAML::Node& n, const std::string& np) {
      return p.list(n, np, [&](const YAML::Node& item, const std::string& ip) -> Status {
        ServiceAccountMatch sa;
        auto r = p.object(item, ip,
                          {{"namespace", true,
                            [&](const YAML::Node& v, const std::string& vp) {
                              return read_required_string(v, vp, sa.namespace_name);
                            }},
                           {"serviceAccount", true, [&](const YAML::Node& v, const std::string& vp) {
                              return read_required_string(v, vp, sa.service_account);
                            }}});
        if (!r) return r;
        target.push_back(std::move(sa));
        return {};
      });
    };
  };
  auto cidrs = [&](std::vector<net::Cidr>& target) {
    return [&p, &target](const YAML::Node& n, const std::string& np) {
      return p.list(n, np, [&](const YAML::Node& item, const std::string& ip) -> Status {
        if (!item.IsScalar()) return error_at(ip, "must be an IP address or CIDR");
        auto cidr = net::Cidr::parse(item.Scalar());
        if (!cidr) return error_at(ip, cidr.error().message);
        target.push_back(*cidr);
        return {};
      });
    };
  };
  auto ports = [&](std::vector<uint16_t>& target) {
    return [&p, &target](const YAML::Node& n, const std::string& np) {
      return p.list(n, np, [&](const YAML::Node& item, const std::string& ip) -> Status {
        uint16_t port = 0;
        if (auto r = read_port(item, ip, port); !r) return r;
        target.push_back(port);
        return {};
      });
    };
  };
  return p.object(node, path,
                  {{"namespaces", false, strings(m.namespaces)},
                   {"notNamespaces", false, strings(m.not_namespaces)},
                   {"serviceAccounts", false, accounts(m.service_accounts)},
                   {"notServiceAccounts", false, accounts(m.not_service_accounts)},
                   {"principals", false, strings(m.principals)},
                   {"notPrincipals", false, strings(m.not_principals)},
                   {"sourceIps", false, cidrs(m.source_ips)},
                   {"notSourceIps", false, cidrs(m.not_source_ips)},
                   {"destinationIps", false, cidrs(m.destination_ips)},
                   {"notDestinationIps", false, cidrs(m.not_destination_ips)},
                   {"destinationPorts", false, ports(m.destination_ports)},
                   {"notDestinationPorts", false, ports(m.not_destination_ports)}});
}

Status read_policy(Parser& p, const YAML::Node& node, const std::string& path, Authorization& a) {
  return p.object(
      node, path,
      {{"name", true,
        [&](const YAML::Node& n, const std::string& np) { return read_required_string(n, np, a.name); }},
       {"namespace", true,
        [&](const YAML::Node& n, const std::string& np) {
          return read_required_string(n, np, a.namespace_name);
        }},
       {"scope", true,
        [&](const YAML::Node& n, const std::string& np) {
          return read_enum<PolicyScope>(n, np,
                                        {{"Global", PolicyScope::kGlobal},
                                         {"Namespace", PolicyScope::kNamespace},
                                         {"WorkloadSelector", PolicyScope::kWorkloadSelector}},
                                        a.scope);
        }},
       {"action", true,
        [&](const YAML::Node& n, const std::string& np) {
          return read_enum<PolicyAction>(
              n, np, {{"Allow", PolicyAction::kAllow}, {"Deny", PolicyAction::kDeny}}, a.action);
        }},
       {"dryRun", true,
        [&](const YAML::Node& n, const std::string& np) { return read_bool(n, np, a.dry_run); }},
       // rules: a list of rules, each a list of clauses, each a list of matches.
       {"rules", true, [&](const YAML::Node& n, const std::string& np) {
          return p.list(n, np, [&](const YAML::Node& rule_node, const std::string& rp) -> Status {
            Rule rule;
            auto r = p.list(rule_node, rp, [&](const YAML::Node& clause_node,
                                                const std::string& cp) -> Status {
              Clause clause;
              auto q = p.list(clause_node, cp, [&](const YAML::Node& match_node,
                                                    const std::string& mp) -> Status {
                Match match;
                if (auto t = read_match(p, match_node, mp, match); !t) return t;
                clause.push_back(std::move(match));
                return {};
              });
              if (!q) return q;
              rule.push_back(std::move(clause));
              return {};
            });
            if (!r) return r;
            a.rules.push_back(std::move(rule));
            return {};
          });
        }}});
}

Result<LocalConfig> parse_document(const YAML::Node& root) {
  LocalConfig config;
  if (root.IsNull()) return config;  // an empty file: nothing configured
  Parser p;
  auto s = p.object(
      root, "",
      {{"workloads", false,
        [&](const YAML::Node& n, const std::string& np) {
          return p.list(n, np, [&](const YAML::Node& item, const std::string& ip) -> Status {
            Workload w;
            if (auto r = read_workload(p, item, ip, w); !r) return r;
            config.workloads.push_back(std::move(w));
            return {};
          });
        }},
       {"services", false,
        [&](const YAML::Node& n, const std::string& np) {
          return p.list(n, np, [&](const YAML::Node& item, const std::string& ip) -> Status {
            Service svc;
            if (auto r = read_service(p, item, ip, svc); !r) return r;
            config.services.push_back(std::move(svc));
            return {};
          });
        }},
       {"policies", false, [&](const YAML::Node& n, const std::string& np) {
          return p.list(n, np, [&](const YAML::Node& item, const std::string& ip) -> Status {
            Authorization a;
            if (auto r = read_policy(p, item, ip, a); !r) return r;
            config.policies.push_back(std::move(a));
            return {};
          });
        }}});
  if (!s) {
    if (!root.IsMap()) return fail("top level: must be a map with workloads, services, policies");
    return tl::unexpected(s.error());
  }
  return config;
}

}  // namespace

Result<LocalConfig> parse_local_config_objects(std::string_view yaml) {
  if (yaml.size() > kMaxDocumentBytes) {
    return failf("config is {} bytes, more than the {} allowed", yaml.size(), kMaxDocumentBytes);
  }
  // yaml-cpp reports syntax errors (and a few node misuses) by exception; none may escape.
  try {
    YAML::Node root = YAML::Load(std::string(yaml));
    return parse_document(root);
  } catch (const YAML::ParserException& e) {
    return failf("yaml syntax error at line {}, column {}: {}", e.mark.line + 1, e.mark.column + 1,
                 e.msg);
  } catch (const YAML::Exception& e) {
    return failf("yaml error: {}", e.what());
  } catch (const std::exception& e) {
    return failf("config could not be read: {}", e.what());
  }
}

Result<std::shared_ptr<const State>> parse_local_config(std::string_view yaml) {
  auto config = parse_local_config_objects(yaml);
  if (!config) return tl::unexpected(config.error());
  return State::build(std::move(config->workloads), std::move(config->services),
                      std::move(config->policies));
}

Result<std::shared_ptr<const State>> load_local_config_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return failf("{}: cannot open: {}", path.string(), std::strerror(errno));
  std::ostringstream content;
  content << in.rdbuf();
  if (in.bad()) return failf("{}: cannot read: {}", path.string(), std::strerror(errno));
  auto state = parse_local_config(content.str());
  if (!state) return tl::unexpected(wrap(state.error(), path.string()));
  return state;
}

}  // namespace zt::state
