// Multi-head attention (Vaswani et al. 2017, §3.2.2): MultiHead(Q, K, V) = Concat(head_1..h) W_O,
// head_i = Attention(Q W_Q_i, K W_K_i, V W_V_i). The module owns only the projections: the math is
// qkv::attention (ops/attention.h).
//
// Parameters (a serialization contract, laid out as torch::nn::MultiheadAttention's):
//   in_proj_weight  [H*Dk + H*Dk + H*Dv, C]  rows: W_Q, then W_K, then W_V
//   in_proj_bias    [H*Dk + H*Dk + H*Dv]     (when bias = true)
//   out_proj        Linear(H*Dv -> C)
// Self-attention applies in_proj as one fused matmul; cross-attention projects the query with the
// W_Q rows and the encoder output with the W_K/W_V rows (once per sentence when decoding).
//
// Dimensions: B = batch, T = target length, S = source length, C = d_model, H = heads.
#pragma once

#include <optional>
#include <string>

#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include "base/config.h"
#include "model/kv_cache.h"

namespace qkv {

struct MultiheadAttentionOptions {
  int64_t d_model = 512;
  int64_t heads = 8;
  int64_t d_k = 0;  // per head; 0 = d_model / heads
  int64_t d_v = 0;  // per head; 0 = d_model / heads
  bool bias = true;
  double dropout = 0.0;  // attention dropout (on the probabilities), training mode only
  AttentionKind impl = AttentionKind::Standard;  // see ops/attention.h
};

class MultiheadAttentionImpl : public torch::nn::Module {
 public:
  explicit MultiheadAttentionImpl(const MultiheadAttentionOptions& options);

  // x [B, T, C] -> [B, T, C]. With a cache, x holds only the newest step(s); their keys/values are
  // appended to the cache and attention runs over the whole cached prefix.
  torch::Tensor forward_self(const torch::Tensor& x, const torch::Tensor& key_padding_mask = {},
                             bool causal = false, KVCache* cache = nullptr);

  // x [B·G, T, C] attends to memory [B, S, C]; memory_padding_mask [B, S]. The G consecutive rows
  // b·G .. b·G + G - 1 of x share memory row b (G = 1 usually; in beam search the G = K hypotheses
  // of a sentence share its encoder output, whose keys and values are then computed and stored once
  // per sentence, not per hypothesis). With a filled cache, memory is not projected again (it may be
  // undefined).
  torch::Tensor forward_cross(const torch::Tensor& x, const torch::Tensor& memory,
                              const torch::Tensor& memory_padding_mask = {}, KVCache* cache = nullptr);

  // When enabled, each forward stores its per-head probabilities [B, H, Tq, Tk] (no dropout).
  void set_record_attention(bool on) { record_attention_ = on; }
  const torch::Tensor& last_attention() const { return last_attention_; }

  void reset_parameters();  // Xavier-uniform weights (each of W_Q, W_K, W_V, W_O on its own), zero biases
  // The options with d_k and d_v resolved (never 0 after construction).
  const MultiheadAttentionOptions& options() const { return options_; }

  torch::Tensor in_proj_weight;
  torch::Tensor in_proj_bias;
  torch::nn::Linear out_proj{nullptr};

 private:
  // Steps 2 and 3: per-head attention, then concatenation and W_O. q [B·G, H, T, Dk] (G query rows
  // per key row, see forward_cross; G = 1 otherwise), k [B, H, S, Dk], v [B, H, S, Dv] -> [B·G, T, C].
  torch::Tensor attend(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                       const torch::Tensor& key_padding_mask, bool causal, int64_t groups = 1);

  MultiheadAttentionOptions options_;
  bool record_attention_ = false;
  torch::Tensor last_attention_;
};
TORCH_MODULE(MultiheadAttention);

}  // namespace qkv
