// Memory-efficient attention: keys in blocks with an online softmax (Milakov & Gimelshein 2018;
// Rabe & Staats 2021; Dao et al. 2022, "FlashAttention"). Forward keeps a running row maximum m, a
// running sum ℓ and an unnormalised output per query row; it saves only Q, K, V, O and the per-row
// log-sum-exp L = m + log ℓ, i.e. O(T) memory beyond the inputs. Backward recomputes each block of
// probabilities as P = exp(S − L) and regenerates its dropout mask from the saved seed.
// m, ℓ, L, the scores and the accumulators are in the accumulation dtype (attention_internal.h); the
// blocks of E and dS enter the products in the inputs' dtype.
//
// Masked work is skipped as FlashAttention-2 does: a block of query rows visits only the rectangles
// of visible_blocks (attention_tiles.h): key blocks wholly above the causal diagonal are never
// visited, the square that crosses it goes in stairs masked row by row, and key blocks that are
// padding for every head of the tile are skipped.
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
    const int64_t n = n1 - n0, bq = i1 - i0;
    auto m = torch::full({n, bq, 1}, -std::numeric_limits<double>::infinity(), f);  // [n, bq, 1]
    auto l = torch::zeros({n, bq, 1}, f);                                           // [n, bq, 1]
    auto acc = torch::zeros({n, bq, pr.v.size(2)}, f);                              // [n, bq, Dv]
    auto s_buffer = torch::empty({n * bq * plan.keys}, f);                          // scores of a block
    for (const Tile& t : visible_blocks(pr, plan, n0, n1, i0, i1)) {
      const int64_t r0 = t.i0 - i0, r1 = t.i1 - i0;  // the block's rows within the tile
      auto s = s_buffer.slice(0, 0, n * (r1 - r0) * (t.j1 - t.j0)).view({n, r1 - r0, t.j1 - t.j0});
      auto acc_rows = acc.slice(1, r0, r1);  // [n, rows, Dv]
      auto m_rows = m.slice(1, r0, r1), l_rows = l.slice(1, r0, r1);
      tile_scores(pr, t, s);                                    // 1
      online_softmax_tile(pr, t, s, m_rows, l_rows, acc_rows);  // 2, 3 and A·exp(m − m')
      if (pr.dropout_p > 0) s.mul_(dropout_keep(pr.seed, pr.dropout_p, n0, n1, t.i0, t.i1, t.j0, t.j1, f));
      batched_gemm(false, false, pr.operand(s), pr.v.slice(0, n0, n1).slice(1, t.j0, t.j1), acc_rows, 1.0,
                   1.0);  // 4
    }
    const auto empty = l.eq(0.0);  // [n, bq, 1] rows without a visible key
    out.slice(0, n0, n1).slice(1, i0, i1).copy_(acc.mul_(l.reciprocal().masked_fill_(empty, 0.0)));
    lse.slice(0, n0, n1).slice(1, i0, i1).copy_(m.add(l.log()).masked_fill_(empty, 0.0));
  });
  return {out, lse};
}

// Backward, per tile of query rows, over the same rectangles (see attention_standard.cpp for the
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
  auto dq = big_zeros(pr.q.sizes(), f);                                   // [N, Tq, Dk]
  auto dk = big_zeros(pr.k.sizes(), f);                                   // [N, Tk, Dk]
  auto dv = big_zeros(pr.v.sizes(), f);                                   // [N, Tk, Dv]
  auto row_dot = (grad_out.to(f) * out.to(f)).sum(-1, /*keepdim=*/true);  // [N, Tq, 1] D
  for_each_tile(pr, plan, TileOrder::RowsInOrder, [&](int64_t n0, int64_t n1, int64_t i0, int64_t i1) {
    const int64_t n = n1 - n0, bq = i1 - i0;
    auto p_buffer = torch::empty({n * bq * plan.keys}, f);   // P of a block
    auto dp_buffer = torch::empty({n * bq * plan.keys}, f);  // dP of a block
    for (const Tile& t : visible_blocks(pr, plan, n0, n1, i0, i1)) {
      const auto rows = [&](const torch::Tensor& x) { return x.slice(0, n0, n1).slice(1, t.i0, t.i1); };
      const auto keys = [&](const torch::Tensor& x) { return x.slice(0, n0, n1).slice(1, t.j0, t.j1); };
      auto q = rows(pr.q), d_out = rows(grad_out);  // [n, rows, Dk], [n, rows, Dv]
      auto k = keys(pr.k), v = keys(pr.v);          // [n, bk, Dk], [n, bk, Dv]
      auto dq_rows = rows(dq);                      // [n, rows, Dk]
      auto dk_block = keys(dk), dv_block = keys(dv);
      const int64_t size = n * (t.i1 - t.i0) * (t.j1 - t.j0);
      auto p = p_buffer.slice(0, 0, size).view({n, t.i1 - t.i0, t.j1 - t.j0});  // [n, rows, bk]
      tile_scores(pr, t, p);                                                    // 1. S_j
      exp_minus_lse_tile(pr, t, p, rows(lse));                                  //    P_j
      auto dp = dp_buffer.slice(0, 0, size).view(p.sizes());                    // [n, rows, bk]
      batched_gemm(false, true, d_out, v, dp);                                  // dP̃_j = dO V_jᵀ
      auto p_used = p;                                                          // P̃_j
      if (pr.dropout_p > 0) {
        auto keep = dropout_keep(pr.seed, pr.dropout_p, n0, n1, t.i0, t.i1, t.j0, t.j1, f);
        dp.mul_(keep);  // 3. dP_j
        p_used = p * keep;
      }
      batched_gemm(true, false, pr.operand(p_used), d_out, dv_block, 1.0, 1.0);  // 4. dV_j += P̃_jᵀ dO
      ds_tile(pr, dp, p, rows(row_dot));                                         // 2. dS_j
      const auto ds = pr.operand(dp);
      batched_gemm(false, false, ds, k, dq_rows, pr.scale, 1.0);  // 1. dQ += scale·dS_j K_j
      batched_gemm(true, false, ds, q, dk_block, pr.scale, 1.0);  //    dK_j += scale·dS_jᵀ Q
    }
  });
  return {dq.to(pr.dtype()), dk.to(pr.dtype()), dv.to(pr.dtype())};
}

}  // namespace qkv::detail
