#include "ztunnel/app/config_dump.h"

#include <nlohmann/json.hpp>

#include "common/net/address.h"

namespace zt::app {
namespace {

using nlohmann::json;

std::string iso8601(std::chrono::system_clock::time_point t) {
  auto secs = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

json ports_json(const state::PortMap& ports) {
  json j = json::object();
  for (const auto& [svc, target] : ports) j[std::to_string(svc)] = target;
  return j;
}

json workload_json(const state::Workload& w) {
  json ips = json::array();
  for (const auto& ip : w.workload_ips) ips.push_back(ip.to_string());
  json services = json::object();
  for (const auto& [key, ports] : w.services) services[key] = ports_json(ports);
  return json{{"uid", w.uid},
              {"name", w.name},
              {"namespace", w.namespace_name},
              {"serviceAccount", w.service_account},
              {"trustDomain", w.trust_domain},
              {"workloadIps", ips},
              {"protocol", std::string(state::to_string(w.protocol))},
              {"node", w.node},
              {"network", w.network},
              {"status", w.status == state::HealthStatus::kHealthy ? "Healthy" : "Unhealthy"},
              {"capacity", w.capacity},
              {"services", services},
              {"authorizationPolicies", w.authorization_policies},
              {"identity", w.identity()}};
}

json service_json(const state::Service& s) {
  json vips = json::array();
  for (const auto& v : s.vips) vips.push_back(v.to_string());
  return json{{"name", s.name},
              {"namespace", s.namespace_name},
              {"hostname", s.hostname},
              {"vips", vips},
              {"ports", ports_json(s.ports)},
              {"subjectAltNames", s.subject_alt_names},
              {"endpoints", s.endpoints.size()}};
}

json string_matches(const std::vector<state::StringMatch>& v) {
  json out = json::array();
  for (const auto& m : v) {
    switch (m.kind) {
      case state::StringMatch::Kind::kExact:
        out.push_back(json{{"exact", m.value}});
        break;
      case state::StringMatch::Kind::kPrefix:
        out.push_back(json{{"prefix", m.value}});
        break;
      case state::StringMatch::Kind::kSuffix:
        out.push_back(json{{"suffix", m.value}});
        break;
      case state::StringMatch::Kind::kPresence:
        out.push_back(json{{"presence", true}});
        break;
    }
  }
  return out;
}

json service_accounts(const std::vector<state::ServiceAccountMatch>& v) {
  json out = json::array();
  for (const auto& sa : v) {
    out.push_back(json{{"namespace", sa.namespace_name}, {"serviceAccount", sa.service_account}});
  }
  return out;
}

json cidrs(const std::vector<net::Cidr>& v) {
  json out = json::array();
  for (const auto& c : v) out.push_back(c.to_string());
  return out;
}

// Only the fields that are set, as Istio's dump leaves empty lists out.
json match_json(const state::Match& m) {
  json j = json::object();
  auto put = [&j](const char* key, json value) {
    if (!value.empty()) j[key] = std::move(value);
  };
  put("namespaces", string_matches(m.namespaces));
  put("notNamespaces", string_matches(m.not_namespaces));
  put("serviceAccounts", service_accounts(m.service_accounts));
  put("notServiceAccounts", service_accounts(m.not_service_accounts));
  put("principals", string_matches(m.principals));
  put("notPrincipals", string_matches(m.not_principals));
  put("sourceIps", cidrs(m.source_ips));
  put("notSourceIps", cidrs(m.not_source_ips));
  put("destinationIps", cidrs(m.destination_ips));
  put("notDestinationIps", cidrs(m.not_destination_ips));
  put("destinationPorts", json(m.destination_ports));
  put("notDestinationPorts", json(m.not_destination_ports));
  return j;
}

json policy_json(const state::Authorization& p) {
  // rules (OR) -> clauses (AND) -> matches (OR).
  json rules = json::array();
  for (const auto& rule : p.rules) {
    json clauses = json::array();
    for (const auto& clause : rule) {
      json matches = json::array();
      for (const auto& m : clause) matches.push_back(match_json(m));
      clauses.push_back(json{{"matches", matches}});
    }
    rules.push_back(json{{"clauses", clauses}});
  }
  return json{{"name", p.name},
              {"namespace", p.namespace_name},
              {"scope", std::string(state::to_string(p.scope))},
              {"action", std::string(state::to_string(p.action))},
              {"dryRun", p.dry_run},
              {"rules", rules}};
}

}  // namespace

std::string config_dump_json(const std::shared_ptr<const state::State>& state,
                             const identity::CertificateManager& certs,
                             const config::Config& config,
                             const std::vector<EnrolledPodInfo>& pods) {
  json workloads = json::array();
  json services = json::array();
  json policies = json::array();
  for (const auto& w : state->workloads()) workloads.push_back(workload_json(*w));
  for (const auto& s : state->services()) services.push_back(service_json(*s));
  for (const auto& p : state->policies()) policies.push_back(policy_json(*p));
  json certificates = json::array();
  for (const auto& c : certs.list()) {
    json entry{{"identity", c.identity.uri()}, {"state", c.state}};
    if (!c.last_error.empty()) entry["lastError"] = c.last_error;
    if (!c.serial.empty()) {
      entry["serialNumber"] = c.serial;
      entry["validFrom"] = iso8601(c.not_before);
      entry["expirationTime"] = iso8601(c.not_after);
      entry["refreshAt"] = iso8601(c.refresh_at);
    }
    certificates.push_back(entry);
  }
  json cfg{
      {"proxyMode", config.proxy_mode == config::ProxyMode::kDedicated ? "dedicated" : "shared"},
      {"trustDomain", config.trust_domain},
      {"clusterId", config.cluster_id},
      {"nodeName", config.node_name},
      {"localXdsPath", config.local_xds_path.value_or("")},
      {"socks5Enabled", config.enable_socks5},
      {"workerThreads", config.worker_threads}};
  json dump{{"workloads", workloads},
            {"services", services},
            {"policies", policies},
            {"certificates", certificates},
            {"config", cfg}};
  if (config.proxy_mode == config::ProxyMode::kShared) {
    cfg["inpodUds"] = config.inpod_uds;
    cfg["bpfPinRoot"] = config.bpf_pin_root;
    cfg["inpodMark"] = config.inpod_mark;
    dump["config"] = cfg;
    json enrolled = json::array();
    for (const auto& p : pods) {
      enrolled.push_back(json{{"uid", p.uid},
                              {"workload", p.workload},
                              {"identity", p.identity},
                              {"netnsInode", p.netns_inode},
                              {"ips", p.ips}});
    }
    dump["pods"] = enrolled;
  } else if (config.sidecar_capture) {
    cfg["sidecarCapture"] = true;
    cfg["bpfPinRoot"] = config.bpf_pin_root;
    cfg["inpodMark"] = config.inpod_mark;
    dump["config"] = cfg;
  }
  return dump.dump(2);
}

}  // namespace zt::app
