// Label-smoothed cross entropy: see loss.h for the convention.
//
// Dimensions: N = tokens (B·T flattened), V = vocabulary.
#include "train/loss.h"

#include <torch/autograd.h>
#include <torch/torch.h>

#include <fmt/format.h>

namespace qkv {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

// Weight of the reference token's NLL and of the sum over all classes:
//   loss = −(1 − ε) log p_y − ε/(V−1) Σ_{v≠y} log p_v = on_target · nll_y + off_target · Σ_v (−log p_v)
// with off_target = ε/(V−1) and on_target = 1 − ε − off_target.
struct SmoothingWeights {
  double on_target;
  double off_target;
};

SmoothingWeights smoothing_weights(double epsilon, int64_t vocab) {
  const double off = vocab > 1 ? epsilon / static_cast<double>(vocab - 1) : 0.0;
  return {1.0 - epsilon - off, off};
}

// The loss as one Function so that backward is the closed form p − q rather than the chain of
// log_softmax, gather and sum backwards.
struct SmoothedCrossEntropy : torch::autograd::Function<SmoothedCrossEntropy> {
  // logits [N, V], target [N] (int64), mask [N] (the logits' dtype; 1 = real token)
  //   -> {smoothed loss, NLL}, both scalar sums over the masked tokens; the NLL is not differentiable.
  static tensor_list forward(AutogradContext* ctx, const torch::Tensor& logits, const torch::Tensor& target,
                             const torch::Tensor& mask, double epsilon) {
    const auto w = smoothing_weights(epsilon, logits.size(1));
    auto lprobs = torch::log_softmax(logits, 1);                   // [N, V]
    auto nll = -lprobs.gather(1, target.unsqueeze(1)).squeeze(1);  // [N]
    auto all = -lprobs.sum(1);                                     // [N]
    auto per_token = nll * w.on_target + all * w.off_target;       // [N]
    ctx->save_for_backward({lprobs, target, mask});
    ctx->saved_data["on_target"] = w.on_target;
    ctx->saved_data["off_target"] = w.off_target;
    auto nll_sum = (nll * mask).sum();
    ctx->mark_non_differentiable({nll_sum});
    return {(per_token * mask).sum(), nll_sum};
  }

  // d loss / d logits = mask ⊙ (p − q), q = off_target everywhere plus on_target at y
  // (the forward's softmax rows sum to one, so the Σ q term's derivative is p · Σ q = p).
  static tensor_list backward(AutogradContext* ctx, tensor_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const auto& lprobs = saved[0];  // [N, V]
    const auto& target = saved[1];  // [N]
    const auto& mask = saved[2];    // [N]
    const double on_target = ctx->saved_data["on_target"].toDouble();
    const double off_target = ctx->saved_data["off_target"].toDouble();
    auto grad = lprobs.exp();  // p [N, V]
    grad.sub_(off_target);
    grad.scatter_add_(1, target.unsqueeze(1),
                      torch::full({grad.size(0), 1}, -on_target, grad.options()));  // − on_target at y
    grad.mul_((mask * grad_outputs[0]).unsqueeze(1));                               // [N, V]
    return {grad, torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

// The loss is computed in at least single precision: half-precision log-probabilities lose the
// small differences label smoothing is about.
torch::ScalarType loss_dtype(const torch::Tensor& logits) {
  const auto t = logits.scalar_type();
  return (t == torch::kDouble || t == torch::kFloat) ? t : torch::kFloat;
}

}  // namespace

LossResult label_smoothed_cross_entropy(const torch::Tensor& logits, const torch::Tensor& target,
                                        double epsilon, int64_t pad) {
  TORCH_CHECK(logits.dim() >= 2, "label_smoothed_cross_entropy: logits must be [..., V], got ",
              logits.sizes());
  TORCH_CHECK(target.numel() * logits.size(-1) == logits.numel(), "label_smoothed_cross_entropy: target ",
              target.sizes(), " does not match logits ", logits.sizes());
  TORCH_CHECK(epsilon >= 0.0 && epsilon < 1.0,
              "label_smoothed_cross_entropy: epsilon must be in [0, 1), got ", epsilon);
  const int64_t vocab = logits.size(-1);
  auto flat_logits = logits.reshape({-1, vocab}).to(loss_dtype(logits));  // [N, V]
  auto flat_target = target.reshape({-1}).to(torch::kLong);               // [N]
  auto valid = flat_target.ne(pad);                                       // [N] bool
  auto mask = valid.to(flat_logits.scalar_type());                        // [N]

  LossResult result;
  auto outputs = SmoothedCrossEntropy::apply(flat_logits, flat_target, mask, epsilon);
  result.loss = outputs[0];
  result.nll = outputs[1];
  result.tokens = valid.sum().item<int64_t>();
  return result;
}

double token_accuracy(const torch::Tensor& logits, const torch::Tensor& target, int64_t pad) {
  torch::NoGradGuard no_grad;
  auto predicted = logits.argmax(-1).reshape({-1});  // [N]
  auto flat_target = target.reshape({-1});           // [N]
  auto valid = flat_target.ne(pad);                  // [N]
  const int64_t total = valid.sum().item<int64_t>();
  if (total == 0) return 0.0;
  const int64_t right = (predicted.eq(flat_target) & valid).sum().item<int64_t>();
  return static_cast<double>(right) / static_cast<double>(total);
}

}  // namespace qkv
