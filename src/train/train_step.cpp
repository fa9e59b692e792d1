// One optimizer step: see train_step.h.
#include "train/train_step.h"

#include <cmath>

#include <torch/torch.h>

#include "base/special_tokens.h"
#include "ops/precision.h"
#include "train/flops.h"
#include "train/loss.h"

namespace qkv {
namespace {

// ‖g‖₂ over every parameter's gradient, as one number (parameters without a gradient count as zero).
torch::Tensor total_grad_norm(const std::vector<torch::Tensor>& parameters) {
  std::vector<torch::Tensor> norms;
  for (const auto& p : parameters)
    if (p.grad().defined()) norms.push_back(p.grad().norm(2).to(torch::kFloat));
  if (norms.empty()) return torch::zeros({});
  return torch::stack(norms).norm(2);
}

// Sums a few numbers over the processes of a data-parallel run (in float64: exact for counts).
std::vector<double> sum_over_processes(dist::World* world, std::vector<double> values) {
  if (world == nullptr || world->size() == 1) return values;
  auto t = torch::tensor(values, torch::kDouble);  // [n]
  world->all_reduce_sum(t);
  return {t.data_ptr<double>(), t.data_ptr<double>() + t.numel()};
}

}  // namespace

void set_learning_rate(torch::optim::Adam& optimizer, double lr) {
  for (auto& group : optimizer.param_groups())
    static_cast<torch::optim::AdamOptions&>(group.options()).lr(lr);
}

StepResult train_step(Transformer& model, torch::optim::Adam& optimizer, const std::vector<Batch>& batches,
                      const StepOptions& options) {
  model->train();
  optimizer.zero_grad();
  StepResult result;
  for (const auto& batch : batches) result.tokens += batch.tgt_tokens;
  result.tokens =
      static_cast<int64_t>(sum_over_processes(options.world, {static_cast<double>(result.tokens)})[0]);
  // Each batch's summed loss is divided by the tokens of the whole step, so the accumulated gradient is
  // that of the mean over all of them, however they were split into batches (and processes).
  // The loss scale S multiplies in here and is divided out of the gradients below.
  const double scale = 1.0 / static_cast<double>(std::max<int64_t>(result.tokens, 1));
  for (size_t i = 0; i < batches.size(); ++i) {
    const Batch& batch = batches[i];
    const PrecisionScope precision(options.precision);      // its weight copies go before Adam's update
    auto logits = model->forward(batch.src, batch.tgt_in);  // [B, T, V], float32
    auto loss = label_smoothed_cross_entropy(logits, batch.tgt_out, options.label_smoothing, kPadId);
    if (options.reducer) options.reducer->begin_backward(/*exchange=*/i + 1 == batches.size());
    (loss.loss * (scale * options.loss_scale)).backward();
    result.loss_sum += loss.loss.item<double>();
    result.nll_sum += loss.nll.item<double>();
    result.sentences += batch.size();
    result.flops += training_flops(model->config(), model->tgt_vocab(), batch.src.size(0), batch.src.size(1),
                                   batch.tgt_in.size(1));
  }
  if (options.reducer) options.reducer->finish();
  const auto sums = sum_over_processes(
      options.world, {result.loss_sum, result.nll_sum, static_cast<double>(result.sentences), result.flops,
                      options.stop_requested ? 1.0 : 0.0});
  result.loss_sum = sums[0];
  result.nll_sum = sums[1];
  result.sentences = static_cast<int64_t>(sums[2]);
  result.flops = sums[3];
  result.stop = sums[4] > 0;
  const auto parameters = model->parameters();
  result.grad_norm = total_grad_norm(parameters).item<double>() / options.loss_scale;
  result.finite = std::isfinite(result.loss_sum) && std::isfinite(result.grad_norm);
  result.overflow = !result.finite && options.loss_scale != 1.0 && std::isfinite(result.loss_sum);
  if (!result.finite) {
    optimizer.zero_grad();
    return result;
  }
  // One pass over the gradients divides out the loss scale and applies the clip.
  double factor = 1.0 / options.loss_scale;
  if (options.clip_norm > 0 && result.grad_norm > options.clip_norm)
    factor *= options.clip_norm / (result.grad_norm + 1e-6);
  if (factor != 1.0) {
    torch::NoGradGuard no_grad;
    for (auto& p : parameters)
      if (p.grad().defined()) p.grad().mul_(factor);
  }
  set_learning_rate(optimizer, options.lr);
  optimizer.step();
  return result;
}

}  // namespace qkv
