#include "ztunnel/xds/resource_cache.h"

#include <set>

#include <fmt/format.h>

#include "common/base/log.h"
#include "common/base/memory.h"
#include "istio/security/authorization.pb.h"
#include "istio/workload/workload.pb.h"
#include "ztunnel/xds/translate.h"

namespace zt::xds {

std::vector<Rejection> XdsResourceCache::apply(const DeltaUpdate& update) {
  // The previous large update's response and decoded copies are freed by now.
  if (trim_pending_) {
    trim_pending_ = false;
    release_free_memory();
  }
  std::vector<Rejection> rejected;
  const bool address = update.type_url == kAddressType;
  if (!address && update.type_url != kAuthorizationType) {
    for (const auto& r : update.added) {
      rejected.push_back({r.name, fmt::format("unsupported type {}", net::quote(update.type_url))});
    }
    return rejected;
  }

  bool changed = false;
  // Removals first, so an update that moves an IP from a removed workload to an added one
  // goes through.
  for (const auto& name : update.removed) {
    changed |= address ? remove_address(name) : policies_.erase(name) > 0;
  }
  for (const auto& resource : update.added) {
    auto s = address ? put_address(resource) : put_authorization(resource);
    if (s) {
      changed = true;
    } else {
      rejected.push_back({resource.name, std::move(s.error().message)});
    }
  }
  if (changed) ++generation_;
  changed_since_trim_ += update.added.size() + update.removed.size();
  return rejected;
}

Status XdsResourceCache::put_address(const Resource& resource) {
  istio::workload::Address address;
  if (!resource.body.Is<istio::workload::Address>()) {
    return failf("body is {}, not istio.workload.Address", net::quote(resource.body.type_url()));
  }
  if (!parse_body(resource.body, address)) return fail("cannot decode istio.workload.Address");
  switch (address.type_case()) {
    case istio::workload::Address::kWorkload: {
      auto workload = to_workload(address.workload());
      if (!workload) return tl::unexpected(workload.error());
      return put_workload(resource.name, std::move(*workload));
    }
    case istio::workload::Address::kService: {
      auto service = to_service(address.service());
      if (!service) return tl::unexpected(service.error());
      return put_service(resource.name, std::move(*service));
    }
    case istio::workload::Address::TYPE_NOT_SET:
      break;
  }
  return fail("Address has neither a workload nor a service");
}

std::vector<XdsResourceCache::IpKey> XdsResourceCache::ip_keys(const state::Workload& workload) {
  std::vector<IpKey> keys;
  if (workload.network_mode == state::NetworkMode::kHostNetwork) return keys;
  keys.reserve(workload.workload_ips.size());
  for (const auto& ip : workload.workload_ips) keys.emplace_back(workload.network, net::unmap(ip));
  return keys;
}

Status XdsResourceCache::put_workload(const std::string& name, state::Workload workload) {
  if (name != workload.uid) {
    return failf("resource name does not match the workload uid {}", net::quote(workload.uid));
  }
  // The same checks State::build makes, against everything else the cache holds.
  auto keys = ip_keys(workload);
  std::set<IpKey> own;
  for (const auto& key : keys) {
    if (!own.insert(key).second) {
      return failf("address {} on network {} is listed twice", key.second.to_string(),
                   net::quote(key.first));
    }
    auto it = workload_by_ip_.find(key);
    if (it != workload_by_ip_.end() && it->second != workload.uid) {
      return failf("address {} on network {} is already used by workload {}",
                   key.second.to_string(), net::quote(key.first), net::quote(it->second));
    }
  }

  // An Address name that was a service is now a workload.
  services_.erase(name);
  remove_workload(workload.uid);
  for (auto& key : keys) workload_by_ip_.emplace(std::move(key), workload.uid);
  auto uid = workload.uid;
  workloads_.emplace(std::move(uid), std::make_shared<const state::Workload>(std::move(workload)));
  return {};
}

Status XdsResourceCache::put_service(const std::string& name, state::Service service) {
  auto key = service.key();
  if (name != key) {
    return failf("resource name does not match the service namespace/hostname {}", net::quote(key));
  }
  remove_workload(name);  // an Address name that was a workload is now a service
  services_.insert_or_assign(std::move(key),
                             std::make_shared<const state::Service>(std::move(service)));
  return {};
}

Status XdsResourceCache::put_authorization(const Resource& resource) {
  istio::security::Authorization policy;
  if (!resource.body.Is<istio::security::Authorization>()) {
    return failf("body is {}, not istio.security.Authorization",
                 net::quote(resource.body.type_url()));
  }
  if (!parse_body(resource.body, policy)) {
    return fail("cannot decode istio.security.Authorization");
  }
  auto translated = to_authorization(policy);
  if (!translated) return tl::unexpected(translated.error());
  auto key = translated->key();
  if (resource.name != key) {
    return failf("resource name does not match the policy namespace/name {}", net::quote(key));
  }
  policies_.insert_or_assign(std::move(key),
                             std::make_shared<const state::Authorization>(std::move(*translated)));
  return {};
}

void XdsResourceCache::remove_workload(const std::string& uid) {
  auto it = workloads_.find(uid);
  if (it == workloads_.end()) return;
  for (const auto& key : ip_keys(*it->second)) {
    auto owner = workload_by_ip_.find(key);
    if (owner != workload_by_ip_.end() && owner->second == uid) workload_by_ip_.erase(owner);
  }
  workloads_.erase(it);
}

bool XdsResourceCache::remove_address(const std::string& name) {
  bool known = workloads_.contains(name) || services_.contains(name);
  remove_workload(name);
  services_.erase(name);
  return known;
}

std::shared_ptr<const state::State> XdsResourceCache::snapshot() {
  if (snapshot_generation_ == generation_) return snapshot_;
  std::vector<std::shared_ptr<const state::Workload>> workloads;
  workloads.reserve(workloads_.size());
  for (const auto& [uid, w] : workloads_) workloads.push_back(w);
  std::vector<std::shared_ptr<const state::Service>> services;
  services.reserve(services_.size());
  for (const auto& [key, svc] : services_) services.push_back(svc);
  std::vector<std::shared_ptr<const state::Authorization>> policies;
  policies.reserve(policies_.size());
  for (const auto& [key, p] : policies_) policies.push_back(p);

  auto built =
      state::State::build_shared(std::move(workloads), std::move(services), std::move(policies));
  if (!built) {
    // apply() keeps State::build's invariants, so this is a bug; keep serving the last good
    // snapshot rather than an empty one.
    ZT_LOG_ERROR("component=xds state rebuild failed, keeping the previous snapshot: {}",
                 built.error().message);
  } else {
    snapshot_ = std::move(*built);
  }
  snapshot_generation_ = generation_;
  if (changed_since_trim_ >= kTrimAfter) {
    changed_since_trim_ = 0;
    trim_pending_ = true;
    release_free_memory();
  }
  return snapshot_;
}

}  // namespace zt::xds
