// Returning freed heap pages to the kernel after large transient work (a full xDS push, a
// multi-MB /config_dump). glibc keeps freed small blocks for reuse, so a daemon's resident size
// would otherwise stay at its peak. A no-op where the allocator has no such call.
#pragma once

namespace zt {

void release_free_memory();

}  // namespace zt
