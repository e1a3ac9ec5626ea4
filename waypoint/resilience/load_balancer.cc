#include "waypoint/resilience/load_balancer.h"

#include <algorithm>

#include "waypoint/base/strings.h"

namespace zt::waypoint::resilience {

std::optional<size_t> pick_round_robin(std::span<const HostView> hosts, uint64_t& cursor) {
  const size_t n = hosts.size();
  for (size_t i = 0; i < n; ++i) {
    const size_t idx = static_cast<size_t>((cursor + i) % n);
    if (hosts[idx].available) {
      cursor = idx + 1;
      return idx;
    }
  }
  return std::nullopt;
}

namespace {

std::vector<size_t> available_indices(std::span<const HostView> hosts) {
  std::vector<size_t> out;
  for (size_t i = 0; i < hosts.size(); ++i) {
    if (hosts[i].available) out.push_back(i);
  }
  return out;
}

}  // namespace

std::optional<size_t> pick_random(std::span<const HostView> hosts, Random& random) {
  const auto avail = available_indices(hosts);
  if (avail.empty()) return std::nullopt;
  return avail[random.below(avail.size())];
}

std::optional<size_t> pick_least_request(std::span<const HostView> hosts, Random& random,
                                         uint32_t choices) {
  const auto avail = available_indices(hosts);
  if (avail.empty()) return std::nullopt;
  size_t best = avail[random.below(avail.size())];
  for (uint32_t i = 1; i < choices; ++i) {
    const size_t candidate = avail[random.below(avail.size())];
    if (hosts[candidate].active_requests < hosts[best].active_requests) best = candidate;
  }
  return best;
}

uint64_t hash64(std::string_view data) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : data) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  // splitmix64 finalizer: FNV's low bits alone cluster on similar keys.
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ULL;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebULL;
  h ^= h >> 31;
  return h;
}

RingHash::RingHash(const std::vector<std::string>& host_keys, uint64_t minimum_ring_size) {
  if (host_keys.empty()) return;
  const uint64_t per_host =
      std::max<uint64_t>(1, (minimum_ring_size + host_keys.size() - 1) / host_keys.size());
  ring_.reserve(per_host * host_keys.size());
  for (uint32_t h = 0; h < host_keys.size(); ++h) {
    for (uint64_t i = 0; i < per_host; ++i) {
      ring_.emplace_back(hash64(host_keys[h] + "_" + std::to_string(i)), h);
    }
  }
  std::sort(ring_.begin(), ring_.end());
}

std::optional<size_t> RingHash::pick(uint64_t request_hash, std::span<const HostView> hosts) const {
  if (ring_.empty()) return std::nullopt;
  auto it = std::lower_bound(ring_.begin(), ring_.end(), std::make_pair(request_hash, uint32_t{0}));
  size_t pos = static_cast<size_t>(it - ring_.begin());
  for (size_t step = 0; step < ring_.size(); ++step) {
    const auto& [point, host] = ring_[(pos + step) % ring_.size()];
    if (host < hosts.size() && hosts[host].available) return host;
  }
  return std::nullopt;
}

std::optional<std::string> consistent_hash_key(const config::ConsistentHash& hash,
                                               const http::RequestHead& head,
                                               std::string_view source_ip) {
  using S = config::ConsistentHash::Source;
  switch (hash.source) {
    case S::kHeader:
      return http::joined_header(head.headers, hash.name);
    case S::kSourceIp:
      if (source_ip.empty()) return std::nullopt;
      return std::string(source_ip);
    case S::kCookie:
      for (const auto& h : head.headers) {
        if (!iequals(h.name, "cookie")) continue;
        for (auto pair : split_list(h.value, ';')) {
          const size_t eq = pair.find('=');
          if (eq == pair.npos) continue;
          if (trim_ows(pair.substr(0, eq)) == hash.name) {
            return std::string(trim_ows(pair.substr(eq + 1)));
          }
        }
      }
      return std::nullopt;
    case S::kQueryParameter:
      for (auto part : split_list(head.query(), '&')) {
        const size_t eq = part.find('=');
        if (part.substr(0, eq) == hash.name) {
          return eq == part.npos ? std::string() : std::string(part.substr(eq + 1));
        }
      }
      return std::nullopt;
  }
  return std::nullopt;
}

EndpointPicker::EndpointPicker(config::LoadBalancer lb, std::vector<std::string> host_keys)
    : lb_(std::move(lb)), keys_(std::move(host_keys)) {
  if (lb_.algorithm == config::LbAlgorithm::kConsistentHash && lb_.hash) {
    ring_.emplace(keys_, lb_.hash->minimum_ring_size);
  }
}

std::optional<size_t> EndpointPicker::pick(std::span<const HostView> hosts,
                                           const http::RequestHead& head,
                                           std::string_view source_ip, Random& random) {
  switch (lb_.algorithm) {
    case config::LbAlgorithm::kRoundRobin:
      return pick_round_robin(hosts, cursor_);
    case config::LbAlgorithm::kRandom:
    case config::LbAlgorithm::kPassthrough:
      return pick_random(hosts, random);
    case config::LbAlgorithm::kLeastRequest:
      return pick_least_request(hosts, random);
    case config::LbAlgorithm::kConsistentHash:
      if (ring_ && lb_.hash) {
        if (auto key = consistent_hash_key(*lb_.hash, head, source_ip)) {
          return ring_->pick(hash64(*key), hosts);
        }
      }
      return pick_random(hosts, random);
  }
  return std::nullopt;
}

}  // namespace zt::waypoint::resilience
