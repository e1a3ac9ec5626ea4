#include "ztunnel/state/state.h"

#include <algorithm>

#include <fmt/format.h>

namespace zt::state {

Result<std::shared_ptr<const State>> State::build(std::vector<Workload> workloads,
                                                  std::vector<Service> services,
                                                  std::vector<Authorization> policies) {
  std::vector<std::shared_ptr<const Workload>> shared_workloads;
  shared_workloads.reserve(workloads.size());
  for (auto& w : workloads) {
    shared_workloads.push_back(std::make_shared<const Workload>(std::move(w)));
  }
  std::vector<std::shared_ptr<const Service>> shared_services;
  shared_services.reserve(services.size());
  for (auto& svc : services) {
    shared_services.push_back(std::make_shared<const Service>(std::move(svc)));
  }
  std::vector<std::shared_ptr<const Authorization>> shared_policies;
  shared_policies.reserve(policies.size());
  for (auto& p : policies) {
    shared_policies.push_back(std::make_shared<const Authorization>(std::move(p)));
  }
  return build_shared(std::move(shared_workloads), std::move(shared_services),
                      std::move(shared_policies));
}

Result<std::shared_ptr<const State>> State::build_shared(
    std::vector<std::shared_ptr<const Workload>> workloads,
    std::vector<std::shared_ptr<const Service>> services,
    std::vector<std::shared_ptr<const Authorization>> policies) {
  std::shared_ptr<State> s(new State());

  for (size_t i = 0; i < workloads.size(); ++i) {
    auto w = std::move(workloads[i]);
    if (auto [it, fresh] = s->workload_by_uid_.emplace(std::string_view(w->uid), w); !fresh) {
      // workloads_ holds the ones before i, in order: find which one has the uid.
      auto first = std::find(s->workloads_.begin(), s->workloads_.end(), it->second);
      return failf("workloads[{}].uid: {} is already used by workloads[{}]", i, net::quote(w->uid),
                   first - s->workloads_.begin());
    }
    if (w->network_mode != NetworkMode::kHostNetwork) {
      auto& by_ip = s->workload_by_ip_[w->network];
      for (size_t k = 0; k < w->workload_ips.size(); ++k) {
        auto ip = net::unmap(w->workload_ips[k]);
        if (auto [it, fresh] = by_ip.emplace(ip, w); !fresh) {
          return failf("workloads[{}].workloadIps[{}]: {} on network {} is already used by "
                       "workload {}",
                       i, k, ip.to_string(), net::quote(w->network), net::quote(it->second->uid));
        }
      }
    }
    s->workloads_.push_back(std::move(w));
  }

  for (size_t i = 0; i < services.size(); ++i) {
    auto svc = std::move(services[i]);
    auto key = svc->key();
    if (auto [it, fresh] = s->service_by_key_.emplace(key, svc); !fresh) {
      return failf("services[{}]: service {} is defined twice", i, key);
    }
    s->services_by_hostname_[svc->hostname].push_back(svc);
    for (const auto& vip : svc->vips) {
      s->services_by_vip_[vip.network][net::unmap(vip.address)].push_back(svc);
    }
    s->services_.push_back(std::move(svc));
  }

  // Endpoints: every workload whose services map names a service, then the endpoints listed on
  // the service itself for workloads not already there. Services named by workloads but not
  // defined (yet) keep their endpoints, as ztunnel stages them.
  for (const auto& w : s->workloads_) {
    for (const auto& [service_key, ports] : w->services) {
      s->endpoints_by_service_[service_key].push_back(Endpoint{w, ports, w->status});
    }
  }
  for (const auto& svc : s->services_) {
    auto& list = s->endpoints_by_service_[svc->key()];
    for (const auto& ep : svc->endpoints) {
      auto w = s->find_workload_by_uid(ep.workload_uid);
      if (!w) continue;  // not known (yet): not an endpoint
      bool listed = std::any_of(list.begin(), list.end(),
                                [&](const Endpoint& e) { return e.workload == w; });
      if (!listed) list.push_back(Endpoint{w, ep.ports, ep.status});
    }
  }

  for (size_t i = 0; i < policies.size(); ++i) {
    auto p = std::move(policies[i]);
    if (auto [it, fresh] = s->policy_by_key_.emplace(p->key(), p); !fresh) {
      return failf("policies[{}]: policy {} is defined twice", i, p->key());
    }
    s->policies_.push_back(std::move(p));
  }
  return std::shared_ptr<const State>(std::move(s));
}

std::shared_ptr<const State> State::empty() {
  static const std::shared_ptr<const State> kEmpty(new State());
  return kEmpty;
}

std::shared_ptr<const Workload> State::find_workload(std::string_view network,
                                                     const asio::ip::address& ip) const {
  auto net_it = workload_by_ip_.find(network);
  if (net_it == workload_by_ip_.end()) return nullptr;
  auto it = net_it->second.find(net::unmap(ip));
  return it == net_it->second.end() ? nullptr : it->second;
}

std::shared_ptr<const Workload> State::find_workload_by_uid(std::string_view uid) const {
  auto it = workload_by_uid_.find(uid);
  return it == workload_by_uid_.end() ? nullptr : it->second;
}

std::shared_ptr<const Service> State::best_service(
    const std::vector<std::shared_ptr<const Service>>& candidates,
    std::string_view prefer_namespace) {
  if (candidates.empty()) return nullptr;
  if (!prefer_namespace.empty()) {
    for (const auto& svc : candidates) {
      if (svc->namespace_name == prefer_namespace) return svc;
    }
  }
  for (const auto& svc : candidates) {
    if (svc->canonical) return svc;
  }
  return candidates.front();
}

std::shared_ptr<const Service> State::find_service(std::string_view network,
                                                   const asio::ip::address& vip,
                                                   std::string_view prefer_namespace) const {
  auto net_it = services_by_vip_.find(network);
  if (net_it == services_by_vip_.end()) return nullptr;
  auto it = net_it->second.find(net::unmap(vip));
  if (it == net_it->second.end()) return nullptr;
  return best_service(it->second, prefer_namespace);
}

std::shared_ptr<const Service> State::find_service(std::string_view namespace_name,
                                                   std::string_view hostname) const {
  auto it = service_by_key_.find(fmt::format("{}/{}", namespace_name, hostname));
  return it == service_by_key_.end() ? nullptr : it->second;
}

std::shared_ptr<const Service> State::find_service_by_hostname(
    std::string_view hostname, std::string_view prefer_namespace) const {
  auto it = services_by_hostname_.find(hostname);
  if (it == services_by_hostname_.end()) return nullptr;
  return best_service(it->second, prefer_namespace);
}

const std::vector<State::Endpoint>& State::endpoints(std::string_view service_key) const {
  static const std::vector<Endpoint> kNone;
  auto it = endpoints_by_service_.find(service_key);
  return it == endpoints_by_service_.end() ? kNone : it->second;
}

std::shared_ptr<const Authorization> State::find_policy(std::string_view key) const {
  auto it = policy_by_key_.find(key);
  return it == policy_by_key_.end() ? nullptr : it->second;
}

}  // namespace zt::state
