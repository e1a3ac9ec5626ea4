// Privilege checks for tests that need the real kernel (raw sockets, eBPF, namespaces, cgroups).
//
// The rule every privileged test follows: when a privilege is missing the test is skipped with
// a message naming what it needs, except when REQUIRE_PRIVILEGED=1 is set, where the same
// condition fails the test. A CI job that is meant to exercise the privileged tier sets it, so
// it cannot pass by skipping everything.
//
//   ZT_REQUIRE_PRIVILEGE(has_capability(Capability::kNetRaw),
//                        "needs CAP_NET_RAW for an AF_PACKET capture on lo");
//
// The macro returns from the test body (like ASSERT_*), so use it in a TEST body or a helper
// returning void, before anything that needs the privilege.
#pragma once

#include <string>
#include <string_view>

#include <gtest/gtest.h>

namespace zt::testing {

// Linux capability numbers (linux/capability.h), named here so tests need no kernel header.
enum class Capability : int {
  kNetAdmin = 12,
  kNetRaw = 13,
  kSysAdmin = 21,
  kPerfmon = 38,
  kBpf = 39,
};

// True when `cap` is in this process's effective capability set (CapEff in /proc/self/status).
bool has_capability(Capability cap);

// True when the environment has REQUIRE_PRIVILEGED=1.
bool privileged_required();

enum class PrivilegeVerdict { kRun, kSkip, kFail };

// The rule above as a pure function: run when available; otherwise fail if required, else skip.
PrivilegeVerdict privilege_verdict(bool available, bool required);

// The failure message when a required privilege is missing.
std::string missing_privilege_failure(std::string_view what);

}  // namespace zt::testing

#define ZT_REQUIRE_PRIVILEGE(available, what)                                                \
  do {                                                                                       \
    const auto zt_verdict_ =                                                                 \
        ::zt::testing::privilege_verdict((available), ::zt::testing::privileged_required()); \
    if (zt_verdict_ == ::zt::testing::PrivilegeVerdict::kSkip) {                             \
      GTEST_SKIP() << (what);                                                                \
    } else if (zt_verdict_ == ::zt::testing::PrivilegeVerdict::kFail) {                      \
      GTEST_FAIL() << ::zt::testing::missing_privilege_failure(what);                        \
    }                                                                                        \
  } while (0)
