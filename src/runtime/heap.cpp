// Keeping large freed blocks in the heap: see heap.h.
#include "runtime/heap.h"

#include <cstdlib>
#include <cstring>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <fmt/format.h>

namespace qkv {
namespace {

// Both thresholds. mallopt takes an int, so 2 GiB is out of reach; a request above 1 GiB (rare: the
// logits of 8,000 tokens over 32,000 words) still gets its own mapping.
constexpr int kThresholdBytes = 1 << 30;

HeapPolicy g_policy = HeapPolicy::Unavailable;

bool user_has_heap_settings() {
  for (const char* name : {"MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"})
    if (std::getenv(name) != nullptr) return true;
  const char* tunables = std::getenv("GLIBC_TUNABLES");
  return tunables != nullptr && std::strstr(tunables, "glibc.malloc.") != nullptr;
}

}  // namespace

HeapPolicy keep_freed_memory() {
  if (user_has_heap_settings()) return g_policy = HeapPolicy::UserSettings;
#if defined(__GLIBC__)
  // A fixed mmap threshold also stops glibc from adjusting it, so it stays where it is set.
  const bool set =
      mallopt(M_MMAP_THRESHOLD, kThresholdBytes) == 1 && mallopt(M_TRIM_THRESHOLD, kThresholdBytes) == 1;
  return g_policy = set ? HeapPolicy::KeepsFreedBlocks : HeapPolicy::Unavailable;
#else
  return g_policy = HeapPolicy::Unavailable;
#endif
}

HeapPolicy heap_policy() {
  return g_policy;
}

std::string heap_policy_environment() {
  if (g_policy != HeapPolicy::KeepsFreedBlocks) return "";
  return fmt::format("MALLOC_MMAP_THRESHOLD_={0} MALLOC_TRIM_THRESHOLD_={0} ", kThresholdBytes);
}

std::string describe(HeapPolicy policy) {
  switch (policy) {
    case HeapPolicy::KeepsFreedBlocks:
      return fmt::format("heap: freed blocks kept (glibc mmap and trim thresholds {} MiB)",
                         kThresholdBytes >> 20);
    case HeapPolicy::UserSettings:
      return "heap: the environment's malloc settings";
    case HeapPolicy::Unavailable:
      break;
  }
  return "heap: the allocator's defaults";
}

}  // namespace qkv
