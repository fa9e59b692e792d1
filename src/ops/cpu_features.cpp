// Which instruction sets of cpu_features.h this CPU has, asked once (CPUID, through the compiler's
// __builtin_cpu_supports), and the tests' cap on them.
#include "ops/cpu_features.h"

#include <algorithm>
#include <atomic>

namespace qkv {
namespace {

Simd widest_on_this_cpu() {
#if QKV_X86_SIMD
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")) {
    return Simd::Avx512;
  }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Simd::Avx2;
#endif
  return Simd::None;
}

std::atomic<Simd> cap{Simd::Avx512};

}  // namespace

Simd cpu_simd() {
  static const Simd widest = widest_on_this_cpu();
  return std::min(widest, cap.load(std::memory_order_relaxed));
}

Simd limit_simd(Simd widest) {
  return cap.exchange(widest);
}

}  // namespace qkv
