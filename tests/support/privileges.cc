#include "tests/support/privileges.h"

#include <cstdlib>
#include <fstream>

#include <fmt/format.h>

namespace zt::testing {

bool has_capability(Capability cap) {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("CapEff:", 0) != 0) continue;
    uint64_t mask = std::strtoull(line.c_str() + 7, nullptr, 16);
    return ((mask >> static_cast<int>(cap)) & 1u) != 0;
  }
  return false;
}

bool privileged_required() {
  const char* v = std::getenv("REQUIRE_PRIVILEGED");
  return v != nullptr && std::string_view(v) == "1";
}

PrivilegeVerdict privilege_verdict(bool available, bool required) {
  if (available) return PrivilegeVerdict::kRun;
  return required ? PrivilegeVerdict::kFail : PrivilegeVerdict::kSkip;
}

std::string missing_privilege_failure(std::string_view what) {
  return fmt::format("{} (REQUIRE_PRIVILEGED=1, so a missing privilege fails instead of skipping)",
                     what);
}

}  // namespace zt::testing
