// XdsResourceCache: the workloads, services and authorization policies received over Delta
// xDS, and the State snapshots built from them.
//
// Invariant: the cache never holds a set of objects that State::build refuses. Every accepted
// resource keeps workload uids, (network, IP) pairs of non-host-network workloads, service keys
// and policy keys unique; a resource that would break that is rejected alone, naming the
// resource it collides with, and the previously accepted version of that name (if any) stays.
//
// Not thread-safe by design: one writer, the xDS client's thread, calls apply() and snapshot().
// Readers never touch the cache; they read the snapshots it produces (published via
// state::StateStore), which are immutable.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/base/result.h"
#include "common/xds/delta_types.h"
#include "ztunnel/state/state.h"
#include "ztunnel/state/types.h"

namespace zt::xds {

class XdsResourceCache {
 public:
  XdsResourceCache() = default;
  XdsResourceCache(const XdsResourceCache&) = delete;
  XdsResourceCache& operator=(const XdsResourceCache&) = delete;

  // Applies one Delta response: removals first (unknown names are ignored), then each added or
  // changed resource on its own. Returns the resources refused; everything else was applied.
  // An update of an unknown type URL refuses all its added resources and removes nothing.
  std::vector<Rejection> apply(const DeltaUpdate& update);

  // The State for the current resources. Rebuilt only when generation() moved since the last
  // call; objects are shared with earlier snapshots, not copied. After a rebuild that follows
  // large updates (kTrimAfter resources or more since the last time), free heap pages are
  // returned to the OS (glibc malloc_trim): decoding a full push leaves tens of MiB free in
  // malloc's arenas that would otherwise stay in the RSS.
  std::shared_ptr<const state::State> snapshot();

  // Bumped by every apply() that changed something (an accepted resource or a removal of a
  // known name). Callers publish a snapshot only when it moved.
  uint64_t generation() const { return generation_; }

  size_t workload_count() const { return workloads_.size(); }
  size_t service_count() const { return services_.size(); }
  size_t policy_count() const { return policies_.size(); }

 private:
  using IpKey = std::pair<std::string, asio::ip::address>;  // (network, unmapped IP)

  Status put_address(const Resource& resource);
  Status put_workload(const std::string& name, state::Workload workload);
  Status put_service(const std::string& name, state::Service service);
  Status put_authorization(const Resource& resource);
  bool remove_address(const std::string& name);
  void remove_workload(const std::string& uid);

  // The IPs a workload is looked up by (none for host-network workloads).
  static std::vector<IpKey> ip_keys(const state::Workload& workload);

  std::map<std::string, std::shared_ptr<const state::Workload>, std::less<>> workloads_;
  std::map<std::string, std::shared_ptr<const state::Service>, std::less<>> services_;
  std::map<std::string, std::shared_ptr<const state::Authorization>, std::less<>> policies_;
  std::map<IpKey, std::string> workload_by_ip_;  // -> uid

  static constexpr size_t kTrimAfter = 1000;

  uint64_t generation_ = 0;
  size_t changed_since_trim_ = 0;  // resources added or removed since the last trim
  bool trim_pending_ = false;      // trim again at the next apply()
  uint64_t snapshot_generation_ = 0;
  std::shared_ptr<const state::State> snapshot_ = state::State::empty();
};

}  // namespace zt::xds
