// Fuzzes the local config parser (YAML -> workloads, services, policies -> State), then routes and
// authorizes a few connections through whatever state it accepted (route_through.h).
#include <cstddef>
#include <cstdint>
#include <random>
#include <string_view>

#include "tests/fuzz/route_through.h"
#include "ztunnel/state/local_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace zt;
  auto state =
      state::parse_local_config(std::string_view(reinterpret_cast<const char*>(data), size));
  if (!state) return 0;
  std::mt19937_64 rng(size);
  fuzz::route_through(**state, rng);
  return 0;
}
