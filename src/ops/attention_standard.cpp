// Standard attention: computes the probabilities P tile by tile, saves them for backward, and
// differentiates by hand (the formulas of Vaswani et al. 2017, §3.2.1, with the softmax gradient).
//
// A tile is a group of heads × a block of query rows × every key that block can see, sized to stay
// in the L2 cache, so the mask, softmax and gradient passes run over cached data between the matrix
// products. A causal block sees keys up to its last row's horizon only: the keys past it are never
// computed nor stored (P is saved block by block, ProbsLayout below, so a causal P takes half the
// memory), and the mask is applied only to the block's last keys, those that cross the diagonal. The
// products run over the rectangles of visible_blocks (attention_tiles.h): the keys all the block's
// rows see, then the square across the diagonal in stairs, so the masked corner of that square is
// neither computed nor multiplied (the softmax writes its zeros).
// Keys that are padding for every head of a tile at the end of the sequence are cut the same way.
// Scores, probabilities and accumulators are in the accumulation dtype (attention_internal.h); P is
// saved, and enters the products, in the inputs' dtype.
//
// Dimensions: N = batch·heads, Tq, Tk = query and key lengths, Dk, Dv = widths;
// a tile has n heads, bq query rows and ke keys (ke <= Tk, the keys its rows can see).
#include <torch/torch.h>

#include "ops/attention_dropout.h"
#include "ops/attention_tiles.h"
#include "ops/big_buffer.h"
#include "ops/gemm.h"

namespace qkv::detail {
namespace {

// Where P is kept: head by head, each head's query blocks one after the other, block b holding its
// rows × the keys the causal mask leaves it (ke_b = all Tk keys without one), each row padded to
// ld_b = padded_row_length(ke_b) elements (gemm.h: the products Pᵀ dO read P down its columns). The
// tile of heads [n0, n1) and block b is then the [n, bq_b, ke_b] view of the contiguous
// [n, bq_b, ld_b] at n0·per_head + n·before[b].
class ProbsLayout {
 public:
  ProbsLayout(const Problem& pr, const TilePlan& plan) : rows_(plan.rows) {
    for (int64_t i0 = 0; i0 < pr.tq(); i0 += plan.rows) {
      const int64_t i1 = std::min(i0 + plan.rows, pr.tq());
      before_.push_back(per_head_);
      keys_.push_back(pr.key_end(i1));
      lds_.push_back(padded_row_length(keys_.back(), pr.q.element_size()));
      per_head_ += (i1 - i0) * lds_.back();
    }
  }
  int64_t elements(const Problem& pr) const { return pr.n() * per_head_; }
  // The [n, bq, ke_b] block of heads [n0, n1) × rows [i0, i1) in `flat`.
  torch::Tensor tile(const torch::Tensor& flat, int64_t n0, int64_t n1, int64_t i0, int64_t i1) const {
    const auto b = static_cast<size_t>(i0 / rows_);
    const int64_t n = n1 - n0, start = n0 * per_head_ + n * before_[b];
    return flat.slice(0, start, start + n * (i1 - i0) * lds_[b])
        .view({n, i1 - i0, lds_[b]})
        .narrow(2, 0, keys_[b]);
  }

 private:
  int64_t rows_, per_head_ = 0;
  std::vector<int64_t> before_, keys_, lds_;
};

// Passes 1 and 2 of one tile: P = softmax(S), S = scale·Q Kᵀ + mask, written into p [n, bq, ke].
void probabilities_tile(const Problem& pr, const Tile& t, torch::Tensor& p) {
  tile_scores(pr, t, p);
  softmax_tile(pr, t, p);
}

// The rectangles a tile's products run over: visible_blocks, or the whole tile when the row passes
// read whole rows. Padded key blocks are computed (and masked by the softmax): the softmax reads every
// key a row may see, so none of those scores may be left uninitialised.
std::vector<Tile> rectangles(const Problem& pr, const TilePlan& plan, const Tile& whole) {
  if (!row_passes_read_visible_keys_only(pr)) return {whole};
  return visible_blocks(pr, plan, whole.n0, whole.n1, whole.i0, whole.i1, /*skip_padded=*/false);
}

// An uninitialised [n, rows, cols] tensor of `options` with padded rows (padded_row_length), carved
// from the front of `buffer` when given (which must hold enough elements).
torch::Tensor padded_rows(int64_t n, int64_t rows, int64_t cols, const torch::TensorOptions& options,
                          const torch::Tensor& buffer = {}) {
  const int64_t ld = padded_row_length(cols, static_cast<int64_t>(options.dtype().itemsize()));
  auto storage = buffer.defined() ? buffer.slice(0, 0, n * rows * ld).view({n, rows, ld})
                                  : torch::empty({n, rows, ld}, options);
  return storage.narrow(2, 0, cols);
}

// The [n, rows, keys] view of block t inside x, a [n, bq, ke] tile of `whole`.
torch::Tensor block_of(const torch::Tensor& x, const Tile& whole, const Tile& t) {
  return x.slice(1, t.i0 - whole.i0, t.i1 - whole.i0).slice(2, t.j0 - whole.j0, t.j1 - whole.j0);
}

}  // namespace

torch::Tensor probabilities(const Problem& pr) {
  auto probs = big_zeros({pr.n(), pr.tq(), pr.tk()}, pr.acc());  // [N, Tq, Tk]
  for_each_tile(pr, plan_tiles(pr, AttentionKind::Standard), TileOrder::RowsIndependent,
                [&](int64_t n0, int64_t n1, int64_t i0, int64_t i1) {
                  const int64_t ke = pr.visible_end(n0, n1, i1);
                  auto p = probs.slice(0, n0, n1).slice(1, i0, i1).slice(2, 0, ke);  // [n, bq, ke]
                  if (ke > 0) probabilities_tile(pr, {n0, n1, i0, i1, 0, ke}, p);
                });
  return probs;
}

// Forward, per tile:
//   1. S = scale·Q Kᵀ + mask            [n, bq, ke]
//   2. P = softmax(S)                    (saved for backward, without dropout)
//   3. P̃ = P ∘ M / (1 - p)              (M = the dropout keep mask)
//   4. O = P̃ V                          [n, bq, Dv]
std::tuple<torch::Tensor, torch::Tensor> standard_forward(const Problem& pr, bool save_probs) {
  const auto plan = plan_tiles(pr, AttentionKind::Standard);
  const ProbsLayout layout(pr, plan);
  auto out = big_empty({pr.n(), pr.tq(), pr.v.size(2)}, pr.acc());  // [N, Tq, Dv]
  torch::Tensor probs;                                              // flat, see ProbsLayout
  if (save_probs) probs = big_empty({layout.elements(pr)}, pr.q.options());
  const bool p_is_saved_in_place = save_probs && pr.dtype() == pr.acc().dtype().toScalarType();
  for_each_tile(pr, plan, TileOrder::RowsIndependent, [&](int64_t n0, int64_t n1, int64_t i0, int64_t i1) {
    const int64_t ke = pr.visible_end(n0, n1, i1);
    auto o = out.slice(0, n0, n1).slice(1, i0, i1);  // [n, bq, Dv]
    if (ke == 0) {                                   // no row sees a key: the rows are zero
      o.zero_();
      return;
    }
    torch::Tensor saved;  // [n, bq, ke] in the inputs' dtype
    if (save_probs) saved = layout.tile(probs, n0, n1, i0, i1).slice(2, 0, ke);
    // the saved probabilities themselves when they have the accumulation dtype
    auto p = p_is_saved_in_place ? saved : torch::empty({n1 - n0, i1 - i0, ke}, pr.acc());  // [n, bq, ke]
    const Tile whole{n0, n1, i0, i1, 0, ke};
    const auto blocks = rectangles(pr, plan, whole);
    for (const Tile& t : blocks) {
      auto s = block_of(p, whole, t);
      tile_scores(pr, t, s);  // 1
    }
    softmax_tile(pr, whole, p);  // 2
    if (save_probs && !p_is_saved_in_place) saved.copy_(p);
    const auto& p_operand = save_probs ? saved : p;
    o.zero_();
    for (const Tile& t : blocks) {
      auto o_rows = o.slice(1, t.i0 - i0, t.i1 - i0);       // [n, rows, Dv]
      auto v = pr.v.slice(0, n0, n1).slice(1, t.j0, t.j1);  // [n, bk, Dv]
      auto p_block = block_of(p_operand, whole, t);         // [n, rows, bk]
      if (pr.dropout_p > 0) {
        auto keep = dropout_keep(pr.seed, pr.dropout_p, n0, n1, t.i0, t.i1, t.j0, t.j1, pr.acc());
        batched_gemm(false, false, pr.operand(p_block.to(pr.acc()) * keep), v, o_rows, 1.0, 1.0);  // 3, 4
      } else {
        batched_gemm(false, false, pr.operand(p_block), v, o_rows, 1.0, 1.0);  // 4
      }
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
// A fully masked row has P = 0, hence dS = 0 and no gradient at all. dK and dV sum over the query
// blocks of a head group, which one thread runs in order.
std::tuple<torch::Tensor, torch::Tensor, torch::Tensor> standard_backward(const Problem& pr,
                                                                          const torch::Tensor& out,
                                                                          const torch::Tensor& probs,
                                                                          const torch::Tensor& grad_out) {
  const auto plan = plan_tiles(pr, AttentionKind::Standard);
  const ProbsLayout layout(pr, plan);
  const auto acc = pr.acc();
  auto dq = big_zeros(pr.q.sizes(), acc);                                     // [N, Tq, Dk]
  auto dk = big_zeros(pr.k.sizes(), acc);                                     // [N, Tk, Dk]
  auto dv = big_zeros(pr.v.sizes(), acc);                                     // [N, Tk, Dv]
  auto row_dot = (grad_out.to(acc) * out.to(acc)).sum(-1, /*keepdim=*/true);  // [N, Tq, 1] rowsum(dO ∘ O)
  for_each_tile(pr, plan, TileOrder::RowsInOrder, [&](int64_t n0, int64_t n1, int64_t i0, int64_t i1) {
    const int64_t ke = pr.visible_end(n0, n1, i1);
    if (ke == 0) return;  // no row sees a key: no gradient
    const Tile whole{n0, n1, i0, i1, 0, ke};
    const auto p_tile = layout.tile(probs, n0, n1, i0, i1).slice(2, 0, ke);  // [n, bq, ke]
    // dP̃ of a block: no rectangle's padded rows are longer than the whole tile's.
    const int64_t dp_ld = padded_row_length(ke, static_cast<int64_t>(acc.dtype().itemsize()));
    auto dp_buffer = torch::empty({(n1 - n0) * (i1 - i0) * dp_ld}, acc);
    for (const Tile& t : rectangles(pr, plan, whole)) {
      const auto rows = [&](const torch::Tensor& x) { return x.slice(0, n0, n1).slice(1, t.i0, t.i1); };
      const auto keys = [&](const torch::Tensor& x) { return x.slice(0, n0, n1).slice(1, t.j0, t.j1); };
      auto p = block_of(p_tile, whole, t);                         // [n, rows, bk]
      auto d_out = rows(grad_out), q = rows(pr.q);                 // [n, rows, Dv], [n, rows, Dk]
      auto k = keys(pr.k), v = keys(pr.v);                         // [n, bk, Dk], [n, bk, Dv]
      auto dp = padded_rows(n1 - n0, t.i1 - t.i0, t.j1 - t.j0, acc, dp_buffer);  // [n, rows, bk]
      batched_gemm(false, true, d_out, v, dp);                     // dP̃ = dO Vᵀ
      auto p_used = p;                                             // P̃
      if (pr.dropout_p > 0) {
        auto keep = dropout_keep(pr.seed, pr.dropout_p, n0, n1, t.i0, t.i1, t.j0, t.j1, acc);
        dp.mul_(keep);                          // 3. dP
        p_used = pr.operand(p.to(acc) * keep);  //    P̃
      }
      auto dv_block = keys(dv), dk_block = keys(dk), dq_rows = rows(dq);
      batched_gemm(true, false, p_used, d_out, dv_block, 1.0, 1.0);  // 4. dV += P̃ᵀ dO
      ds_tile(pr, dp, p, rows(row_dot));                             // 2. dS
      const auto ds = pr.operand(dp);
      batched_gemm(false, false, ds, k, dq_rows, pr.scale, 1.0);  // 1. dQ += scale · dS K
      batched_gemm(true, false, ds, q, dk_block, pr.scale, 1.0);  //    dK += scale · dSᵀ Q
    }
  });
  return {dq.to(pr.dtype()), dk.to(pr.dtype()), dv.to(pr.dtype())};
}

}  // namespace qkv::detail
