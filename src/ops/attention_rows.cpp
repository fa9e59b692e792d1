// The row passes of the tiled attention kernels (attention_internal.h): masking, the softmax (whole or
// online), P = exp(S − L) and dS = P ∘ (dP − D), each one sweep over a tile's rows between two matrix
// products.
//
// Two implementations with one meaning:
//   - on the CPU, with float32 accumulation (float32, bfloat16 inputs) and AVX-512 or AVX2 + FMA:
//     loops over each row that fuse the mask, the maximum, exp and the sum, and touch the hidden keys
//     of a row crossing the causal diagonal only to write their zeros. exp is a polynomial, 1-2 ulp.
//     They are written once (attention_rows_simd.inc) and compiled for each instruction set;
//   - elsewhere (float64, CUDA, older CPUs): libtorch tensor ops on the tile, the mask added as an
//     additive bias (tile_bias).
// A row with no visible key gets P = 0 (never NaN) in both.
//
// Dimensions: a tile has n heads, bq query rows and bk keys (w = the keys of this pass).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include <torch/torch.h>

#include "ops/attention_tiles.h"
#include "ops/cpu_features.h"

namespace qkv::detail {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// What one row of a tile sees: keys [0, len) of the pass (the causal cut), each with an additive
// padding bias (0 / -inf) when `bias` is not null.
struct RowView {
  int64_t len;
  const float* bias;
};

// The row views of a tile, head by head: row r of head h is rows[h * bq + r]. Built once per pass.
std::vector<RowView> row_views(const Problem& pr, const Tile& t) {
  const int64_t n = t.n1 - t.n0, bq = t.i1 - t.i0, w = t.j1 - t.j0;
  std::vector<RowView> rows(static_cast<size_t>(n * bq));
  for (int64_t h = 0; h < n; ++h) {
    const float* bias = nullptr;
    if (pr.pad_bias.defined() && pr.padded_keys(t.n0 + h, t.j0, t.j1) > 0) {
      bias = pr.pad_bias.data_ptr<float>() + (t.n0 + h) * pr.tk() + t.j0;
    }
    for (int64_t r = 0; r < bq; ++r) {
      // Query i sees keys j <= i + offset.
      const int64_t len = pr.causal ? std::clamp<int64_t>(t.i0 + r + pr.offset + 1 - t.j0, 0, w) : w;
      rows[static_cast<size_t>(h * bq + r)] = {len, bias};
    }
  }
  return rows;
}

// The strides of a [n, bq, w] tile with contiguous rows, in elements.
struct Strides {
  int64_t head, row;
};
Strides strides_of(const torch::Tensor& t) {
  return {t.stride(0), t.stride(1)};
}

#if QKV_X86_SIMD
// GCC 12's AVX-512 intrinsics start some results from _mm512_undefined_*(), which -Wextra reports
// as uninitialised once inlined (GCC bug 105593): not a defect of this code.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#ifndef __clang__
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

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
  QKV_AVX512 static Reg set1(float x) { return _mm512_set1_ps(x); }
  QKV_AVX512 static Reg add(Reg a, Reg b) { return _mm512_add_ps(a, b); }
  QKV_AVX512 static Reg sub(Reg a, Reg b) { return _mm512_sub_ps(a, b); }
  QKV_AVX512 static Reg mul(Reg a, Reg b) { return _mm512_mul_ps(a, b); }
  QKV_AVX512 static Reg max(Reg a, Reg b) { return _mm512_max_ps(a, b); }
  QKV_AVX512 static Reg fmadd(Reg a, Reg b, Reg c) { return _mm512_fmadd_ps(a, b, c); }    // a·b + c
  QKV_AVX512 static Reg fnmadd(Reg a, Reg b, Reg c) { return _mm512_fnmadd_ps(a, b, c); }  // c − a·b
  QKV_AVX512 static Reg round(Reg x) {
    return _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  }
  QKV_AVX512 static Reg times_pow2(Reg p, Reg n) { return _mm512_scalef_ps(p, n); }  // p·2^n
  QKV_AVX512 static Reg max_where(Mask k, Reg best, Reg x) { return _mm512_mask_max_ps(best, k, best, x); }
  QKV_AVX512 static Reg add_where(Mask k, Reg sum, Reg x) { return _mm512_mask_add_ps(sum, k, sum, x); }
  QKV_AVX512 static float reduce_max(Reg x) { return _mm512_reduce_max_ps(x); }
  QKV_AVX512 static float reduce_add(Reg x) { return _mm512_reduce_add_ps(x); }
};

namespace avx512 {
using V = Avx512;
#define QKV_SIMD QKV_AVX512
#include "ops/attention_rows_simd.inc"
#undef QKV_SIMD
}  // namespace avx512

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
  QKV_AVX2 static Reg set1(float x) { return _mm256_set1_ps(x); }
  QKV_AVX2 static Reg add(Reg a, Reg b) { return _mm256_add_ps(a, b); }
  QKV_AVX2 static Reg sub(Reg a, Reg b) { return _mm256_sub_ps(a, b); }
  QKV_AVX2 static Reg mul(Reg a, Reg b) { return _mm256_mul_ps(a, b); }
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

namespace avx2 {
using V = Avx2;
#define QKV_SIMD QKV_AVX2
#include "ops/attention_rows_simd.inc"
#undef QKV_SIMD
}  // namespace avx2

#pragma GCC diagnostic pop
#endif  // QKV_X86_SIMD

// The instruction set of the fused passes for this problem: the CPU's (cpu_simd) for float32
// accumulation on the CPU, None otherwise.
Simd fused(const Problem& pr) {
  return pr.q.is_cpu() && pr.acc().dtype() == torch::kFloat ? cpu_simd() : Simd::None;
}

// Runs f(passes) with the fused row passes of this problem's instruction set (a RowPasses struct of
// attention_rows_simd.inc) and returns true; returns false when the generic path must run.
template <class F>
bool with_fused_passes(const Problem& pr, F&& f) {
  switch (fused(pr)) {
#if QKV_X86_SIMD
    case Simd::Avx512:
      f(avx512::RowPasses{});
      return true;
    case Simd::Avx2:
      f(avx2::RowPasses{});
      return true;
#endif
    default:
      return false;
  }
}

// The tile's additive mask added to s (the generic path).
void add_mask(const Problem& pr, const Tile& t, torch::Tensor& s) {
  const auto bias = tile_bias(pr, t);
  if (bias.defined()) s.add_(bias);
}

}  // namespace

bool row_passes_read_visible_keys_only(const Problem& pr) {
  return fused(pr) != Simd::None;
}

void softmax_tile(const Problem& pr, const Tile& t, torch::Tensor& s) {
  const bool done = with_fused_passes(pr, [&](auto passes) {
    passes.softmax_rows(s.data_ptr<float>(), strides_of(s), s.size(0), s.size(1), s.size(2),
                        row_views(pr, t));
  });
  if (done) return;
  add_mask(pr, t, s);
  softmax_rows_(s);
}

void online_softmax_tile(const Problem& pr, const Tile& t, torch::Tensor& s, torch::Tensor& m,
                         torch::Tensor& l, torch::Tensor& acc) {
  const bool done = with_fused_passes(pr, [&](auto passes) {
    TORCH_INTERNAL_ASSERT(m.stride(1) == 1 && l.strides() == m.strides() && acc.stride(2) == 1);
    passes.online_softmax_rows(s.data_ptr<float>(), strides_of(s), s.size(0), s.size(1), s.size(2),
                               row_views(pr, t), m.data_ptr<float>(), l.data_ptr<float>(), m.stride(0),
                               acc.data_ptr<float>(), strides_of(acc), acc.size(2));
  });
  if (done) return;
  add_mask(pr, t, s);
  auto m_new = at::maximum(m, s.amax(-1, /*keepdim=*/true));  // [n, bq, 1]
  auto m_safe = m_new.masked_fill(m_new.isneginf(), 0.0);     // keeps exp() free of NaN
  s.sub_(m_safe).exp_();
  auto rescale = (m - m_safe).exp_();                 // [n, bq, 1]; 0 on the first block
  l.mul_(rescale).add_(s.sum(-1, /*keepdim=*/true));  // ℓ = ℓ·exp(m − m') + rowsum E
  acc.mul_(rescale);
  m.copy_(m_new);
}

void exp_minus_lse_tile(const Problem& pr, const Tile& t, torch::Tensor& s, const torch::Tensor& lse) {
  const bool done = with_fused_passes(pr, [&](auto passes) {
    const auto lse_tile = lse.contiguous();
    passes.exp_minus_lse_rows(s.data_ptr<float>(), strides_of(s), s.size(0), s.size(1), s.size(2),
                              row_views(pr, t), lse_tile.data_ptr<float>());
  });
  if (done) return;
  add_mask(pr, t, s);
  s.sub_(lse).exp_();
}

void ds_tile(const Problem& pr, torch::Tensor& dp, const torch::Tensor& p, const torch::Tensor& d) {
  const bool p_fits = p.scalar_type() == torch::kFloat || p.scalar_type() == torch::kBFloat16;
  const bool done =
      p_fits && with_fused_passes(pr, [&](auto passes) {
        const auto d_tile = d.contiguous();
        if (p.scalar_type() == torch::kFloat) {
          passes.ds_rows(dp.data_ptr<float>(), strides_of(dp), p.data_ptr<float>(), strides_of(p), dp.size(0),
                         dp.size(1), dp.size(2), d_tile.data_ptr<float>());
        } else {
          passes.ds_rows(dp.data_ptr<float>(), strides_of(dp),
                         reinterpret_cast<const uint16_t*>(p.data_ptr()), strides_of(p), dp.size(0),
                         dp.size(1), dp.size(2), d_tile.data_ptr<float>());
        }
      });
  if (done) return;
  dp.sub_(d).mul_(p);
}

}  // namespace qkv::detail
