// Encoder and decoder layers and stacks (Vaswani et al. 2017, §3.1, §3.3). See layers.h.
//
// Dimensions: B = batch, S = source length, T = target length, C = d_model, F = d_ff.
#include "model/layers.h"

#include <fmt/format.h>
#include <torch/nn/init.h>

#include "ops/dropout.h"
#include "ops/gemm.h"
namespace qkv {
namespace {

torch::Tensor maybe_dropout(const torch::Tensor& x, double p, bool training) {
  return qkv::counter_dropout(x, p, training);
}

torch::nn::LayerNorm make_norm(const LayerOptions& o) {
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({o.d_model}).eps(o.layer_norm_eps));
}

// One residual sublayer (§5.4 "Residual Dropout"):
//   post-norm: LayerNorm(x + Dropout(f(x)));  pre-norm: x + Dropout(f(LayerNorm(x))).
template <typename Sublayer>
torch::Tensor residual(const torch::Tensor& x, torch::nn::LayerNorm& norm, const LayerOptions& o,
                       bool training, Sublayer&& f) {
  if (o.norm == NormOrder::Pre) return x + maybe_dropout(f(norm(x)), o.dropout, training);
  return norm(x + maybe_dropout(f(x), o.dropout, training));
}

}  // namespace

LayerOptions LayerOptions::from(const ModelConfig& config) {
  LayerOptions o;
  o.d_model = config.d_model;
  o.d_ff = config.d_ff;
  o.heads = config.heads;
  o.d_k = config.d_k;  // 0: the attention module derives d_model / heads (and checks that it divides)
  o.d_v = config.d_v;
  o.dropout = config.dropout;
  o.attention_dropout = config.attention_dropout;
  o.relu_dropout = config.relu_dropout;
  o.norm = config.norm;
  o.layer_norm_eps = config.layer_norm_eps;
  o.attention_kind = config.attention;
  return o;
}

MultiheadAttentionOptions LayerOptions::attention() const {
  MultiheadAttentionOptions a;
  a.d_model = d_model;
  a.heads = heads;
  a.d_k = d_k;
  a.d_v = d_v;
  a.dropout = attention_dropout;
  a.impl = attention_kind;
  return a;
}

// --- position-wise feed-forward network -------------------------------------------------------------

FeedForwardImpl::FeedForwardImpl(const LayerOptions& options) : relu_dropout_(options.relu_dropout) {
  linear1 = register_module("linear1", torch::nn::Linear(options.d_model, options.d_ff));
  linear2 = register_module("linear2", torch::nn::Linear(options.d_ff, options.d_model));
  reset_parameters();
}

void FeedForwardImpl::reset_parameters() {
  torch::NoGradGuard no_grad;
  for (auto* linear : {linear1.get(), linear2.get()}) {
    torch::nn::init::xavier_uniform_(linear->weight);
    linear->bias.zero_();
  }
}

torch::Tensor FeedForwardImpl::forward(const torch::Tensor& x) {
  auto h = torch::relu(qkv::gemm_linear(x, linear1->weight, linear1->bias));  // [B, T, F]
  h = maybe_dropout(h, relu_dropout_, is_training());                         // [B, T, F]
  return qkv::gemm_linear(h, linear2->weight, linear2->bias);                 // [B, T, C]
}

// --- encoder layer ----------------------------------------------------------------------------------

EncoderLayerImpl::EncoderLayerImpl(const LayerOptions& options) : options_(options) {
  self_attn = register_module("self_attn", MultiheadAttention(options.attention()));
  ffn = register_module("ffn", FeedForward(options));
  norm1 = register_module("norm1", make_norm(options));
  norm2 = register_module("norm2", make_norm(options));
}

torch::Tensor EncoderLayerImpl::forward(const torch::Tensor& x, const torch::Tensor& padding_mask) {
  const bool training = is_training();
  auto h = residual(x, norm1, options_, training, [&](const torch::Tensor& in) {
    return self_attn->forward_self(in, padding_mask);  // [B, S, C]
  });
  return residual(h, norm2, options_, training,
                  [&](const torch::Tensor& in) { return ffn(in); });  // [B, S, C]
}

// --- decoder layer ----------------------------------------------------------------------------------

DecoderLayerImpl::DecoderLayerImpl(const LayerOptions& options) : options_(options) {
  self_attn = register_module("self_attn", MultiheadAttention(options.attention()));
  cross_attn = register_module("cross_attn", MultiheadAttention(options.attention()));
  ffn = register_module("ffn", FeedForward(options));
  norm1 = register_module("norm1", make_norm(options));
  norm2 = register_module("norm2", make_norm(options));
  norm3 = register_module("norm3", make_norm(options));
}

torch::Tensor DecoderLayerImpl::forward(const torch::Tensor& y, const torch::Tensor& memory,
                                        const torch::Tensor& memory_mask, KVCache* self_cache,
                                        KVCache* cross_cache) {
  const bool training = is_training();
  auto h = residual(y, norm1, options_, training, [&](const torch::Tensor& in) {
    return self_attn->forward_self(in, /*key_padding_mask=*/{}, /*causal=*/true, self_cache);  // [B, T, C]
  });
  h = residual(h, norm2, options_, training, [&](const torch::Tensor& in) {
    return cross_attn->forward_cross(in, memory, memory_mask, cross_cache);  // [B, T, C]
  });
  return residual(h, norm3, options_, training,
                  [&](const torch::Tensor& in) { return ffn(in); });  // [B, T, C]
}

// --- stacks -----------------------------------------------------------------------------------------

EncoderImpl::EncoderImpl(const LayerOptions& options, int64_t num_layers) {
  auto list = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < num_layers; ++i) {
    layers.push_back(EncoderLayer(options));
    list->push_back(layers.back());
  }
  if (options.norm == NormOrder::Pre) norm = register_module("norm", make_norm(options));
}

torch::Tensor EncoderImpl::forward(const torch::Tensor& x, const torch::Tensor& padding_mask) {
  auto h = x;  // [B, S, C]
  for (auto& layer : layers) h = layer->forward(h, padding_mask);
  return norm ? norm(h) : h;  // [B, S, C]
}

DecoderImpl::DecoderImpl(const LayerOptions& options, int64_t num_layers) {
  auto list = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < num_layers; ++i) {
    layers.push_back(DecoderLayer(options));
    list->push_back(layers.back());
  }
  if (options.norm == NormOrder::Pre) norm = register_module("norm", make_norm(options));
}

torch::Tensor DecoderImpl::forward(const torch::Tensor& y, const torch::Tensor& memory,
                                   const torch::Tensor& memory_mask, std::vector<KVCache>* self_caches,
                                   std::vector<KVCache>* cross_caches) {
  const auto n = static_cast<int64_t>(layers.size());
  TORCH_CHECK(
      self_caches == nullptr || static_cast<int64_t>(self_caches->size()) == n,
      fmt::format("decoder state has {} self-attention caches for {} layers", self_caches->size(), n));
  TORCH_CHECK(
      cross_caches == nullptr || static_cast<int64_t>(cross_caches->size()) == n,
      fmt::format("decoder state has {} cross-attention caches for {} layers", cross_caches->size(), n));
  auto h = y;  // [B, T, C]
  for (int64_t i = 0; i < n; ++i) {
    h = layers[i]->forward(h, memory, memory_mask, self_caches ? &(*self_caches)[i] : nullptr,
                           cross_caches ? &(*cross_caches)[i] : nullptr);
  }
  return norm ? norm(h) : h;  // [B, T, C]
}

}  // namespace qkv
