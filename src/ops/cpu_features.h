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
#else
#define QKV_X86_SIMD 0
#endif

namespace qkv {

// Whether this CPU runs code compiled under QKV_AVX512 (all four parts) and QKV_AVX2. Both false
// where QKV_X86_SIMD is 0.
bool cpu_has_avx512();
bool cpu_has_avx2_fma();

}  // namespace qkv
