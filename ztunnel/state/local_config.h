// The local config file (LOCAL_XDS_PATH): workloads, services and policies in the camelCase
// YAML layout Istio's ztunnel accepts (facts §4.5). Unknown keys are errors everywhere, policy
// matches included: a misspelt match field silently ignored would widen a policy. Errors name
// the field by its path, e.g. `workloads[0].workloadIps[1]: "abc" is not an IP address`.
// Parsing is pure and never throws, so it is fuzzed (tests/fuzz/fuzz_local_config.cc).
#pragma once

#include <filesystem>
#include <memory>
#include <string_view>
#include <vector>

#include "common/base/result.h"
#include "ztunnel/state/state.h"
#include "ztunnel/state/types.h"

namespace zt::state {

// The objects of a config file, before the State indexes are built.
struct LocalConfig {
  std::vector<Workload> workloads{};
  std::vector<Service> services{};
  std::vector<Authorization> policies{};
};

Result<LocalConfig> parse_local_config_objects(std::string_view yaml);

// Objects plus State::build's consistency checks (unique uids, IPs, keys).
Result<std::shared_ptr<const State>> parse_local_config(std::string_view yaml);

// Reads and parses the file; errors start with the path.
Result<std::shared_ptr<const State>> load_local_config_file(const std::filesystem::path& path);

}  // namespace zt::state
