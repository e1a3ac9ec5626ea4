#include "common/base/memory.h"

#include <atomic>
#include <cstdint>
#include <cstdlib>  // defines __GLIBC__ on glibc

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace zt {

void release_free_memory() {
#if defined(__GLIBC__)
  malloc_trim(0);
#endif
}

void release_free_memory_at_most_every(std::chrono::steady_clock::duration interval) {
  static std::atomic<int64_t> last{0};  // steady_clock ticks of the last release, 0: never
  const int64_t now = std::chrono::steady_clock::now().time_since_epoch().count();
  int64_t prev = last.load(std::memory_order_relaxed);
  if (prev != 0 && now - prev < interval.count()) return;
  if (!last.compare_exchange_strong(prev, now, std::memory_order_relaxed)) return;  // lost a race
  release_free_memory();
}

void fix_large_block_thresholds(size_t mmap_threshold, size_t trim_threshold) {
#if defined(__GLIBC__)
  // Setting either one turns glibc's dynamic adjustment of both off.
  mallopt(M_MMAP_THRESHOLD, static_cast<int>(mmap_threshold));
  mallopt(M_TRIM_THRESHOLD, static_cast<int>(trim_threshold));
#else
  (void)mmap_threshold;
  (void)trim_threshold;
#endif
}

}  // namespace zt
