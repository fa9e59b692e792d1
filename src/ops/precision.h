// Mixed precision as one policy (STYLE.md §14): which of the model's tensors run in bfloat16 or
// float16 and which stay float32. Every conversion to or from a low precision is made by a function
// of this file; the model calls them where matrix products take their operands (ops/gemm.cpp's
// gemm_linear and model/multihead_attention.cpp's attend), and no other file converts dtypes.
//
// The policy, under Precision::Bf16 or Precision::Fp16 (Micikevicius et al. 2018, "Mixed Precision
// Training"; what fairseq's --bf16/--fp16 and PyTorch's autocast do for these ops):
//   low precision   the operands of matrix products, as copies made for the product: a linear layer's
//                   input and weight (the fused Q/K/V projection, the FFN, W_O, the pre-softmax
//                   projection) and attention's per-head Q, K and V; in backward, the gradients that
//                   meet them in backward's products.
//   float32         everything else. Products accumulate in fp32 and their results are fp32 (oneDNN's
//                   bf16 GEMM writes fp32; where a product's library writes the low precision, its
//                   result is cast back), so biases, embeddings and positions, residual sums,
//                   LayerNorm, ReLU, dropout, the logits and the loss all see fp32. The attention
//                   kernels keep the softmax's running max and sum and their accumulators in fp32.
//                   The weights themselves (the masters), their gradients and Adam's moments are
//                   never converted, so checkpoints hold fp32 weights whatever the run's precision.
//
// Who turns it on: a PrecisionScope on the thread that runs the forward pass (train_step around a
// training step, the trainer around validation, qkv translate/evaluate around decoding). Backward
// does not consult it: the forward's choice is recorded in the dtypes of what it saved.
//
// Under Precision::Fp32 (the default, also outside any scope) every function here returns its
// argument itself, so an fp32 run computes exactly what it computed before mixed precision existed.
#pragma once

#include <memory>
#include <string>

#include <torch/types.h>

#include "base/config.h"

namespace qkv {

// Sets the precision of matrix products on this thread until the scope ends (scopes nest; the
// innermost wins). Float16 is meant for CUDA: the caller checks the device (config's
// validate_device, or its own flag), since the policy cannot see where tensors will live.
class PrecisionScope {
 public:
  explicit PrecisionScope(Precision precision);
  ~PrecisionScope();
  PrecisionScope(const PrecisionScope&) = delete;
  PrecisionScope& operator=(const PrecisionScope&) = delete;

  struct State;  // the precision and the weight copies made under it (precision.cpp)

 private:
  std::unique_ptr<State> state_;
};

// The precision in force on this thread: that of the innermost scope, Fp32 outside any.
Precision current_precision();

// The dtype of a precision's products' operands: kFloat, kBFloat16 or kHalf.
torch::ScalarType scalar_type(Precision precision);

// An activation about to enter a matrix product: a float32 tensor is cast to the current
// precision's dtype; any other tensor (already low, or float64 in gradient checks) is returned as is.
torch::Tensor product_input(const torch::Tensor& x);

// A weight about to enter a matrix product: as product_input. When the cast needs no graph (no grad
// mode, or a weight that needs no gradient) the copy is kept until the scope ends and reused while
// the weight is unchanged (its version counter), so decoding casts each weight once rather than once
// per step.
torch::Tensor product_weight(const torch::Tensor& w);

// `t` in the dtype of `like`: backward's conversions, a float32 gradient meeting a low-precision
// operand saved by forward, and a gradient returned for a low-precision input.
torch::Tensor match_dtype(const torch::Tensor& t, const torch::Tensor& like);

// A product's result in float32, for products whose library writes the operands' dtype (libtorch's
// fallbacks, cuBLAS through at::linear); a float32 or float64 result is returned as is.
torch::Tensor product_result(const torch::Tensor& y);

// A warning for a precision that will not pay on `device`, or empty. bf16 on a CPU where oneDNN's
// bf16 GEMM does not run (it needs AVX-512): the products fall back to float32 on operands rounded
// to bf16, so the run pays the casts and the rounding and gains nothing (the toy step on an AVX2
// Zen 3: 253 ms against 217 in fp32). Training and decoding print it at their start.
std::string precision_warning(Precision precision, const torch::Device& device);

}  // namespace qkv
