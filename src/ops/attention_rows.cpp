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
#include "ops/simd_lanes.h"

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

#define QKV_SIMD_FILE "ops/attention_rows_simd.inc"
#include "ops/simd_each_width.h"

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
