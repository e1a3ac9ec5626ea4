// Connections through a fuzzer-made ztunnel State: outbound to every workload IP and service
// VIP:port, inbound by IP and by service hostname, and L4 authorization at each workload, so the
// indexes, the resolvers and the policies see what a fuzzer accepted. Bounded per call, so a
// large state stays cheap. Shared by fuzz_local_config and fuzz_xds.
#pragma once

#include <cstddef>
#include <random>
#include <string>

#include "ztunnel/authz/authz.h"
#include "ztunnel/state/routing.h"
#include "ztunnel/state/state.h"

namespace zt::fuzz {

inline void route_through(const state::State& s, std::mt19937_64& rng) {
  constexpr size_t kLimit = 32;
  const state::Workload* source = s.workloads().empty() ? nullptr : s.workloads().front().get();

  size_t budget = kLimit;
  for (const auto& w : s.workloads()) {
    for (const auto& ip : w->workload_ips) {
      if (budget-- == 0) break;
      (void)state::resolve_outbound(s, source, tcp::endpoint(ip, 80), rng);
      hbone::Authority authority{.ip = ip, .host = {}, .port = 8080};
      (void)state::resolve_inbound(s, tcp::endpoint(ip, 15008), authority, w->network);
      for (const auto& [key, ports] : w->services) {
        auto slash = key.find('/');
        if (slash == std::string::npos) continue;
        for (const auto& [port, target] : ports) {
          hbone::Authority by_name{.ip = std::nullopt, .host = key.substr(slash + 1), .port = port};
          (void)state::resolve_inbound(s, tcp::endpoint(ip, 15008), by_name, w->network);
          break;
        }
      }
      authz::ConnectionInfo conn;
      conn.source_ip = source && !source->workload_ips.empty() ? source->workload_ips.front() : ip;
      if (source) {
        conn.identity.emplace(source->trust_domain, source->namespace_name,
                              source->service_account);
      }
      conn.destination_ip = ip;
      conn.destination_port = 8080;
      (void)authz::evaluate(conn, s, *w).reason();
    }
  }

  budget = kLimit;
  for (const auto& svc : s.services()) {
    for (const auto& vip : svc->vips) {
      for (const auto& [port, target] : svc->ports) {
        if (budget-- == 0) return;
        (void)state::resolve_outbound(s, source, tcp::endpoint(vip.address, port), rng);
        (void)state::usable_service_endpoints(s, *svc, port, vip.network, vip.address);
      }
    }
  }
}

}  // namespace zt::fuzz
