#include "agent/locate/locate.h"

#include <fstream>

#include <gtest/gtest.h>
#include <unistd.h>

#include "tests/support/mesh.h"

namespace zt::agent {
namespace {

namespace fs = std::filesystem;

constexpr const char* kUid = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
constexpr const char* kUidUnderscored = "0f1e2d3c_4b5a_6978_8796_a5b4c3d2e1f0";

void write_procs(const fs::path& dir, const std::string& content) {
  fs::create_directories(dir);
  std::ofstream(dir / "cgroup.procs") << content;
}

TEST(CgroupNameMatches, CgroupfsAndSystemdLayouts) {
  EXPECT_TRUE(cgroup_name_matches(std::string("pod") + kUid, kUid));
  EXPECT_TRUE(cgroup_name_matches(
      std::string("kubepods-besteffort-pod") + kUidUnderscored + ".slice", kUid));
  EXPECT_TRUE(cgroup_name_matches(std::string("kubepods-pod") + kUidUnderscored + ".slice", kUid));
}

TEST(CgroupNameMatches, RejectsOtherUidsAndLongerNames) {
  EXPECT_FALSE(cgroup_name_matches("pod0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f1", kUid));
  EXPECT_FALSE(cgroup_name_matches(std::string("pod") + kUid + "0", kUid));
  EXPECT_FALSE(cgroup_name_matches(std::string("pod") + kUid + "-x", kUid));
  EXPECT_FALSE(cgroup_name_matches(kUid, kUid)) << "needs the pod prefix";
  EXPECT_FALSE(cgroup_name_matches("pod", ""));
  // A short, hand-written uid must not match a longer one that starts with it.
  EXPECT_FALSE(cgroup_name_matches("podweb-2", "web"));
  EXPECT_TRUE(cgroup_name_matches("podweb", "web"));
}

TEST(FindPodCgroups, FindsKubepodsCgroupfsAndSystemdAndSimulatorLayouts) {
  testing::TempDir root;
  auto cgroupfs = root.path() / "kubepods" / "besteffort" / "poda-1";
  auto systemd = root.path() / "kubepods.slice" / "kubepods-burstable.slice" /
                 "kubepods-burstable-podb_2.slice";
  auto sim = root.path() / "sim-1234" / "node-a" / "podc-3";
  fs::create_directories(cgroupfs / "0123abcd");  // a container below the pod
  fs::create_directories(systemd / "cri-containerd-99.scope");
  fs::create_directories(sim);
  fs::create_directories(root.path() / "system.slice" / "sshd.service");

  auto found = find_pod_cgroups(root.path(), {"a-1", "b-2", "c-3", "d-4"});
  ASSERT_EQ(found.size(), 3u);
  EXPECT_EQ(found.at("a-1"), cgroupfs);
  EXPECT_EQ(found.at("b-2"), systemd);
  EXPECT_EQ(found.at("c-3"), sim);
  EXPECT_EQ(found.count("d-4"), 0u);
}

TEST(FindPodCgroups, ShallowestMatchWinsAndDepthIsBounded) {
  testing::TempDir root;
  auto pod = root.path() / "x" / "poda-1";
  fs::create_directories(pod / "poda-1");  // a confusingly named child
  auto found = find_pod_cgroups(root.path(), {"a-1"});
  ASSERT_EQ(found.count("a-1"), 1u);
  EXPECT_EQ(found.at("a-1"), pod);
  EXPECT_TRUE(find_pod_cgroups(root.path(), {"a-1"}, /*max_depth=*/1).empty());
  EXPECT_EQ(find_pod_cgroups(root.path(), {"a-1"}, /*max_depth=*/2).size(), 1u);
}

TEST(FindPodCgroups, DoesNotFollowSymlinksOrFailOnMissingRoot) {
  testing::TempDir root;
  testing::TempDir elsewhere;
  fs::create_directories(elsewhere.path() / "poda-1");
  fs::create_directory_symlink(elsewhere.path(), root.path() / "link");
  EXPECT_TRUE(find_pod_cgroups(root.path(), {"a-1"}).empty());
  EXPECT_TRUE(find_pod_cgroups(root.path() / "missing", {"a-1"}).empty());
}

TEST(FirstPid, ReadsThePodOrItsContainers) {
  testing::TempDir root;
  auto pod = root.path() / "poda-1";
  write_procs(pod, "");
  write_procs(pod / "ctr-b", "");
  write_procs(pod / "ctr-a" / "inner", "4242\n4343\n");
  auto pid = first_pid(pod);
  ASSERT_TRUE(pid) << pid.error().describe();
  ASSERT_TRUE(pid->has_value());
  EXPECT_EQ(**pid, 4242);

  write_procs(pod, "77\n");
  EXPECT_EQ(first_pid(pod).value(), 77);
}

TEST(FirstPid, EmptyCgroupIsNotStartedAndMissingIsAnError) {
  testing::TempDir root;
  write_procs(root.path() / "poda-1", "");
  auto pid = first_pid(root.path() / "poda-1");
  ASSERT_TRUE(pid);
  EXPECT_FALSE(pid->has_value());
  auto missing = first_pid(root.path() / "nope");
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message.find("nope"), std::string::npos);
}

}  // namespace
}  // namespace zt::agent
