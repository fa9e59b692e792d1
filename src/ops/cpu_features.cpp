// Whether this CPU has the instruction sets of cpu_features.h, asked once (CPUID, through the
// compiler's __builtin_cpu_supports).
#include "ops/cpu_features.h"

namespace qkv {

bool cpu_has_avx512() {
#if QKV_X86_SIMD
  static const bool yes = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  return yes;
#else
  return false;
#endif
}

bool cpu_has_avx2_fma() {
#if QKV_X86_SIMD
  static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return yes;
#else
  return false;
#endif
}

}  // namespace qkv
