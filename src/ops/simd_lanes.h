// Float lanes for the hand-written loops that are written once for any vector width (the attention
// row passes, the single-query kernel, FusedAdam's update; ops/simd_each_width.h compiles each such
// file once per struct): a struct per instruction set with one vocabulary,
//   Reg          a register of kLanes floats;
//   Mask         which lanes count; first(count) selects lanes [0, count); the tag kAll (type All)
//                selects every lane without a mask;
//   load, store  under a mask (hidden lanes load 0 and are not written) or of all lanes (kAll, or
//                loadu and storeu): a loop takes whole vectors unmasked and only its tail under a
//                mask, because AVX2's masked store is slow on AMD (VMASKMOVPS to memory: on a Zen 3
//                the row passes spent about 40% of their time on the instructions after it);
//   arithmetic   add, sub, mul, div, sqrt, max, fmadd, fnmadd, round, times_pow2, lane by lane, each
//                correctly rounded as IEEE 754 prescribes (fmadd with one rounding; times_pow2 exact
//                where the result is a normal float), so a loop of lane-wise steps gives every
//                element the same result whatever the width;
//   max_where, add_where   the lane-wise step on the lanes of a mask (or all lanes), the others
//                unchanged;
//   reductions   of a register's lanes, in an order that depends on the width.
// A loop is written in terms of a type V and compiled once per struct, under the struct's target
// attribute (QKV_AVX512 or QKV_AVX2, ops/cpu_features.h); cpu_simd() says which of them may run.
#pragma once

#include <cstdint>

#include "ops/cpu_features.h"

#if QKV_X86_SIMD
QKV_BEGIN_VECTOR_CODE

namespace qkv::simd {

// Every lane, without a mask: an argument in place of a Mask.
struct All {};
inline constexpr All kAll{};

// 16 float lanes; a mask bit per lane.
struct Avx512 {
  using Reg = __m512;
  using Mask = __mmask16;
  static constexpr int64_t kLanes = 16;
  QKV_AVX512 static Mask first(int64_t count) {
    return count >= 16 ? static_cast<Mask>(0xFFFF) : static_cast<Mask>((1u << count) - 1u);
  }
  QKV_AVX512 static Reg load(Mask k, const float* p) { return _mm512_maskz_loadu_ps(k, p); }
  // bfloat16 is the upper half of a float32: widen to 32 bits and shift into place.
  QKV_AVX512 static Reg load(Mask k, const uint16_t* p) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(k, p)), 16));
  }
  QKV_AVX512 static void store(Mask k, float* p, Reg x) { _mm512_mask_storeu_ps(p, k, x); }
  QKV_AVX512 static Reg loadu(const float* p) { return _mm512_loadu_ps(p); }  // all lanes
  QKV_AVX512 static void storeu(float* p, Reg x) { _mm512_storeu_ps(p, x); }
  QKV_AVX512 static Reg load(All, const float* p) { return loadu(p); }
  QKV_AVX512 static Reg load(All, const uint16_t* p) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(
        _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))), 16));
  }
  QKV_AVX512 static void store(All, float* p, Reg x) { storeu(p, x); }
  QKV_AVX512 static Reg set1(float x) { return _mm512_set1_ps(x); }
  QKV_AVX512 static Reg add(Reg a, Reg b) { return _mm512_add_ps(a, b); }
  QKV_AVX512 static Reg sub(Reg a, Reg b) { return _mm512_sub_ps(a, b); }
  QKV_AVX512 static Reg mul(Reg a, Reg b) { return _mm512_mul_ps(a, b); }
  QKV_AVX512 static Reg div(Reg a, Reg b) { return _mm512_div_ps(a, b); }
  QKV_AVX512 static Reg sqrt(Reg x) { return _mm512_sqrt_ps(x); }
  QKV_AVX512 static Reg max(Reg a, Reg b) { return _mm512_max_ps(a, b); }
  QKV_AVX512 static Reg fmadd(Reg a, Reg b, Reg c) { return _mm512_fmadd_ps(a, b, c); }    // a·b + c
  QKV_AVX512 static Reg fnmadd(Reg a, Reg b, Reg c) { return _mm512_fnmadd_ps(a, b, c); }  // c − a·b
  QKV_AVX512 static Reg round(Reg x) {
    return _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  }
  QKV_AVX512 static Reg times_pow2(Reg p, Reg n) { return _mm512_scalef_ps(p, n); }  // p·2^n
  QKV_AVX512 static Reg max_where(Mask k, Reg best, Reg x) { return _mm512_mask_max_ps(best, k, best, x); }
  QKV_AVX512 static Reg add_where(Mask k, Reg sum, Reg x) { return _mm512_mask_add_ps(sum, k, sum, x); }
  QKV_AVX512 static Reg max_where(All, Reg best, Reg x) { return max(best, x); }
  QKV_AVX512 static Reg add_where(All, Reg sum, Reg x) { return add(sum, x); }
  QKV_AVX512 static float reduce_max(Reg x) { return _mm512_reduce_max_ps(x); }
  QKV_AVX512 static float reduce_add(Reg x) { return _mm512_reduce_add_ps(x); }
};

// 8 float lanes; a mask is a vector whose lanes are all ones (counted) or all zeros.
struct Avx2 {
  using Reg = __m256;
  using Mask = __m256i;
  static constexpr int64_t kLanes = 8;
  QKV_AVX2 static Mask first(int64_t count) {
    const int32_t c = count >= 8 ? 8 : static_cast<int32_t>(count);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(c), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  QKV_AVX2 static Reg load(Mask k, const float* p) { return _mm256_maskload_ps(p, k); }
  // AVX2 has no masked 16-bit load: a partial vector goes through a zeroed copy of its lanes.
  QKV_AVX2 static Reg load(Mask k, const uint16_t* p) {
    const int bits = _mm256_movemask_ps(_mm256_castsi256_ps(k));
    __m128i raw;
    if (bits == 0xFF) {
      raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    } else {
      alignas(16) uint16_t lanes[8] = {};
      for (int j = 0; j < 8; ++j) {
        if ((bits >> j) & 1) lanes[j] = p[j];
      }
      raw = _mm_load_si128(reinterpret_cast<const __m128i*>(lanes));
    }
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(raw), 16));
  }
  QKV_AVX2 static void store(Mask k, float* p, Reg x) { _mm256_maskstore_ps(p, k, x); }
  QKV_AVX2 static Reg loadu(const float* p) { return _mm256_loadu_ps(p); }  // all lanes
  QKV_AVX2 static void storeu(float* p, Reg x) { _mm256_storeu_ps(p, x); }
  QKV_AVX2 static Reg load(All, const float* p) { return loadu(p); }
  QKV_AVX2 static Reg load(All, const uint16_t* p) {
    const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(raw), 16));
  }
  QKV_AVX2 static void store(All, float* p, Reg x) { storeu(p, x); }
  QKV_AVX2 static Reg set1(float x) { return _mm256_set1_ps(x); }
  QKV_AVX2 static Reg add(Reg a, Reg b) { return _mm256_add_ps(a, b); }
  QKV_AVX2 static Reg sub(Reg a, Reg b) { return _mm256_sub_ps(a, b); }
  QKV_AVX2 static Reg mul(Reg a, Reg b) { return _mm256_mul_ps(a, b); }
  QKV_AVX2 static Reg div(Reg a, Reg b) { return _mm256_div_ps(a, b); }
  QKV_AVX2 static Reg sqrt(Reg x) { return _mm256_sqrt_ps(x); }
  QKV_AVX2 static Reg max(Reg a, Reg b) { return _mm256_max_ps(a, b); }
  QKV_AVX2 static Reg fmadd(Reg a, Reg b, Reg c) { return _mm256_fmadd_ps(a, b, c); }    // a·b + c
  QKV_AVX2 static Reg fnmadd(Reg a, Reg b, Reg c) { return _mm256_fnmadd_ps(a, b, c); }  // c − a·b
  QKV_AVX2 static Reg round(Reg x) {
    return _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  }
  // p·2^n for whole n in [-160, 128] (exp_lanes' range): 2^n in two factors 2^a·2^b, a = ⌊n/2⌋, each
  // a normal float built from its exponent bits, so that the product underflows as scalef's does.
  QKV_AVX2 static Reg times_pow2(Reg p, Reg n) {
    const __m256i whole = _mm256_cvtps_epi32(n);
    const __m256i a = _mm256_srai_epi32(whole, 1), b = _mm256_sub_epi32(whole, a);
    const __m256i bias = _mm256_set1_epi32(127);
    const Reg two_a = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(a, bias), 23));
    const Reg two_b = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(b, bias), 23));
    return _mm256_mul_ps(_mm256_mul_ps(p, two_a), two_b);
  }
  QKV_AVX2 static Reg max_where(Mask k, Reg best, Reg x) {
    return _mm256_blendv_ps(best, _mm256_max_ps(best, x), _mm256_castsi256_ps(k));
  }
  QKV_AVX2 static Reg add_where(Mask k, Reg sum, Reg x) {
    return _mm256_add_ps(sum, _mm256_and_ps(x, _mm256_castsi256_ps(k)));
  }
  QKV_AVX2 static Reg max_where(All, Reg best, Reg x) { return max(best, x); }
  QKV_AVX2 static Reg add_where(All, Reg sum, Reg x) { return add(sum, x); }
  QKV_AVX2 static float reduce_max(Reg x) {
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    return _mm_cvtss_f32(_mm_max_ss(h, _mm_shuffle_ps(h, h, 1)));
  }
  QKV_AVX2 static float reduce_add(Reg x) {
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    return _mm_cvtss_f32(_mm_add_ss(h, _mm_shuffle_ps(h, h, 1)));
  }
};

}  // namespace qkv::simd

QKV_END_VECTOR_CODE
#endif  // QKV_X86_SIMD
