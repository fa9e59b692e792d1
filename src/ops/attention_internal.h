// Internals of scaled dot-product attention shared by the three implementations (attention.h) and
// the dispatcher operator (attention_op.cpp). Not part of the public interface.
//
// Every implementation works on the heads flattened into one batch dimension:
//   N = B·H (one "head" = one batch entry), Tq = query length, Tk = key length,
//   Dk = query/key width, Dv = value width.
// Masks are additive biases (0 = visible, -inf = hidden) built per tile, so no [B, H, Tq, Tk] mask is
// ever materialised by the hand-written implementations.
//
// Precision: Q, K, V come in float32, float64, bfloat16 or (on CUDA) float16. The matrix products
// take their operands in that dtype; everything else (scores, probabilities, the online softmax's
// running maximum and sum, the output and gradient accumulators) is held in the accumulation dtype:
// the inputs' own for float32 and float64, float32 for bfloat16 and float16. Results are returned in
// the inputs' dtype.
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <tuple>

#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/types.h>

namespace qkv::detail {

// The dispatcher operator qkv::attention (attention_op.cpp) and its C++ signature.
using AttentionSignature = torch::Tensor(const torch::Tensor& q, const torch::Tensor& k,
                                         const torch::Tensor& v,
                                         const c10::optional<torch::Tensor>& key_padding_mask, bool causal,
                                         c10::optional<double> scale, double dropout_p,
                                         c10::string_view impl);
const c10::TypedOperatorHandle<AttentionSignature>& attention_op();

// Refuses wrong ranks, shapes, dtypes, devices and dropout rates with a message naming the tensor.
void check_inputs(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                  const torch::Tensor& key_padding_mask, double dropout_p);

// 1/sqrt(Dk) unless given.
double resolve_scale(c10::optional<double> scale, int64_t dk);

// A seed for the dropout mask, drawn from the default torch generator (torch::manual_seed makes it
// reproducible). Drawn once per forward call; backward regenerates the mask from it.
int64_t draw_dropout_seed();

// One attention problem with the heads flattened: the inputs of every kernel.
struct Problem {
  torch::Tensor q;         // [N, Tq, Dk], unscaled: the products with Q take `scale` as their α
  torch::Tensor k;         // [N, Tk, Dk]
  torch::Tensor v;         // [N, Tk, Dv]
  torch::Tensor pad_bias;  // [N, 1, Tk] additive (0 / -inf) in the accumulation dtype; undefined
                           // without padding mask
  bool causal = false;     // query i sees keys j <= i + offset
  int64_t offset = 0;      // Tk - Tq: queries are aligned to the end of the keys
  double scale = 1.0;
  double dropout_p = 0.0;
  int64_t seed = 0;  // dropout stream, used only when dropout_p > 0
  int64_t batch = 0, heads = 0;

  // The inputs' dtype (the products' operands) and the accumulation dtype (see the top of this file).
  torch::ScalarType dtype() const { return q.scalar_type(); }
  torch::TensorOptions acc() const;
  // x in the inputs' dtype, for a product with Q, K, V or dO (x itself when it already is).
  torch::Tensor operand(const torch::Tensor& x) const { return x.to(dtype()); }

  int64_t n() const { return q.size(0); }
  int64_t tq() const { return q.size(1); }
  int64_t tk() const { return k.size(1); }
  // Keys past this index are hidden from every query row before `row_end` (causal only).
  int64_t key_end(int64_t row_end) const;
};

// Flattens q [B, H, Tq, Dk], k, v and the padding mask [B, Tk] into a Problem.
Problem make_problem(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                     const torch::Tensor& key_padding_mask, bool causal, double scale, double dropout_p,
                     int64_t seed);

// The additive mask of the tile heads [n0, n1) × query rows [i0, i1) × keys [j0, j1), broadcastable
// to [n1-n0, i1-i0, j1-j0]; undefined when the tile hides nothing.
torch::Tensor tile_bias(const Problem& pr, int64_t n0, int64_t n1, int64_t i0, int64_t i1, int64_t j0,
                        int64_t j1);

// Scores S = scale·Q Kᵀ + bias of one tile, written into `out` [n, bq, bk] (accumulation dtype).
void tile_scores(const Problem& pr, int64_t n0, int64_t n1, int64_t i0, int64_t i1, int64_t j0, int64_t j1,
                 torch::Tensor& out);

// A row-wise softmax in place that yields zeros (not NaN) for a row whose scores are all -inf.
void softmax_rows_(torch::Tensor& s);

// How the score matrix is cut into tiles: heads in groups of `heads`, query rows in blocks of
// `rows`, keys in blocks of `keys` (the standard implementation takes all keys at once).
struct TilePlan {
  int64_t heads, rows, keys;
};
TilePlan plan_tiles(const Problem& pr, bool all_keys);

// Calls f(n0, n1, i0, i1) for every tile of heads [n0, n1) × query rows [i0, i1).
//
// On the CPU the head groups run in parallel, one per ATen thread, and each tile's matrix products
// run single-threaded inside it (OpenBLAS's OpenMP build, like ATen's own ops, does not fan out
// again inside a parallel region): a few large independent pieces instead of many small products
// each split across the cores, which is what made small T as slow as the composite. A head group's
// query blocks stay on one thread, in order, because they accumulate into the same dK and dV.
// On a GPU the tiles are issued in order from the calling thread (kernels are asynchronous).
template <class F>
void for_each_tile(const Problem& pr, const TilePlan& plan, F&& f) {
  const int64_t groups = (pr.n() + plan.heads - 1) / plan.heads;
  auto run_group = [&](int64_t g) {
    const int64_t n0 = g * plan.heads, n1 = std::min(n0 + plan.heads, pr.n());
    for (int64_t i0 = 0; i0 < pr.tq(); i0 += plan.rows) f(n0, n1, i0, std::min(i0 + plan.rows, pr.tq()));
  };
  if (pr.q.is_cpu() && groups > 1) {
    at::parallel_for(0, groups, 1, [&](int64_t begin, int64_t end) {
      for (int64_t g = begin; g < end; ++g) run_group(g);
    });
  } else {
    for (int64_t g = 0; g < groups; ++g) run_group(g);
  }
}

// --- the three implementations (attention_standard.cpp, attention_memory_efficient.cpp,
// attention_reference.cpp); shapes are the flattened ones of Problem --------------------------------

// out [N, Tq, Dv]; probs [N, Tq, Tk] (without dropout, in the inputs' dtype: the operand of the
// products that use it) when `save_probs`, else undefined.
std::tuple<torch::Tensor, torch::Tensor> standard_forward(const Problem& pr, bool save_probs);
// Returns dq [N, Tq, Dk], dk [N, Tk, Dk], dv [N, Tk, Dv] in the inputs' dtype.
std::tuple<torch::Tensor, torch::Tensor, torch::Tensor> standard_backward(const Problem& pr,
                                                                          const torch::Tensor& out,
                                                                          const torch::Tensor& probs,
                                                                          const torch::Tensor& grad_out);

// out [N, Tq, Dv]; lse [N, Tq, 1] in the accumulation dtype, the log-sum-exp of each score row (0 for
// a fully masked row).
std::tuple<torch::Tensor, torch::Tensor> memory_efficient_forward(const Problem& pr);
std::tuple<torch::Tensor, torch::Tensor, torch::Tensor> memory_efficient_backward(
    const Problem& pr, const torch::Tensor& out, const torch::Tensor& lse, const torch::Tensor& grad_out);

// Composite libtorch ops on the unflattened tensors, differentiated by autograd:
// q [B, H, Tq, Dk] -> [B, H, Tq, Dv]. bfloat16 and float16 inputs are upcast to float32 (autograd
// casts the gradients back): the exact products of the low-precision values, summed in float32.
torch::Tensor reference_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                  const torch::Tensor& key_padding_mask, bool causal, double scale,
                                  double dropout_p, int64_t seed);

// The probabilities [N, Tq, Tk] without dropout, in the accumulation dtype (attention_probabilities
// in attention.h).
torch::Tensor probabilities(const Problem& pr);

}  // namespace qkv::detail
