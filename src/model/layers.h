// The Transformer's layers and stacks (Vaswani et al. 2017, §3.1, §3.3): the position-wise FFN, the
// encoder layer (self-attention, FFN), the decoder layer (causal self-attention, cross-attention, FFN)
// and the stacks of N layers.
//
// Every sublayer is wrapped in dropout, a residual connection and LayerNorm, in one of two orders:
//   post-norm (the paper): LayerNorm(x + Dropout(Sublayer(x)))
//   pre-norm:              x + Dropout(Sublayer(LayerNorm(x))), plus one final LayerNorm per stack.
//
// Dimensions: B = batch, S = source length, T = target length, C = d_model, F = d_ff.
#pragma once

#include <vector>

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include "base/config.h"
#include "model/multihead_attention.h"

namespace qkv {

// What a layer needs from ModelConfig, read once where the model is built.
struct LayerOptions {
  int64_t d_model = 512;
  int64_t d_ff = 2048;
  int64_t heads = 8;
  int64_t d_k = 0;  // per head; 0 = d_model / heads
  int64_t d_v = 0;
  double dropout = 0.1;            // residual dropout on each sublayer's output
  double attention_dropout = 0.0;  // on attention probabilities
  double relu_dropout = 0.0;       // after the FFN's ReLU
  NormOrder norm = NormOrder::Post;
  double layer_norm_eps = 1e-6;
  AttentionKind attention_kind = AttentionKind::Standard;

  static LayerOptions from(const ModelConfig& config);
  MultiheadAttentionOptions attention() const;
};

// FFN(x) = max(0, x W1 + b1) W2 + b2 (§3.3), with optional dropout after the ReLU.
class FeedForwardImpl : public torch::nn::Module {
 public:
  explicit FeedForwardImpl(const LayerOptions& options);
  torch::Tensor forward(const torch::Tensor& x);  // [B, T, C] -> [B, T, C]
  void reset_parameters();                        // Xavier-uniform weights, zero biases

  torch::nn::Linear linear1{nullptr};  // C -> F
  torch::nn::Linear linear2{nullptr};  // F -> C

 private:
  double relu_dropout_;
};
TORCH_MODULE(FeedForward);

class EncoderLayerImpl : public torch::nn::Module {
 public:
  explicit EncoderLayerImpl(const LayerOptions& options);
  // x [B, S, C], padding_mask [B, S] (true = padding) -> [B, S, C]
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& padding_mask);

  MultiheadAttention self_attn{nullptr};
  FeedForward ffn{nullptr};
  torch::nn::LayerNorm norm1{nullptr};  // around self-attention
  torch::nn::LayerNorm norm2{nullptr};  // around the FFN

 private:
  LayerOptions options_;
};
TORCH_MODULE(EncoderLayer);

class DecoderLayerImpl : public torch::nn::Module {
 public:
  explicit DecoderLayerImpl(const LayerOptions& options);
  // y [B, T, C], memory [B, S, C], memory_mask [B, S] -> [B, T, C]. With caches, y holds only the
  // newest step(s) (see MultiheadAttention); memory may be undefined once cross_cache is filled.
  torch::Tensor forward(const torch::Tensor& y, const torch::Tensor& memory, const torch::Tensor& memory_mask,
                        KVCache* self_cache = nullptr, KVCache* cross_cache = nullptr);

  MultiheadAttention self_attn{nullptr};   // causal
  MultiheadAttention cross_attn{nullptr};  // over the encoder output
  FeedForward ffn{nullptr};
  torch::nn::LayerNorm norm1{nullptr};  // around self-attention
  torch::nn::LayerNorm norm2{nullptr};  // around cross-attention
  torch::nn::LayerNorm norm3{nullptr};  // around the FFN

 private:
  LayerOptions options_;
};
TORCH_MODULE(DecoderLayer);

// N encoder layers, plus a final LayerNorm "norm" in pre-norm order only.
class EncoderImpl : public torch::nn::Module {
 public:
  EncoderImpl(const LayerOptions& options, int64_t num_layers);
  // x [B, S, C] (embedded source), padding_mask [B, S] -> memory [B, S, C]
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& padding_mask);

  std::vector<EncoderLayer> layers;    // registered through a ModuleList as "layers.0", "layers.1", ...
  torch::nn::LayerNorm norm{nullptr};  // pre-norm only
};
TORCH_MODULE(Encoder);

// N decoder layers, plus a final LayerNorm "norm" in pre-norm order only.
class DecoderImpl : public torch::nn::Module {
 public:
  DecoderImpl(const LayerOptions& options, int64_t num_layers);
  // y [B, T, C] (embedded target), memory [B, S, C], memory_mask [B, S] -> [B, T, C]. self_caches and
  // cross_caches (one per layer) switch on incremental decoding.
  torch::Tensor forward(const torch::Tensor& y, const torch::Tensor& memory, const torch::Tensor& memory_mask,
                        std::vector<KVCache>* self_caches = nullptr,
                        std::vector<KVCache>* cross_caches = nullptr);

  std::vector<DecoderLayer> layers;    // registered through a ModuleList as "layers.0", "layers.1", ...
  torch::nn::LayerNorm norm{nullptr};  // pre-norm only
};
TORCH_MODULE(Decoder);

}  // namespace qkv
