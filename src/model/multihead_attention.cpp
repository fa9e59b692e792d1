// Multi-head attention (Vaswani et al. 2017, §3.2.2) in three steps, as in The Annotated Transformer:
// 1) project the queries, keys and values (one fused matmul for self-attention), 2) attend per head
// with qkv::attention, 3) concatenate the heads and project back with W_O.
//
// Incremental decoding: self-attention appends the newest step's keys/values to a KVCache and attends
// over the whole cached prefix, so one step costs O(T); cross-attention projects the encoder output
// once and reuses it at every step. When G query rows share one memory row (the hypotheses of a
// sentence in beam search), the memory's keys and values are projected and stored once per sentence
// and read by all G rows: nothing is copied per hypothesis, and a beam reorder leaves them alone.
//
// Dimensions: B = batch, T = query length, S = key length (memory or cached prefix), C = d_model,
// H = heads, Dk = per-head query/key width, Dv = per-head value width, G = query rows per memory row.
#include "model/multihead_attention.h"

#include <vector>

#include <fmt/format.h>
#include <torch/nn/init.h>

#include "ops/attention.h"
#include "ops/gemm.h"
#include "ops/precision.h"

namespace qkv {
namespace {

// [B, T, H*D] -> [B, H, T, D]. Splitting the last dimension is a view even on a column slice.
torch::Tensor split_heads(const torch::Tensor& x, int64_t heads) {
  return x.view({x.size(0), x.size(1), heads, -1}).transpose(1, 2);
}

// [B, H, T, D] -> [B, T, H*D]
torch::Tensor merge_heads(const torch::Tensor& x) {
  return x.transpose(1, 2).reshape({x.size(0), x.size(2), -1});
}

// Rows [begin, begin + count) of a projection's weight or bias; undefined stays undefined.
torch::Tensor rows(const torch::Tensor& t, int64_t begin, int64_t count) {
  return t.defined() ? t.narrow(0, begin, count) : t;
}

}  // namespace

MultiheadAttentionImpl::MultiheadAttentionImpl(const MultiheadAttentionOptions& options) : options_(options) {
  auto& o = options_;
  TORCH_CHECK(o.d_model > 0 && o.heads > 0,
              fmt::format("multi-head attention needs d_model > 0 and heads > 0 (got {} and {})", o.d_model,
                          o.heads));
  TORCH_CHECK(
      (o.d_k > 0 && o.d_v > 0) || o.d_model % o.heads == 0,
      fmt::format("heads = {} does not divide d_model = {}: set d_k and d_v explicitly", o.heads, o.d_model));
  if (o.d_k <= 0) o.d_k = o.d_model / o.heads;
  if (o.d_v <= 0) o.d_v = o.d_model / o.heads;
  const int64_t qk = o.heads * o.d_k;  // H*Dk
  const int64_t vv = o.heads * o.d_v;  // H*Dv
  in_proj_weight = register_parameter("in_proj_weight", torch::empty({2 * qk + vv, o.d_model}));
  if (o.bias) in_proj_bias = register_parameter("in_proj_bias", torch::empty({2 * qk + vv}));
  out_proj =
      register_module("out_proj", torch::nn::Linear(torch::nn::LinearOptions(vv, o.d_model).bias(o.bias)));
  reset_parameters();
}

// Each of W_Q, W_K, W_V, W_O gets its own Xavier-uniform bound (fan_in + fan_out of that projection),
// as if they were four separate linear layers; biases start at zero.
void MultiheadAttentionImpl::reset_parameters() {
  torch::NoGradGuard no_grad;
  const int64_t qk = options_.heads * options_.d_k;
  const int64_t vv = options_.heads * options_.d_v;
  torch::nn::init::xavier_uniform_(in_proj_weight.narrow(0, 0, qk));       // W_Q
  torch::nn::init::xavier_uniform_(in_proj_weight.narrow(0, qk, qk));      // W_K
  torch::nn::init::xavier_uniform_(in_proj_weight.narrow(0, 2 * qk, vv));  // W_V
  torch::nn::init::xavier_uniform_(out_proj->weight);                      // W_O
  if (in_proj_bias.defined()) in_proj_bias.zero_();
  if (out_proj->bias.defined()) out_proj->bias.zero_();
}

torch::Tensor MultiheadAttentionImpl::forward_self(const torch::Tensor& x,
                                                   const torch::Tensor& key_padding_mask, bool causal,
                                                   KVCache* cache) {
  TORCH_CHECK(
      x.dim() == 3 && x.size(2) == options_.d_model,
      fmt::format("self-attention expects x [B, T, {}], got {}", options_.d_model, c10::str(x.sizes())));
  const int64_t heads = options_.heads;
  const int64_t qk = heads * options_.d_k;
  const int64_t vv = heads * options_.d_v;

  // 1) project: one fused matmul produces Q, K and V side by side.
  auto qkv = qkv::gemm_linear(x, in_proj_weight, in_proj_bias);  // [B, T, 2*H*Dk + H*Dv]
  qkv = product_input(qkv);  // attention's operands (and the cache) in the products' precision
  auto q = split_heads(qkv.narrow(2, 0, qk), heads);       // [B, H, T, Dk]
  auto k = split_heads(qkv.narrow(2, qk, qk), heads);      // [B, H, T, Dk]
  auto v = split_heads(qkv.narrow(2, 2 * qk, vv), heads);  // [B, H, T, Dv]
  if (cache != nullptr) {
    cache->append(k, v);
    k = cache->k();  // [B, H, S, Dk], S = every step so far
    v = cache->v();  // [B, H, S, Dv]
  }
  // 2) attend and 3) concatenate + project.
  return attend(q, k, v, key_padding_mask, causal);
}

torch::Tensor MultiheadAttentionImpl::forward_cross(const torch::Tensor& x, const torch::Tensor& memory,
                                                    const torch::Tensor& memory_padding_mask,
                                                    KVCache* cache) {
  TORCH_CHECK(
      x.dim() == 3 && x.size(2) == options_.d_model,
      fmt::format("cross-attention expects x [B, T, {}], got {}", options_.d_model, c10::str(x.sizes())));
  const int64_t heads = options_.heads;
  const int64_t qk = heads * options_.d_k;
  const int64_t vv = heads * options_.d_v;

  // 1) project the queries with the W_Q rows ...
  auto q = split_heads(qkv::gemm_linear(x, rows(in_proj_weight, 0, qk), rows(in_proj_bias, 0, qk)),
                       heads);  // [B, H, T, Dk]
  q = product_input(q);         // as in forward_self
  torch::Tensor k, v;
  if (cache != nullptr && cache->defined()) {
    k = cache->k();  // [B, H, S, Dk]
    v = cache->v();  // [B, H, S, Dv]
  } else {
    // ... and the memory with the W_K and W_V rows together (once per sentence when decoding).
    TORCH_CHECK(memory.dim() == 3 && memory.size(2) == options_.d_model,
                fmt::format("cross-attention expects memory [B, S, {}], got {}", options_.d_model,
                            c10::str(memory.sizes())));
    auto kv = qkv::gemm_linear(memory, rows(in_proj_weight, qk, qk + vv),
                               rows(in_proj_bias, qk, qk + vv));  // [B, S, H*Dk + H*Dv]
    kv = product_input(kv);
    k = split_heads(kv.narrow(2, 0, qk), heads);   // [B, H, S, Dk]
    v = split_heads(kv.narrow(2, qk, vv), heads);  // [B, H, S, Dv]
    if (cache != nullptr) {
      cache->assign(k, v);
      k = cache->k();
      v = cache->v();
    }
  }
  const int64_t rows = k.size(0);  // B, memory rows
  TORCH_CHECK(
      rows > 0 && x.size(0) % rows == 0,
      fmt::format("cross-attention expects x [B·G, T, C] for memory [B, S, C], got {} rows for B = {}",
                  x.size(0), rows));
  const int64_t groups = x.size(0) / rows;  // G query rows per memory row
  return attend(q, k, v, memory_padding_mask, /*causal=*/false, groups);
}

torch::Tensor MultiheadAttentionImpl::attend(const torch::Tensor& q, const torch::Tensor& k,
                                             const torch::Tensor& v, const torch::Tensor& key_padding_mask,
                                             bool causal, int64_t groups) {
  AttentionOptions a;
  a.key_padding_mask = key_padding_mask;
  a.causal = causal && q.size(2) > 1;  // a single query aligned to the end sees every key anyway
  a.dropout_p = is_training() ? options_.dropout : 0.0;
  a.impl = options_.impl;
  // With G query rows per key row, the rows g, G + g, 2G + g, ... attend together, once for each g:
  // every row then meets the same products (of the same shapes) as without the sharing, so sharing
  // the keys and values changes no number (a block of G·T rows per key row would, by rounding).
  const auto per_group = q.view({k.size(0), groups, q.size(1), q.size(2), q.size(3)});  // [B, G, H, T, Dk]
  std::vector<torch::Tensor> outs, probs;
  for (int64_t g = 0; g < groups; ++g) {
    const auto qg = per_group.select(1, g);  // [B, H, T, Dk]
    outs.push_back(attention(qg, k, v, a));  // [B, H, T, Dv]
    if (record_attention_) {
      torch::NoGradGuard no_grad;
      probs.push_back(attention_probabilities(qg.detach(), k.detach(), key_padding_mask, a.causal));
    }
  }
  auto o = groups > 1 ? torch::stack(outs, 1).flatten(0, 1) : outs[0];  // [B·G, H, T, Dv]
  if (record_attention_) {
    last_attention_ = groups > 1 ? torch::stack(probs, 1).flatten(0, 1) : probs[0];  // [B·G, H, T, S]
    last_attention_ = product_result(last_attention_);  // pictures get float32 under any precision
  }
  return qkv::gemm_linear(merge_heads(o), out_proj->weight, out_proj->bias);  // [B·G, T, C]
}

}  // namespace qkv
