// The simulator's child processes (sim/host.h), as far as they need no privilege.
#include <sys/syscall.h>
#include <sys/wait.h>

#include <chrono>
#include <fstream>
#include <string>
#include <thread>

#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include "common/base/unique_fd.h"
#include "sim/host.h"
#include "tests/support/mesh.h"

namespace zt::testing {
namespace {

using namespace std::chrono_literals;

// A command run by a caller that is killed (meshsim hit by SIGKILL while it builds a cluster) dies
// with it, instead of running on unseen and racing the next run for what it creates.
TEST(SimHost, ACommandDiesWithTheCallerThatRanIt) {
  TempDir dir;
  const auto pid_file = dir.path() / "pid";
  const pid_t caller = ::fork();
  ASSERT_GE(caller, 0);
  if (caller == 0) {
    sim::SpawnSpec spec;
    spec.argv = {"sh", "-c",
                 "echo $$ > " + pid_file.string() + ".tmp && mv " + pid_file.string() + ".tmp " +
                     pid_file.string() + " && exec sleep 60"};
    auto r = sim::run_captured(spec, 120s);
    ::_exit(r ? 0 : 1);
  }
  pid_t command = 0;
  for (auto deadline = std::chrono::steady_clock::now() + 10s;
       command == 0 && std::chrono::steady_clock::now() < deadline;) {
    std::ifstream in(pid_file);
    if (!(in >> command)) std::this_thread::sleep_for(5ms);
  }
  ::kill(caller, SIGKILL);
  ::waitpid(caller, nullptr, 0);
  ASSERT_GT(command, 0) << "the command never started";

  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, command, 0)));
  if (!pidfd) return;  // already gone (and reaped)
  pollfd p{pidfd.get(), POLLIN, 0};
  const int exited = ::poll(&p, 1, 10'000);
  if (exited != 1) ::kill(command, SIGKILL);
  EXPECT_EQ(exited, 1) << "the command outlived the caller that ran it by 10 s";
}

}  // namespace
}  // namespace zt::testing
