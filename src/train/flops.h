// Training cost in floating-point operations, counted from the model's own matrix products (the
// paper's Table 2 estimates cost as time × GPUs × peak FLOP/s instead).
//
// A product of an [m, k] and a [k, n] matrix costs 2·m·k·n FLOPs. Per batch, the forward pass makes:
//   encoder layer: Q/K/V projections, Q·Kᵀ (S×S per head), P·V, the output projection, the FFN's two
//                  products;
//   decoder layer: the same over T for causal self-attention (the full T×T products are computed and
//                  then masked, so they count in full), cross-attention (queries over T, keys and values
//                  over S), the FFN;
//   output:        the pre-softmax projection C -> V over every target position.
// Lengths are the padded ones, since the padding is computed too. Element-wise work (softmax,
// LayerNorm, dropout, the loss) is a few percent of this at the paper's sizes and is left out, as is
// usual. Backward costs twice the forward (a gradient for each operand of each product), so a
// training step is 3 × forward.
//
// Dimensions: B = batch, S = source length, T = target length, C = d_model, H = heads, F = d_ff.
#pragma once

#include <cstdint>
#include <string>

#include "base/config.h"

namespace qkv {

// Forward FLOPs of one batch of B sentence pairs padded to S source and T target tokens.
double forward_flops(const ModelConfig& model, int64_t tgt_vocab, int64_t batch, int64_t src_len,
                     int64_t tgt_len);

// Forward + backward: 3 × forward_flops.
double training_flops(const ModelConfig& model, int64_t tgt_vocab, int64_t batch, int64_t src_len,
                      int64_t tgt_len);

// "3.30e+18" style, for logs.
std::string format_flops(double flops);

}  // namespace qkv
