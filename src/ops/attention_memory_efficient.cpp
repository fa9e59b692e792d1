// Memory-efficient attention: keys in blocks with an online softmax (Milakov & Gimelshein 2018;
// Rabe & Staats 2021; Dao et al. 2022, "FlashAttention"). Forward keeps a running row maximum m, a
// running sum ℓ and an unnormalised output per query row; it saves only Q, K, V, O and the per-row
// log-sum-exp L = m + log ℓ, i.e. O(T) memory beyond the inputs. Backward recomputes each block of
// probabilities as P = exp(S − L) and regenerates its dropout mask from the saved seed.
// m, ℓ, L, the scores and the accumulators are in the accumulation dtype (attention_internal.h); the
// blocks of E and dS enter the products in the inputs' dtype.
//
// Masked work is skipped as FlashAttention-2 does: a block of query rows stops at the last key its
// last row can see (key blocks wholly above the causal diagonal are never visited, the block that
// crosses it is cut there and masked row by row), and key blocks that are padding for every head of
// the tile are skipped.
//
// Dimensions: N = batch·heads, Tq, Tk = query and key lengths, Dk, Dv = widths;
// a tile has n heads and bq query rows, a key block bk keys.
#include <limits>

#include <torch/torch.h>

#include "ops/attention_dropout.h"
#include "ops/attention_tiles.h"
#include "ops/big_buffer.h"
#include "ops/gemm.h"

namespace qkv::detail {

// Forward, per tile of query rows, over key blocks j (with m = -inf, ℓ = 0, A = 0 at the start):
//   1. S_j = scale·Q K_jᵀ + mask                         [n, bq, bk]
//   2. m' = max(m, rowmax S_j);  E_j = exp(S_j − m')      (E_j = 0 where S_j = -inf)
//   3. ℓ = ℓ·exp(m − m') + rowsum E_j
//   4. A = A·exp(m − m') + (E_j ∘ M_j / (1 − p)) V_j      [n, bq, Dv]
// and at the end O = A / ℓ, L = m + log ℓ (O = 0, L = 0 for a row with no visible key).
std::tuple<torch::Tensor, torch::Tensor> memory_efficient_forward(const Problem& pr) {
  const auto plan = plan_tiles(pr, AttentionKind::MemoryEfficient);
  const auto f = pr.acc();
  auto out = big_empty({pr.n(), pr.tq(), pr.v.size(2)}, pr.q.options());  // [N, Tq, Dv]
  auto lse = torch::empty({pr.n(), pr.tq(), 1}, f);                       // [N, Tq, 1]
  for_each_tile(pr, plan, TileOrder::RowsIndependent, [&](int64_t n0, int64_t n1, int64_t i0, int64_t i1) {
    const int64_t n = n1 - n0, bq = i1 - i0, ke = pr.visible_end(n0, n1, i1);
    auto m = torch::full({n, bq, 1}, -std::numeric_limits<double>::infinity(), f);  // [n, bq, 1]
    auto l = torch::zeros({n, bq, 1}, f);                                           // [n, bq, 1]
    auto acc = torch::zeros({n, bq, pr.v.size(2)}, f);                              // [n, bq, Dv]
    auto s_buffer = torch::empty({n, bq, plan.keys}, f);                            // [n, bq, bk]
    for (int64_t j0 = 0; j0 < ke; j0 += plan.keys) {
      const int64_t j1 = std::min(j0 + plan.keys, ke);
      if (pr.all_padded(n0, n1, j0, j1)) continue;
      const Tile t{n0, n1, i0, i1, j0, j1};
      auto s = s_buffer.slice(2, 0, j1 - j0);    // [n, bq, bk]
      tile_scores(pr, t, s);                     // 1
      online_softmax_tile(pr, t, s, m, l, acc);  // 2, 3 and A·exp(m − m')
      if (pr.dropout_p > 0) s.mul_(dropout_keep(pr.seed, pr.dropout_p, n0, n1, i0, i1, j0, j1, f));
      batched_gemm(false, false, pr.operand(s), pr.v.slice(0, n0, n1).slice(1, j0, j1), acc, 1.0, 1.0);  // 4
    }
    const auto empty = l.eq(0.0);  // [n, bq, 1] rows without a visible key
    out.slice(0, n0, n1).slice(1, i0, i1).copy_(acc.mul_(l.reciprocal().masked_fill_(empty, 0.0)));
    lse.slice(0, n0, n1).slice(1, i0, i1).copy_(m.add(l.log()).masked_fill_(empty, 0.0));
  });
  return {out, lse};
}

// Backward, per tile of query rows, over the same key blocks (see attention_standard.cpp for the
// derivation; D = rowsum(dO ∘ O) replaces rowsum(dP ∘ P), with or without dropout):
//   1. S_j = scale·Q K_jᵀ + mask,  P_j = exp(S_j − L)             recomputed, [n, bq, bk]
//   4. dV_j += P̃_jᵀ dO,  dP̃_j = dO V_jᵀ                          (P̃_j = P_j ∘ M_j / (1 − p))
//   3. dP_j = dP̃_j ∘ M_j / (1 − p)
//   2. dS_j = P_j ∘ (dP_j − D)
//   1. dQ += scale · dS_j K_j,  dK_j += scale · dS_jᵀ Q
// dK and dV sum over the query blocks of a head group, which one thread runs in order.
std::tuple<torch::Tensor, torch::Tensor, torch::Tensor> memory_efficient_backward(
    const Problem& pr, const torch::Tensor& out, const torch::Tensor& lse, const torch::Tensor& grad_out) {
  const auto plan = plan_tiles(pr, AttentionKind::MemoryEfficient);
  const auto f = pr.acc();
  auto dq = big_empty(pr.q.sizes(), f);                                   // [N, Tq, Dk]
  auto dk = big_zeros(pr.k.sizes(), f);                                   // [N, Tk, Dk]
  auto dv = big_zeros(pr.v.sizes(), f);                                   // [N, Tk, Dv]
  auto row_dot = (grad_out.to(f) * out.to(f)).sum(-1, /*keepdim=*/true);  // [N, Tq, 1] D
  for_each_tile(pr, plan, TileOrder::RowsInOrder, [&](int64_t n0, int64_t n1, int64_t i0, int64_t i1) {
    const int64_t n = n1 - n0, bq = i1 - i0, ke = pr.visible_end(n0, n1, i1);
    auto q = pr.q.slice(0, n0, n1).slice(1, i0, i1);            // [n, bq, Dk]
    auto d_out = grad_out.slice(0, n0, n1).slice(1, i0, i1);    // [n, bq, Dv]
    auto tile_lse = lse.slice(0, n0, n1).slice(1, i0, i1);      // [n, bq, 1]
    auto tile_dot = row_dot.slice(0, n0, n1).slice(1, i0, i1);  // [n, bq, 1]
    auto dq_tile = dq.slice(0, n0, n1).slice(1, i0, i1);        // [n, bq, Dk]
    auto p_buffer = torch::empty({n, bq, plan.keys}, f);        // [n, bq, bk]
    auto dp_buffer = torch::empty({n, bq, plan.keys}, f);       // [n, bq, bk]
    bool dq_written = false;                                    // by an earlier key block
    for (int64_t j0 = 0; j0 < ke; j0 += plan.keys) {
      const int64_t j1 = std::min(j0 + plan.keys, ke);
      if (pr.all_padded(n0, n1, j0, j1)) continue;
      const Tile t{n0, n1, i0, i1, j0, j1};
      auto k = pr.k.slice(0, n0, n1).slice(1, j0, j1);  // [n, bk, Dk]
      auto v = pr.v.slice(0, n0, n1).slice(1, j0, j1);  // [n, bk, Dv]
      auto p = p_buffer.slice(2, 0, j1 - j0);           // [n, bq, bk]
      tile_scores(pr, t, p);                            // 1. S_j
      exp_minus_lse_tile(pr, t, p, tile_lse);           //    P_j
      auto dp = dp_buffer.slice(2, 0, j1 - j0);         // [n, bq, bk]
      batched_gemm(false, true, d_out, v, dp);          // dP̃_j = dO V_jᵀ
      auto p_used = p;                                  // P̃_j
      if (pr.dropout_p > 0) {
        auto keep = dropout_keep(pr.seed, pr.dropout_p, n0, n1, i0, i1, j0, j1, f);
        dp.mul_(keep);  // 3. dP_j
        p_used = p * keep;
      }
      auto dv_block = dv.slice(0, n0, n1).slice(1, j0, j1);                      // [n, bk, Dv]
      auto dk_block = dk.slice(0, n0, n1).slice(1, j0, j1);                      // [n, bk, Dk]
      batched_gemm(true, false, pr.operand(p_used), d_out, dv_block, 1.0, 1.0);  // 4. dV_j += P̃_jᵀ dO
      ds_tile(pr, dp, p, tile_dot);                                              // 2. dS_j
      const auto ds = pr.operand(dp);
      batched_gemm(false, false, ds, k, dq_tile, pr.scale,
                   dq_written ? 1.0 : 0.0);                       // 1. dQ (+)= scale·dS_j K_j
      batched_gemm(true, false, ds, q, dk_block, pr.scale, 1.0);  //    dK_j += scale·dS_jᵀ Q
      dq_written = true;
    }
    if (!dq_written) dq_tile.zero_();  // no visible key: no gradient
  });
  return {dq.to(pr.dtype()), dk.to(pr.dtype()), dv.to(pr.dtype())};
}

}  // namespace qkv::detail
