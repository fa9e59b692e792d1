// The x86-64 vector instructions that qkv's hand-written loops use, and whether this CPU has them.
//
// Those loops (the attention row passes, the single-query decoding kernel, counter-based dropout,
// FusedAdam) compile their vector code for one instruction set with a target attribute, so that the
// rest of qkv keeps the compiler's baseline and runs on any x86-64 CPU. At run time each takes its
// vector path only when the CPU has the instructions, and a portable path otherwise.
#pragma once

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define QKV_X86_SIMD 1
// AVX-512 as Intel Skylake-SP and later and AMD Zen 4 have it: Foundation, Byte and Word, Vector
// Length, Doubleword and Quadword.
#define QKV_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq")))
// AVX2 with fused multiply-add: Intel Haswell and later, AMD Zen 1 to 3 (and 4).
#define QKV_AVX2 __attribute__((target("avx2,fma")))
// Vector code sits between these two. GCC 12's AVX-512 intrinsics start some results from
// _mm512_undefined_*(), which -Wextra reports as uninitialised once inlined (GCC bug 105593): not a
// defect of qkv's code, so those two warnings are off in between.
#ifdef __clang__
#define QKV_BEGIN_VECTOR_CODE \
  _Pragma("GCC diagnostic push") _Pragma("GCC diagnostic ignored \"-Wuninitialized\"")
#else
#define QKV_BEGIN_VECTOR_CODE                                                          \
  _Pragma("GCC diagnostic push") _Pragma("GCC diagnostic ignored \"-Wuninitialized\"") \
      _Pragma("GCC diagnostic ignored \"-Wmaybe-uninitialized\"")
#endif
#define QKV_END_VECTOR_CODE _Pragma("GCC diagnostic pop")
#else
#define QKV_X86_SIMD 0
#endif

namespace qkv {

// The instruction sets of the vector paths, narrowest first: None = the portable loops.
enum class Simd { None, Avx2, Avx512 };

// The widest set this CPU runs (code compiled under QKV_AVX2 or QKV_AVX512: every part of it), within
// the cap of limit_simd. None where QKV_X86_SIMD is 0.
Simd cpu_simd();
inline bool cpu_has_avx512() {
  return cpu_simd() >= Simd::Avx512;
}
inline bool cpu_has_avx2_fma() {
  return cpu_simd() >= Simd::Avx2;
}

// Caps what cpu_simd() reports from now on, in every thread, and returns the previous cap (Avx512 at
// the start, i.e. none): for tests that run each path a CPU has against the portable one.
Simd limit_simd(Simd widest);

}  // namespace qkv
