// The C++ entry points of attention.h. qkv::attention calls the dispatcher operator, so C++ and
// Python go through the same kernels (attention_op.cpp).
//
// Dimensions: B = batch, H = heads, Tq, Tk = query and key lengths, Dk, Dv = widths.
#include "ops/attention.h"

#include <torch/torch.h>

#include "base/enums.h"
#include "ops/attention_internal.h"

namespace qkv {

torch::Tensor attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                        const AttentionOptions& options) {
  c10::optional<torch::Tensor> padding;
  if (options.key_padding_mask.defined()) padding = options.key_padding_mask;
  c10::optional<double> scale;
  if (options.scale.has_value()) scale = *options.scale;
  return detail::attention_op().call(q, k, v, padding, options.causal, scale, options.dropout_p,
                                     to_string(options.impl));  // [B, H, Tq, Dv]
}

torch::Tensor attention_probabilities(const torch::Tensor& q, const torch::Tensor& k,
                                      const torch::Tensor& key_padding_mask, bool causal,
                                      std::optional<double> scale) {
  detail::check_inputs(q, k, k, key_padding_mask, 0.0);
  torch::NoGradGuard no_grad;
  c10::optional<double> given_scale;
  if (scale.has_value()) given_scale = *scale;
  const double s = detail::resolve_scale(given_scale, q.size(3));
  // k stands in for v: the probabilities never touch the values.
  const auto pr = detail::make_problem(q.detach(), k.detach(), k.detach(), key_padding_mask, causal, s,
                                       /*dropout_p=*/0.0, /*seed=*/0);
  return detail::probabilities(pr).view({q.size(0), q.size(1), q.size(2), k.size(2)}).to(q.scalar_type());
}

}  // namespace qkv
