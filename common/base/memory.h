// Keeping a daemon's resident memory near what it uses, with glibc's allocator. A no-op where
// the allocator has no such calls.
#pragma once

#include <chrono>
#include <cstddef>

namespace zt {

// Returns freed heap pages to the kernel after large transient work (a full xDS push, a
// multi-MB /config_dump, a bulk transfer's buffers). glibc keeps freed blocks for reuse, so a
// daemon's resident size would otherwise stay at its peak. It cannot return the free space at
// the top of a thread's arena: see fix_large_block_thresholds().
void release_free_memory();
// The same, unless any caller in the process did it less than `interval` ago: for callers on a
// data path (malloc_trim locks every arena in turn, and walks their free chunks).
void release_free_memory_at_most_every(std::chrono::steady_clock::duration interval);

// glibc raises its mmap threshold to the size of the largest mapped block freed so far (up to
// 32 MiB) and its trim threshold to twice that. After one bulk transfer whose buffers reached a
// few MiB, blocks of that size come from the worker threads' arenas, and the free space at an
// arena's top stays resident below the raised trim threshold: neither free() nor malloc_trim()
// gives it back. Fixing both thresholds turns that adjustment off: blocks of `mmap_threshold`
// and more are mapped on their own (unmapped when freed), and a free arena top of
// `trim_threshold` or more is given back when a block next to it is freed. Call it once at
// start.
void fix_large_block_thresholds(size_t mmap_threshold = 1024 * 1024,
                                size_t trim_threshold = 128 * 1024);

}  // namespace zt
