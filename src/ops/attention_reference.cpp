// Reference attention: softmax(Q Kᵀ · scale + mask) V written with libtorch's composite ops and
// differentiated by autograd, the yardstick the hand-written implementations are tested and timed
// against. It materialises the whole mask (when there is one) and every intermediate, as a direct
// composition would. bfloat16 and float16 inputs are upcast to float32.
//
// Dimensions: B = batch, H = heads, Tq, Tk = query and key lengths, Dk, Dv = widths.
#include <limits>

#include <torch/torch.h>

#include "ops/attention_dropout.h"
#include "ops/attention_internal.h"

namespace qkv::detail {

torch::Tensor reference_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                  const torch::Tensor& key_padding_mask, bool causal, double scale,
                                  double dropout_p, int64_t seed) {
  if (q.scalar_type() == torch::kBFloat16 || q.scalar_type() == torch::kHalf) {
    // Upcast: the products of the low-precision values are exact in float32 and summed there.
    return reference_attention(q.to(torch::kFloat), k.to(torch::kFloat), v.to(torch::kFloat),
                               key_padding_mask, causal, scale, dropout_p, seed)
        .to(q.scalar_type());  // [B, H, Tq, Dv]
  }
  const int64_t b = q.size(0), h = q.size(1), tq = q.size(2), tk = k.size(2);
  auto scores = at::matmul(q, k.transpose(-2, -1)).mul(scale);  // [B, H, Tq, Tk]
  torch::Tensor probs;
  if (!causal && !key_padding_mask.defined()) {
    probs = at::softmax(scores, -1);  // [B, H, Tq, Tk]
  } else {
    const auto ints = q.options().dtype(torch::kLong);
    auto hidden = torch::zeros({1, 1, tq, tk}, q.options().dtype(torch::kBool));  // [1, 1, Tq, Tk]
    if (causal) {
      auto horizon = torch::arange(tq, ints).add_(tk - tq).unsqueeze(1);  // [Tq, 1]
      hidden = hidden.logical_or(torch::arange(tk, ints).unsqueeze(0).gt(horizon));
    }
    if (key_padding_mask.defined()) {
      hidden = hidden.logical_or(key_padding_mask.view({b, 1, 1, tk}));  // [B, 1, Tq, Tk]
    }
    // A row with every key hidden would be softmax(-inf, ..., -inf) = NaN, and its NaN gradient
    // would leak through softmax's backward; leave such rows unmasked and zero them afterwards.
    auto empty_rows = hidden.all(-1, /*keepdim=*/true);  // [., 1, Tq, 1]
    scores = scores.masked_fill(hidden.logical_and(empty_rows.logical_not()),
                                -std::numeric_limits<double>::infinity());
    probs = at::softmax(scores, -1).masked_fill(empty_rows, 0.0);  // [B, H, Tq, Tk]
  }
  if (dropout_p > 0) {
    auto keep = dropout_keep(seed, dropout_p, 0, b * h, 0, tq, 0, tk, q.options());  // [B·H, Tq, Tk]
    probs = probs * keep.view({b, h, tq, tk});
  }
  return at::matmul(probs, v);  // [B, H, Tq, Dv]
}

}  // namespace qkv::detail
