#include <gtest/gtest.h>

#include "common/fs/inotify.h"
#include "meshd/manifest/source.h"
#include "tests/support/cluster_manifests.h"
#include "tests/support/mesh.h"

namespace zt::meshd::manifest {
namespace {

using namespace std::chrono_literals;

class Watcher : public ::testing::Test {
 protected:
  void SetUp() override {
    auto watcher = ManifestWatcher::start(
        io_.get_executor(), dir_.path(), [this] { ++changes_; }, 50ms);
    ASSERT_TRUE(watcher) << watcher.error().describe();
    watcher_ = std::move(*watcher);
  }

  // Runs the io_context until `changes_` reaches `count` or `limit` passes.
  bool run_until(int count, std::chrono::milliseconds limit = 5000ms) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (changes_ < count && std::chrono::steady_clock::now() < deadline) {
      io_.run_for(10ms);
      io_.restart();
    }
    return changes_ >= count;
  }

  // Runs for `d` regardless (to see that nothing more arrives).
  void run_for(std::chrono::milliseconds d) {
    io_.run_for(d);
    io_.restart();
  }

  testing::TempDir dir_;
  asio::io_context io_;
  std::unique_ptr<ManifestWatcher> watcher_;
  int changes_ = 0;
};

TEST_F(Watcher, BurstOfWritesIsOneCallback) {
  for (int i = 0; i < 5; ++i) {
    testing::write_manifest_file(dir_.path() / fmt::format("f{}.yaml", i), "a: 1\n");
  }
  ASSERT_TRUE(run_until(1));
  run_for(200ms);
  EXPECT_EQ(changes_, 1);
}

TEST_F(Watcher, ChangesInNewSubdirectoriesAreSeen) {
  std::filesystem::create_directories(dir_.path() / "ns-a");
  ASSERT_TRUE(run_until(1));
  run_for(100ms);
  int before = changes_;
  testing::write_manifest_file(dir_.path() / "ns-a" / "pods.yaml", "a: 1\n");
  EXPECT_TRUE(run_until(before + 1));
}

TEST_F(Watcher, ExistingSubdirectoriesAndDeletionsAreSeen) {
  watcher_.reset();
  testing::write_manifest_file(dir_.path() / "sub" / "x.yaml", "a: 1\n");
  auto watcher = ManifestWatcher::start(io_.get_executor(), dir_.path(), [this] { ++changes_; });
  ASSERT_TRUE(watcher);
  watcher_ = std::move(*watcher);
  std::filesystem::remove(dir_.path() / "sub" / "x.yaml");
  EXPECT_TRUE(run_until(1));
}

TEST_F(Watcher, ConfigMapSymlinkSwapIsSeen) {
  testing::write_manifest_file(dir_.path() / "..v1" / "p.yaml", "a: 1\n");
  std::filesystem::create_directory_symlink("..v1", dir_.path() / "..data");
  ASSERT_TRUE(run_until(1));
  run_for(100ms);
  int before = changes_;
  testing::write_manifest_file(dir_.path() / "..v2" / "p.yaml", "a: 2\n");
  run_for(100ms);
  before = changes_;
  // The atomic swap kubelet does: a new link renamed over "..data".
  std::filesystem::create_directory_symlink("..v2", dir_.path() / "..data_tmp");
  std::filesystem::rename(dir_.path() / "..data_tmp", dir_.path() / "..data");
  EXPECT_TRUE(run_until(before + 1));
}

TEST_F(Watcher, StoppedWatcherCallsNothing) {
  watcher_->stop();
  testing::write_manifest_file(dir_.path() / "x.yaml", "a: 1\n");
  run_for(200ms);
  EXPECT_EQ(changes_, 0);
}

TEST(ManifestWatcherStart, MissingDirectoryIsAnError) {
  asio::io_context io;
  auto watcher = ManifestWatcher::start(io.get_executor(), "/nonexistent/zt-manifests", [] {});
  ASSERT_FALSE(watcher);
  EXPECT_NE(watcher.error().describe().find("watching the manifest directory"), std::string::npos);
}

TEST(InotifyDecode, SplitsRecordsAndNames) {
  alignas(inotify_event) char buffer[256] = {};
  inotify_event first{1, IN_CREATE, 0, 16};
  std::memcpy(buffer, &first, sizeof(first));
  std::memcpy(buffer + sizeof(first), "pods.yaml", 9);
  inotify_event second{2, IN_DELETE_SELF, 0, 0};
  std::memcpy(buffer + sizeof(first) + 16, &second, sizeof(second));
  auto events = fs::decode_inotify_events(buffer, 2 * sizeof(inotify_event) + 16);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].watch, 1);
  EXPECT_EQ(events[0].name, "pods.yaml");
  EXPECT_EQ(events[1].mask, static_cast<uint32_t>(IN_DELETE_SELF));
  EXPECT_EQ(events[1].name, "");
  // A truncated record is not read past the buffer.
  EXPECT_EQ(fs::decode_inotify_events(buffer, sizeof(inotify_event) + 4).size(), 0u);
}

}  // namespace
}  // namespace zt::meshd::manifest
