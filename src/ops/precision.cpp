// The mixed-precision policy: see precision.h. Every dtype conversion of the model's tensors is here.
#include "ops/precision.h"

#include <vector>

#include <torch/torch.h>

#include "ops/gemm.h"

namespace qkv {

// One weight copy: the weight it was made from (kept alive, so its storage cannot be reused by
// another tensor), the weight's version when copied, and the copy.
struct WeightCopy {
  torch::Tensor source;
  int64_t version;
  torch::Tensor copy;
};

struct PrecisionScope::State {
  Precision precision;
  State* outer;
  std::vector<WeightCopy> weights;  // a few hundred at most: a linear search is cheaper than a hash
};

namespace {

thread_local PrecisionScope::State* innermost = nullptr;

bool is_low(Precision p) {
  return p != Precision::Fp32;
}

// The same view of the same storage: a parameter, or the same rows of one (cross-attention's W_Q
// and W_K/W_V are narrowed from in_proj_weight at every call, so tensor identity is not enough).
bool same_view(const torch::Tensor& a, const torch::Tensor& b) {
  return a.data_ptr() == b.data_ptr() && a.sizes() == b.sizes() && a.strides() == b.strides() &&
         a.scalar_type() == b.scalar_type() && a.device() == b.device();
}

}  // namespace

PrecisionScope::PrecisionScope(Precision precision)
    : state_(std::make_unique<State>(State{precision, innermost, {}})) {
  innermost = state_.get();
}

PrecisionScope::~PrecisionScope() {
  innermost = state_->outer;
}

Precision current_precision() {
  return innermost != nullptr ? innermost->precision : Precision::Fp32;
}

torch::ScalarType scalar_type(Precision precision) {
  switch (precision) {
    case Precision::Bf16:
      return torch::kBFloat16;
    case Precision::Fp16:
      return torch::kHalf;
    case Precision::Fp32:
      break;
  }
  return torch::kFloat;
}

torch::Tensor product_input(const torch::Tensor& x) {
  const Precision p = current_precision();
  if (!is_low(p) || !x.defined() || x.scalar_type() != torch::kFloat) return x;
  return x.to(scalar_type(p));
}

torch::Tensor product_weight(const torch::Tensor& w) {
  const Precision p = current_precision();
  if (!is_low(p) || !w.defined() || w.scalar_type() != torch::kFloat) return w;
  // A cast that autograd records (a weight being trained outside a custom Function) is made afresh:
  // a copy reused by two forward passes would share one node of the graph between them.
  if (torch::GradMode::is_enabled() && w.requires_grad()) return w.to(scalar_type(p));
  auto& weights = innermost->weights;
  const int64_t version = w._version();
  for (auto& entry : weights) {
    if (!same_view(entry.source, w)) continue;
    if (entry.version != version) entry = {w, version, w.to(scalar_type(p))};  // updated in place
    return entry.copy;
  }
  weights.push_back({w, version, w.to(scalar_type(p))});
  return weights.back().copy;
}

torch::Tensor match_dtype(const torch::Tensor& t, const torch::Tensor& like) {
  if (!t.defined() || t.scalar_type() == like.scalar_type()) return t;
  return t.to(like.scalar_type());
}

torch::Tensor product_result(const torch::Tensor& y) {
  const auto t = y.scalar_type();
  if (t == torch::kFloat || t == torch::kDouble) return y;
  return y.to(torch::kFloat);
}

std::string precision_warning(Precision precision, const torch::Device& device) {
  if (precision == Precision::Bf16 && device.is_cpu() && !onednn_bf16_gemm_available()) {
    return "bf16 on this CPU runs its matrix products in float32 (oneDNN's bf16 GEMM needs AVX-512), on "
           "operands rounded to bf16: expect it to be slower than fp32";
  }
  return {};
}

}  // namespace qkv
