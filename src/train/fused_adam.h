// FusedAdam: libtorch's Adam (Kingma & Ba 2015, Algorithm 1, in torch::optim::Adam's form) with the
// update of each parameter done in one pass over p, g, m, v instead of libtorch's six elementwise
// tensor operations (each of which reads and writes whole tensors: ~12% of a base-size bf16 step).
//
// It is a torch::optim::Adam: the same options (AdamOptions), the same per-parameter state objects
// (AdamParamState: step, exp_avg, exp_avg_sq, max_exp_avg_sq), created lazily as libtorch creates them
// (zeros like the parameter, step 0), and the same save/load. A checkpoint written with either loads
// into either and continues. Per parameter, with t the parameter's step after the increment:
//
//   g  = g + weight_decay · p                      (only when weight_decay != 0)
//   m  = β1·m + (1 − β1)·g
//   v  = β2·v + (1 − β2)·g²
//   v̂  = max(v̂, v) with amsgrad, else v
//   p  = p − (lr / (1 − β1^t)) · m / (sqrt(v̂) / sqrt(1 − β2^t) + ε)
//
// Two implementations of that formula:
//   - float32 parameters with contiguous gradients and moments on a CPU with AVX-512 or AVX2 + FMA,
//     without amsgrad or weight decay (qkv sets neither): one loop, 16 or 8 lanes at a time (a masked
//     tail), over chunks of the tensor split by at::parallel_for. Its rounding differs from libtorch's by a
//     few float32 ulps per step: it divides by sqrt(1 − β2^t) by multiplying with the reciprocal, and fuses
//     multiply-adds (tests/test_fused_adam.cpp bounds the difference);
//   - everything else (CUDA, float64, non-contiguous tensors, amsgrad, weight decay, CPUs without
//     AVX2): libtorch's own sequence of tensor operations, so the same results as libtorch's Adam.
// Every element is computed by the same lane-wise instructions (each correctly rounded) whatever the
// chunking, thread count or vector width, so a run is reproducible bit for bit (resuming included),
// on AVX2 and AVX-512 CPUs alike.
#pragma once

#include <torch/optim/adam.h>

namespace qkv {

class FusedAdam : public torch::optim::Adam {
 public:
  using torch::optim::Adam::Adam;

  // One update of every parameter that has a gradient (as torch::optim::Adam::step).
  torch::Tensor step(LossClosure closure = nullptr) override;
};

// Whether FusedAdam updates `p` with the one-pass CPU loop (otherwise: libtorch operations). Exposed for
// tests and benchmarks, which must know which of the two they measure.
bool fused_adam_uses_cpu_loop(const torch::Tensor& p, const torch::optim::AdamOptions& options);

// The Adam state of parameter `p` in `optimizer` (libtorch's Adam or FusedAdam), or null before p's
// first step.
const torch::optim::AdamParamState* adam_state(const torch::optim::Optimizer& optimizer,
                                               const torch::Tensor& p);

}  // namespace qkv
