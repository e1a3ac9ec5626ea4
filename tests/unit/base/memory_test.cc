// fix_large_block_thresholds: after a burst of large blocks, a worker thread's arena gives its
// pages back when they are freed, even after a block larger than any threshold was freed.
#include "common/base/memory.h"

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace zt {
namespace {

// Both helpers are unused where the test body is compiled out (ASan's allocator).
// The process's anonymous resident memory, bytes (/proc/self/smaps_rollup).
[[maybe_unused]] size_t anonymous_bytes() {
  std::ifstream in("/proc/self/smaps_rollup");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("Anonymous:", 0) == 0) return std::stoull(line.substr(10)) * 1024;
  }
  return 0;
}

// Writes the block, and keeps the compiler from eliding a malloc/free pair it can see.
[[maybe_unused]] void touch(void* p, size_t n) {
  std::memset(p, 0x5a, n);
  asm volatile("" : : "r"(p) : "memory");
}

TEST(Memory, AWorkerArenaGivesABurstBackAfterALargeBlockWasFreed) {
#if defined(__SANITIZE_ADDRESS__) || !defined(__GLIBC__)
  GTEST_SKIP() << "needs glibc's allocator (this build uses another: ASan's, or not glibc)";
#else
  ASSERT_FALSE(std::ifstream("/proc/self/smaps_rollup").fail()) << "no /proc/self/smaps_rollup";
  fix_large_block_thresholds();
  size_t before = 0, during = 0, after = 0;
  // A thread of its own, so the blocks come from a non-main arena, as a ztunnel worker's do.
  std::thread worker([&] {
    // A bulk transfer's largest buffer: mapped on its own; freed, glibc would by default raise
    // its thresholds past 4 MiB.
    void* big = std::malloc(4 << 20);
    touch(big, 4 << 20);
    std::free(big);
    // Then 4 MiB of blocks the size of a bulk transfer's buffers, all freed.
    std::vector<void*> blocks;
    blocks.reserve(8);
    before = anonymous_bytes();
    for (int i = 0; i < 8; ++i) {
      blocks.push_back(std::malloc(512 << 10));
      touch(blocks.back(), 512 << 10);
    }
    during = anonymous_bytes();
    for (void* b : blocks) std::free(b);
    after = anonymous_bytes();
  });
  worker.join();
  ASSERT_GT(during, before + (3 << 20)) << "the blocks were not resident while in use";
  EXPECT_LT(after, before + (512 << 10))
      << "freed arena memory stayed resident: before " << before << ", in use " << during
      << ", after " << after << " bytes";
#endif
}

}  // namespace
}  // namespace zt
