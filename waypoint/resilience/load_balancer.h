// Endpoint pickers for DestinationRule loadBalancer: round robin, random, least request (Envoy's
// power-of-two-choices, Istio's default) and consistent hash on a ring (ringHash). Each works on
// a snapshot of the hosts with their health (outlier ejection) and active request counts and
// returns an index, or nullopt when no host is available (503, flag UH).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "waypoint/base/random.h"
#include "waypoint/config/model.h"
#include "waypoint/http/headers.h"

namespace zt::waypoint::resilience {

struct HostView {
  bool available = true;         // not ejected (or panic mode)
  uint32_t active_requests = 0;  // for least request
};

// Next available host after `cursor` (advanced).
std::optional<size_t> pick_round_robin(std::span<const HostView> hosts, uint64_t& cursor);
std::optional<size_t> pick_random(std::span<const HostView> hosts, Random& random);
// Draws `choices` available hosts at random and keeps the one with the fewest active requests.
std::optional<size_t> pick_least_request(std::span<const HostView> hosts, Random& random,
                                         uint32_t choices = 2);

// A stable 64-bit hash (FNV-1a with a final avalanche), the same in every process.
uint64_t hash64(std::string_view data);

// Ring hash: each host gets ceil(minimum_ring_size / hosts) points at hash64("<key>_<i>").
// A request hash maps to the first point at or after it (wrapping); unavailable hosts are
// skipped by walking on. Removing a host moves only the keys that mapped to it.
class RingHash {
 public:
  RingHash(const std::vector<std::string>& host_keys, uint64_t minimum_ring_size);
  std::optional<size_t> pick(uint64_t request_hash, std::span<const HostView> hosts) const;
  size_t ring_size() const { return ring_.size(); }

 private:
  std::vector<std::pair<uint64_t, uint32_t>> ring_;  // (point, host index), sorted
};

// The value a consistent-hash policy hashes for a request: a header (repeated ones joined),
// a cookie, the source IP, or a query parameter. nullopt when absent (the proxy then picks at
// random; for a cookie policy it may set the cookie on the response).
std::optional<std::string> consistent_hash_key(const config::ConsistentHash& hash,
                                               const http::RequestHead& head,
                                               std::string_view source_ip);

// One destination's picker, from its LoadBalancer settings. Not thread-safe: one per worker.
class EndpointPicker {
 public:
  EndpointPicker(config::LoadBalancer lb, std::vector<std::string> host_keys);
  std::optional<size_t> pick(std::span<const HostView> hosts, const http::RequestHead& head,
                             std::string_view source_ip, Random& random);
  const std::vector<std::string>& host_keys() const { return keys_; }

 private:
  config::LoadBalancer lb_;
  std::vector<std::string> keys_;
  std::optional<RingHash> ring_;
  uint64_t cursor_ = 0;
};

}  // namespace zt::waypoint::resilience
