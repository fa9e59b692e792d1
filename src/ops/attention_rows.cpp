// The row passes of the tiled attention kernels (attention_internal.h): masking, the softmax (whole or
// online), P = exp(S − L) and dS = P ∘ (dP − D), each one sweep over a tile's rows between two matrix
// products.
//
// Two implementations with one meaning:
//   - on the CPU, with float32 accumulation (float32, bfloat16 inputs) and AVX-512: loops over each
//     row that fuse the mask, the maximum, exp and the sum, and touch the hidden keys of a row crossing
//     the causal diagonal only to write their zeros. exp is a polynomial (below), 1-2 ulp;
//   - elsewhere (float64, CUDA, CPUs without AVX-512): libtorch tensor ops on the tile, the mask added
//     as an additive bias (tile_bias).
// A row with no visible key gets P = 0 (never NaN) in both.
//
// Dimensions: a tile has n heads, bq query rows and bk keys (w = the keys of this pass).
#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include <torch/torch.h>

#include "ops/attention_tiles.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define QKV_HAVE_AVX512_PATH 1
#define QKV_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl")))
#else
#define QKV_HAVE_AVX512_PATH 0
#endif

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

#if QKV_HAVE_AVX512_PATH
// GCC 12's AVX-512 intrinsics start some results from _mm512_undefined_*(), which -Wextra reports
// as uninitialised once inlined (GCC bug 105593): not a defect of this code.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

// exp(x) for x <= 88, 16 lanes: x = n·ln2 + r with n = round(x / ln2) and |r| <= ln2/2 (Cody-Waite:
// ln2 in two parts so that r is exact), exp(r) by its Taylor polynomial to degree 7 (truncation
// r^8/8! < 5e-9, below float's half ulp), times 2^n by scalef. Inputs below -110 (-inf included)
// give exactly 0: 2^-159 underflows. NaN stays NaN.
QKV_AVX512 inline __m512 exp16(__m512 x) {
  x = _mm512_max_ps(_mm512_set1_ps(-110.0f), x);  // max(a, NaN) = NaN: NaN passes
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);  // ln2 high part (exact n·hi)
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187045e-06f), r);  // ln2 low part
  __m512 p = _mm512_set1_ps(1.0f / 5040);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

// Lanes [0, count) of a 16-lane block, count <= 16.
QKV_AVX512 inline __mmask16 lanes(int64_t count) {
  return count >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << count) - 1u);
}

// x = s + bias over [0, len) (written back when there is a bias); returns the maximum (-inf if none).
QKV_AVX512 float masked_max(float* s, int64_t len, const float* bias) {
  __m512 best = _mm512_set1_ps(kNegInf);
  for (int64_t j = 0; j < len; j += 16) {
    const __mmask16 k = lanes(len - j);
    __m512 x = _mm512_maskz_loadu_ps(k, s + j);
    if (bias != nullptr) {
      x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(k, bias + j));
      _mm512_mask_storeu_ps(s + j, k, x);
    }
    best = _mm512_mask_max_ps(best, k, best, x);
  }
  return _mm512_reduce_max_ps(best);
}

// s = exp(s − shift) over [0, len), 0 over [len, w); returns the sum.
QKV_AVX512 float exp_shifted(float* s, int64_t len, int64_t w, float shift) {
  const __m512 sub = _mm512_set1_ps(shift);
  __m512 sum = _mm512_setzero_ps();
  for (int64_t j = 0; j < len; j += 16) {
    const __mmask16 k = lanes(len - j);
    const __m512 e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, s + j), sub));
    _mm512_mask_storeu_ps(s + j, k, e);
    sum = _mm512_mask_add_ps(sum, k, sum, e);
  }
  for (int64_t j = len; j < w; ++j) s[j] = 0.0f;
  return _mm512_reduce_add_ps(sum);
}

QKV_AVX512 void scale_row(float* x, int64_t count, float factor) {
  const __m512 f = _mm512_set1_ps(factor);
  for (int64_t j = 0; j < count; j += 16) {
    const __mmask16 k = lanes(count - j);
    _mm512_mask_storeu_ps(x + j, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, x + j), f));
  }
}

// The strides of a [n, bq, w] tile with contiguous rows, in elements.
struct Strides {
  int64_t head, row;
};
Strides strides_of(const torch::Tensor& t) {
  return {t.stride(0), t.stride(1)};
}

QKV_AVX512 void softmax_avx512(float* s, Strides st, int64_t n, int64_t bq, int64_t w,
                               const std::vector<RowView>& rows) {
  for (int64_t h = 0; h < n; ++h) {
    for (int64_t r = 0; r < bq; ++r) {
      float* x = s + h * st.head + r * st.row;
      const RowView& row = rows[static_cast<size_t>(h * bq + r)];
      float m = masked_max(x, row.len, row.bias);
      if (m == kNegInf) m = 0.0f;  // no visible key: exp(-inf) = 0 everywhere
      const float sum = exp_shifted(x, row.len, w, m);
      if (sum > 0.0f) scale_row(x, row.len, 1.0f / sum);
    }
  }
}

// m and l: [n, bq] with rows contiguous and heads `stat_head` apart; acc: [n, bq, dv] with strides sa.
QKV_AVX512 void online_softmax_avx512(float* s, Strides st, int64_t n, int64_t bq, int64_t w,
                                      const std::vector<RowView>& rows, float* m, float* l, int64_t stat_head,
                                      float* acc, Strides sa, int64_t dv) {
  for (int64_t h = 0; h < n; ++h) {
    for (int64_t r = 0; r < bq; ++r) {
      float* x = s + h * st.head + r * st.row;
      const RowView& row = rows[static_cast<size_t>(h * bq + r)];
      float& mi = m[h * stat_head + r];
      float& li = l[h * stat_head + r];
      const float m_new = std::max(mi, masked_max(x, row.len, row.bias));
      const float m_safe = m_new == kNegInf ? 0.0f : m_new;  // keeps exp() free of NaN
      const float sum = exp_shifted(x, row.len, w, m_safe);
      const float rescale = mi == kNegInf ? 0.0f : std::exp(mi - m_safe);
      li = li * rescale + sum;
      mi = m_new;
      if (rescale != 1.0f) scale_row(acc + h * sa.head + r * sa.row, dv, rescale);
    }
  }
}

QKV_AVX512 void exp_minus_lse_avx512(float* s, Strides st, int64_t n, int64_t bq, int64_t w,
                                     const std::vector<RowView>& rows, const float* lse) {
  for (int64_t i = 0; i < n * bq; ++i) {
    float* x = s + (i / bq) * st.head + (i % bq) * st.row;
    const RowView& row = rows[static_cast<size_t>(i)];
    if (row.bias != nullptr) masked_max(x, row.len, row.bias);  // adds the bias
    exp_shifted(x, row.len, w, lse[i]);
  }
}

// dS = P ∘ (dP − D) in place of dP, P in float32 or bfloat16 (the raw upper 16 bits of a float32).
template <class P>
QKV_AVX512 void ds_avx512(float* dp, Strides sd, const P* p, Strides sp, int64_t n, int64_t bq, int64_t w,
                          const float* d) {
  for (int64_t i = 0; i < n * bq; ++i) {
    float* g = dp + (i / bq) * sd.head + (i % bq) * sd.row;
    const P* pr = p + (i / bq) * sp.head + (i % bq) * sp.row;
    const __m512 di = _mm512_set1_ps(d[i]);
    for (int64_t j = 0; j < w; j += 16) {
      const __mmask16 k = lanes(w - j);
      __m512 pv;
      if constexpr (std::is_same_v<P, float>) {
        pv = _mm512_maskz_loadu_ps(k, pr + j);
      } else {  // bfloat16: widen to 32 bits and shift into the upper half
        const __m256i raw = _mm256_maskz_loadu_epi16(k, pr + j);
        pv = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(raw), 16));
      }
      const __m512 gv = _mm512_maskz_loadu_ps(k, g + j);
      _mm512_mask_storeu_ps(g + j, k, _mm512_mul_ps(pv, _mm512_sub_ps(gv, di)));
    }
  }
}

bool cpu_has_avx512() {
  static const bool yes = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512vl");
  return yes;
}

#pragma GCC diagnostic pop
#endif  // QKV_HAVE_AVX512_PATH

// Whether the fused CPU passes run: float32 accumulation on a CPU with AVX-512.
bool fused(const Problem& pr) {
#if QKV_HAVE_AVX512_PATH
  return pr.q.is_cpu() && pr.acc().dtype() == torch::kFloat && cpu_has_avx512();
#else
  (void)pr;
  return false;
#endif
}

// The tile's additive mask added to s (the generic path).
void add_mask(const Problem& pr, const Tile& t, torch::Tensor& s) {
  const auto bias = tile_bias(pr, t);
  if (bias.defined()) s.add_(bias);
}

}  // namespace

bool row_passes_read_visible_keys_only(const Problem& pr) {
  return fused(pr);
}

void softmax_tile(const Problem& pr, const Tile& t, torch::Tensor& s) {
#if QKV_HAVE_AVX512_PATH
  if (fused(pr)) {
    softmax_avx512(s.data_ptr<float>(), strides_of(s), s.size(0), s.size(1), s.size(2), row_views(pr, t));
    return;
  }
#endif
  add_mask(pr, t, s);
  softmax_rows_(s);
}

void online_softmax_tile(const Problem& pr, const Tile& t, torch::Tensor& s, torch::Tensor& m,
                         torch::Tensor& l, torch::Tensor& acc) {
#if QKV_HAVE_AVX512_PATH
  if (fused(pr)) {
    TORCH_INTERNAL_ASSERT(m.stride(1) == 1 && l.strides() == m.strides() && acc.stride(2) == 1);
    online_softmax_avx512(s.data_ptr<float>(), strides_of(s), s.size(0), s.size(1), s.size(2),
                          row_views(pr, t), m.data_ptr<float>(), l.data_ptr<float>(), m.stride(0),
                          acc.data_ptr<float>(), strides_of(acc), acc.size(2));
    return;
  }
#endif
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
#if QKV_HAVE_AVX512_PATH
  if (fused(pr)) {
    const auto lse_tile = lse.contiguous();
    exp_minus_lse_avx512(s.data_ptr<float>(), strides_of(s), s.size(0), s.size(1), s.size(2),
                         row_views(pr, t), lse_tile.data_ptr<float>());
    return;
  }
#endif
  add_mask(pr, t, s);
  s.sub_(lse).exp_();
}

void ds_tile(const Problem& pr, torch::Tensor& dp, const torch::Tensor& p, const torch::Tensor& d) {
#if QKV_HAVE_AVX512_PATH
  if (fused(pr) && (p.scalar_type() == torch::kFloat || p.scalar_type() == torch::kBFloat16)) {
    const auto d_tile = d.contiguous();
    if (p.scalar_type() == torch::kFloat) {
      ds_avx512(dp.data_ptr<float>(), strides_of(dp), p.data_ptr<float>(), strides_of(p), dp.size(0),
                dp.size(1), dp.size(2), d_tile.data_ptr<float>());
    } else {
      ds_avx512(dp.data_ptr<float>(), strides_of(dp), reinterpret_cast<const uint16_t*>(p.data_ptr()),
                strides_of(p), dp.size(0), dp.size(1), dp.size(2), d_tile.data_ptr<float>());
    }
    return;
  }
#endif
  (void)pr;
  dp.sub_(d).mul_(p);
}

}  // namespace qkv::detail
