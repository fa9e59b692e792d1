// How much memory this process may still use: what the kernel reports available (MemAvailable in
// /proc/meminfo: free memory plus caches it can drop), capped by a container's memory limit (cgroup
// v2 memory.max, or v1 memory.limit_in_bytes, less what the group already uses). Config checks
// (config/resources.h) compare their estimates with it before building a model.
#pragma once

#include <cstdint>

namespace qkv {

// Bytes available now; UINT64_MAX when nothing can be read (no /proc: nothing is refused).
uint64_t available_memory_bytes();

}  // namespace qkv
