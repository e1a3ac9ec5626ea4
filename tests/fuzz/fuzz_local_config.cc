// Fuzzes the local config parser (YAML -> workloads, services, policies -> State), then routes a
// few connections through whatever state it accepted, so the indexes and the resolvers see
// fuzzer-made configurations too.
#include <cstddef>
#include <cstdint>
#include <random>
#include <string_view>

#include "ztunnel/state/local_config.h"
#include "ztunnel/state/routing.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace zt;
  auto state =
      state::parse_local_config(std::string_view(reinterpret_cast<const char*>(data), size));
  if (!state) return 0;
  const state::State& s = **state;
  std::mt19937_64 rng(size);
  constexpr size_t kLimit = 32;  // keep one input cheap however big the config

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
    }
  }
  budget = kLimit;
  for (const auto& svc : s.services()) {
    for (const auto& vip : svc->vips) {
      for (const auto& [port, target] : svc->ports) {
        if (budget-- == 0) return 0;
        (void)state::resolve_outbound(s, source, tcp::endpoint(vip.address, port), rng);
      }
    }
  }
  return 0;
}
