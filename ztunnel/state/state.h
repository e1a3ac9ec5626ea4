// State: one immutable snapshot of the workloads, services and policies, with the indexes the
// data path looks things up by. A snapshot never changes after build(); a new configuration is
// a new snapshot published through StateStore (store.h). Objects are held by shared_ptr so a
// connection can keep the workload and service it resolved after the snapshot is replaced.
//
// Invariants checked by build(): workload uids are unique, a (network, IP) pair belongs to one
// workload, service keys ("namespace/hostname") and policy keys ("namespace/name") are unique.
// Several services may share a VIP (ServiceEntry allows it); lookups then prefer the caller's
// namespace, then a canonical service.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/base/result.h"
#include "ztunnel/state/types.h"

namespace zt::state {

class State {
 public:
  // A workload serving a service, with the port map that applies to it.
  struct Endpoint {
    std::shared_ptr<const Workload> workload{};
    PortMap ports{};  // this endpoint's own map; may be empty (then the service's map applies)
    HealthStatus status = HealthStatus::kHealthy;
  };

  // Errors name the offending element by its position, as in the local config file:
  // `workloads[1].uid: "a" is already used by workloads[0]`.
  static Result<std::shared_ptr<const State>> build(std::vector<Workload> workloads,
                                                    std::vector<Service> services,
                                                    std::vector<Authorization> policies);

  // The same checks over objects that are already shared (non-null): the xDS resource cache
  // keeps its objects between snapshots, so a rebuild copies pointers, not workloads.
  static Result<std::shared_ptr<const State>> build_shared(
      std::vector<std::shared_ptr<const Workload>> workloads,
      std::vector<std::shared_ptr<const Service>> services,
      std::vector<std::shared_ptr<const Authorization>> policies);

  // The state before any configuration arrived.
  static std::shared_ptr<const State> empty();

  const std::vector<std::shared_ptr<const Workload>>& workloads() const { return workloads_; }
  const std::vector<std::shared_ptr<const Service>>& services() const { return services_; }
  const std::vector<std::shared_ptr<const Authorization>>& policies() const { return policies_; }

  // Host-network workloads are not indexed by IP (their IP is the node's).
  std::shared_ptr<const Workload> find_workload(std::string_view network,
                                                const asio::ip::address& ip) const;
  std::shared_ptr<const Workload> find_workload_by_uid(std::string_view uid) const;

  std::shared_ptr<const Service> find_service(std::string_view network,
                                              const asio::ip::address& vip,
                                              std::string_view prefer_namespace = {}) const;
  std::shared_ptr<const Service> find_service(std::string_view namespace_name,
                                              std::string_view hostname) const;
  std::shared_ptr<const Service> find_service_by_hostname(
      std::string_view hostname, std::string_view prefer_namespace = {}) const;

  // Endpoints of the service with this key, in workload order; empty when none.
  const std::vector<Endpoint>& endpoints(std::string_view service_key) const;

  std::shared_ptr<const Authorization> find_policy(std::string_view key) const;

 private:
  State() = default;

  template <class T>
  using ByName = std::map<std::string, T, std::less<>>;
  template <class T>
  using ByAddress = ByName<std::map<asio::ip::address, T>>;  // network -> ip -> T

  static std::shared_ptr<const Service> best_service(
      const std::vector<std::shared_ptr<const Service>>& candidates,
      std::string_view prefer_namespace);

  std::vector<std::shared_ptr<const Workload>> workloads_;
  std::vector<std::shared_ptr<const Service>> services_;
  std::vector<std::shared_ptr<const Authorization>> policies_;

  // Keys view the uid inside the workload the value owns: no copy of 10k uids per snapshot.
  std::map<std::string_view, std::shared_ptr<const Workload>, std::less<>> workload_by_uid_;
  ByAddress<std::shared_ptr<const Workload>> workload_by_ip_;
  ByName<std::shared_ptr<const Service>> service_by_key_;
  ByName<std::vector<std::shared_ptr<const Service>>> services_by_hostname_;
  ByAddress<std::vector<std::shared_ptr<const Service>>> services_by_vip_;
  ByName<std::vector<Endpoint>> endpoints_by_service_;
  ByName<std::shared_ptr<const Authorization>> policy_by_key_;
};

}  // namespace zt::state
