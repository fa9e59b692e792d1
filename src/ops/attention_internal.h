// Internals of scaled dot-product attention shared by the three implementations (attention.h) and
// the dispatcher operator (attention_op.cpp): the flattened problem and the implementations' entry
// points. How the tiled implementations cut the work is in attention_tiles.h. Not part of the public
// interface.
//
// Every implementation works on the heads flattened into one batch dimension:
//   N = B·H (one "head" = one batch entry), Tq = query length, Tk = key length,
//   Dk = query/key width, Dv = value width.
// No [B, H, Tq, Tk] mask is ever materialised by the hand-written implementations: the causal mask
// and the padding are applied tile by tile (attention_tiles.h).
//
// Precision: Q, K, V come in float32, float64, bfloat16 or (on CUDA) float16. The matrix products
// take their operands in that dtype; everything else (scores, probabilities, the online softmax's
// running maximum and sum, the output and gradient accumulators) is held in the accumulation dtype:
// the inputs' own for float32 and float64, float32 for bfloat16 and float16. Results are returned in
// the inputs' dtype.
#pragma once

#include <cstdint>
#include <optional>
#include <tuple>
#include <vector>

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

  // The padding mask summarised for skipping work (empty without padding mask), per batch entry b:
  std::vector<int64_t> pad_prefix;  // [B·(Tk + 1)]: padded keys among keys [0, j), at b·(Tk + 1) + j
  std::vector<int64_t> pad_end;     // [B]: 1 + the last key that is not padding (0: all are)
  // Padded keys among keys [j0, j1) of head n (batch entry n / heads).
  int64_t padded_keys(int64_t n, int64_t j0, int64_t j1) const;
  // Keys past this index are hidden from every row of heads [n0, n1) before `row_end`: the causal
  // cut, and the padding that ends every sequence of those heads.
  int64_t visible_end(int64_t n0, int64_t n1, int64_t row_end) const;
  // True when keys [j0, j1) are padding for every head of [n0, n1).
  bool all_padded(int64_t n0, int64_t n1, int64_t j0, int64_t j1) const;
};

// Flattens q [B, H, Tq, Dk], k, v and the padding mask [B, Tk] into a Problem.
Problem make_problem(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                     const torch::Tensor& key_padding_mask, bool causal, double scale, double dropout_p,
                     int64_t seed);

// --- the three implementations (attention_standard.cpp, attention_memory_efficient.cpp,
// attention_reference.cpp); shapes are the flattened ones of Problem --------------------------------

// out [N, Tq, Dv]; when `save_probs`, P without dropout in the inputs' dtype (the operand of the
// products that use it), stored block by block (ProbsLayout in attention_standard.cpp), else
// undefined.
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

// One query row per head (Tq = 1: a decoding step), float32 on the CPU, no dropout: a loop per head
// instead of the tiles' matrix products (attention_single_query.cpp). The forward-only kernel takes it
// for both tiled implementations; out [N, 1, Dv].
bool single_query_applies(const Problem& pr);
torch::Tensor single_query_forward(const Problem& pr);

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
