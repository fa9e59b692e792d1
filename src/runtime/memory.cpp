// Available memory: see memory.h.
#include "runtime/memory.h"

#include <algorithm>
#include <fstream>
#include <limits>
#include <string>

namespace qkv {
namespace {

constexpr uint64_t kUnknown = std::numeric_limits<uint64_t>::max();

// The first number in `path`, or kUnknown (a missing file, or "max": no limit).
uint64_t read_number(const char* path) {
  std::ifstream in(path);
  uint64_t value = 0;
  if (!(in >> value)) return kUnknown;
  return value;
}

uint64_t meminfo_available() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  uint64_t kib = 0;
  std::string unit;
  while (in >> key >> kib >> unit)
    if (key == "MemAvailable:") return kib * 1024;
  return kUnknown;
}

// A memory limit's headroom: limit - usage, kUnknown without a limit. (Limits near 2^63 mean none.)
uint64_t cgroup_headroom(const char* limit_path, const char* usage_path) {
  const uint64_t limit = read_number(limit_path);
  if (limit == kUnknown || limit >= (uint64_t{1} << 62)) return kUnknown;
  const uint64_t usage = read_number(usage_path);
  if (usage == kUnknown) return limit;
  return usage >= limit ? 0 : limit - usage;
}

}  // namespace

uint64_t available_memory_bytes() {
  return std::min({meminfo_available(),
                   cgroup_headroom("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                   cgroup_headroom("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                   "/sys/fs/cgroup/memory/memory.usage_in_bytes")});
}

}  // namespace qkv
