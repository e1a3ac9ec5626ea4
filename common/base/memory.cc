#include "common/base/memory.h"

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
