// Standard attention: computes the probabilities P tile by tile, saves them for backward, and
// differentiates by hand (the formulas of Vaswani et al. 2017, §3.2.1, with the softmax gradient).
//
// A tile is a group of heads × a block of query rows × all keys, sized to stay in the L2 cache, so
// the mask, softmax and gradient passes run over cached data between the matrix products.
// With a causal mask, keys past a block's last visible key are never computed (P is 0 there).
// Scores, probabilities and accumulators are in the accumulation dtype (attention_internal.h); P is
// saved, and enters the products, in the inputs' dtype.
//
// Dimensions: N = batch·heads, Tq, Tk = query and key lengths, Dk, Dv = widths;
// a tile has n heads, bq query rows and ke visible keys.
#include <torch/torch.h>

#include "ops/attention_dropout.h"
#include "ops/attention_internal.h"
#include "ops/gemm.h"

namespace qkv::detail {
namespace {

// Pass 1 and 2 of one tile: P = softmax(S), S = scale·Q Kᵀ + mask, written into p [n, bq, ke].
void probabilities_tile(const Problem& pr, int64_t n0, int64_t n1, int64_t i0, int64_t i1, torch::Tensor& p) {
  tile_scores(pr, n0, n1, i0, i1, 0, p.size(2), p);  // [n, bq, ke]
  softmax_rows_(p);
}

}  // namespace

torch::Tensor probabilities(const Problem& pr) {
  auto probs = torch::empty({pr.n(), pr.tq(), pr.tk()}, pr.acc());  // [N, Tq, Tk]
  for_each_tile(pr, plan_tiles(pr, true), [&](int64_t n0, int64_t n1, int64_t i0, int64_t i1) {
    const int64_t ke = pr.key_end(i1);
    auto tile = probs.slice(0, n0, n1).slice(1, i0, i1);  // [n, bq, Tk]
    tile.slice(2, ke).zero_();                            // hidden by the causal mask
    auto p = tile.slice(2, 0, ke);                        // [n, bq, ke]
    if (ke > 0) probabilities_tile(pr, n0, n1, i0, i1, p);
  });
  return probs;
}

// Forward, per tile:
//   1. S = scale·Q Kᵀ + mask            [n, bq, ke]
//   2. P = softmax(S)                    (saved for backward, without dropout)
//   3. P̃ = P ∘ M / (1 - p)              (M = the dropout keep mask)
//   4. O = P̃ V                          [n, bq, Dv]
std::tuple<torch::Tensor, torch::Tensor> standard_forward(const Problem& pr, bool save_probs) {
  auto out = torch::empty({pr.n(), pr.tq(), pr.v.size(2)}, pr.acc());  // [N, Tq, Dv]
  torch::Tensor probs;
  if (save_probs) probs = torch::empty({pr.n(), pr.tq(), pr.tk()}, pr.q.options());  // [N, Tq, Tk]
  const bool p_is_saved_in_place = save_probs && pr.dtype() == pr.acc().dtype().toScalarType();
  for_each_tile(pr, plan_tiles(pr, true), [&](int64_t n0, int64_t n1, int64_t i0, int64_t i1) {
    const int64_t ke = pr.key_end(i1);
    auto o = out.slice(0, n0, n1).slice(1, i0, i1);  // [n, bq, Dv]
    torch::Tensor saved;                             // [n, bq, ke] in the inputs' dtype
    if (save_probs) {
      auto tile = probs.slice(0, n0, n1).slice(1, i0, i1);  // [n, bq, Tk]
      tile.slice(2, ke).zero_();
      saved = tile.slice(2, 0, ke);
    }
    if (ke == 0) {  // every key of this block is in the future: the rows are zero
      o.zero_();
      return;
    }
    // [n, bq, ke]: the saved probabilities themselves when they have the accumulation dtype
    auto p = p_is_saved_in_place ? saved : torch::empty({n1 - n0, i1 - i0, ke}, pr.acc());
    probabilities_tile(pr, n0, n1, i0, i1, p);  // 1, 2
    if (save_probs && !p_is_saved_in_place) saved.copy_(p);
    auto v = pr.v.slice(0, n0, n1).slice(1, 0, ke);  // [n, ke, Dv]
    if (pr.dropout_p > 0) {
      auto keep = dropout_keep(pr.seed, pr.dropout_p, n0, n1, i0, i1, 0, ke, pr.acc());
      batched_gemm(false, false, pr.operand(p * keep), v, o);  // 3, 4
    } else {
      batched_gemm(false, false, save_probs ? saved : pr.operand(p), v, o);  // 4
    }
  });
  return {out.to(pr.dtype()), probs};
}

// Backward, the forward passes in reverse. With dO = ∂L/∂O:
//   4. O = P̃ V              →  dV = P̃ᵀ dO,  dP̃ = dO Vᵀ
//   3. P̃ = P ∘ M / (1 - p)  →  dP = dP̃ ∘ M / (1 - p)
//   2. P = softmax(S)        →  dS = P ∘ (dP − rowsum(dP ∘ P))
//   1. S = scale · Q Kᵀ      →  dQ = scale · dS K,  dK = scale · dSᵀ Q
// The row sums need no [Tq, Tk] product: rowsum(dP ∘ P) = rowsum(dP̃ ∘ P̃) = Σ_j Σ_d dO_id V_jd P̃_ij
// = rowsum(dO ∘ O), an [N, Tq] quantity, with or without dropout (it is the same identity).
// A fully masked row has P = 0, hence dS = 0 and no gradient at all.
std::tuple<torch::Tensor, torch::Tensor, torch::Tensor> standard_backward(const Problem& pr,
                                                                          const torch::Tensor& out,
                                                                          const torch::Tensor& probs,
                                                                          const torch::Tensor& grad_out) {
  const auto plan = plan_tiles(pr, true);
  // When a tile holds every query row of its heads, it alone writes their dK and dV (all keys: the
  // last row sees them all), so it writes them directly; with query blocks it accumulates.
  const bool whole_heads = pr.tq() > 0 && plan.rows >= pr.tq();
  const auto acc = pr.acc();
  auto dq = torch::empty(pr.q.sizes(), acc);                                                  // [N, Tq, Dk]
  auto dk = whole_heads ? torch::empty(pr.k.sizes(), acc) : torch::zeros(pr.k.sizes(), acc);  // [N, Tk, Dk]
  auto dv = whole_heads ? torch::empty(pr.v.sizes(), acc) : torch::zeros(pr.v.sizes(), acc);  // [N, Tk, Dv]
  auto row_dot = (grad_out.to(acc) * out.to(acc)).sum(-1, /*keepdim=*/true);  // [N, Tq, 1] rowsum(dO ∘ O)
  for_each_tile(pr, plan, [&](int64_t n0, int64_t n1, int64_t i0, int64_t i1) {
    const int64_t ke = pr.key_end(i1);
    auto dq_tile = dq.slice(0, n0, n1).slice(1, i0, i1);  // [n, bq, Dk]
    if (ke == 0) {
      dq_tile.zero_();
      return;
    }
    auto p = probs.slice(0, n0, n1).slice(1, i0, i1).slice(2, 0, ke);  // [n, bq, ke]
    auto d_out = grad_out.slice(0, n0, n1).slice(1, i0, i1);           // [n, bq, Dv]
    auto q = pr.q.slice(0, n0, n1).slice(1, i0, i1);                   // [n, bq, Dk]
    auto k = pr.k.slice(0, n0, n1).slice(1, 0, ke);                    // [n, ke, Dk]
    auto v = pr.v.slice(0, n0, n1).slice(1, 0, ke);                    // [n, ke, Dv]
    auto dp = torch::empty({n1 - n0, i1 - i0, ke}, acc);               // [n, bq, ke]
    batched_gemm(false, true, d_out, v, dp);                           // dP̃ = dO Vᵀ
    auto p_used = p;                                                   // P̃
    if (pr.dropout_p > 0) {
      auto keep = dropout_keep(pr.seed, pr.dropout_p, n0, n1, i0, i1, 0, ke, acc);
      dp.mul_(keep);                          // 3. dP
      p_used = pr.operand(p.to(acc) * keep);  //    P̃
    }
    auto dv_tile = dv.slice(0, n0, n1).slice(1, 0, ke);  // [n, ke, Dv]
    auto dk_tile = dk.slice(0, n0, n1).slice(1, 0, ke);  // [n, ke, Dk]
    const double accumulate = whole_heads ? 0.0 : 1.0;   // β: write, or add to earlier blocks
    batched_gemm(true, false, p_used, d_out, dv_tile, 1.0, accumulate);  // 4. dV (+)= P̃ᵀ dO
    dp.sub_(row_dot.slice(0, n0, n1).slice(1, i0, i1)).mul_(p);          // 2. dS
    const auto ds = pr.operand(dp);
    batched_gemm(false, false, ds, k, dq_tile, pr.scale);             // 1. dQ = scale · dS K
    batched_gemm(true, false, ds, q, dk_tile, pr.scale, accumulate);  //    dK (+)= scale · dSᵀ Q
  });
  return {dq.to(pr.dtype()), dk.to(pr.dtype()), dv.to(pr.dtype())};
}

}  // namespace qkv::detail
