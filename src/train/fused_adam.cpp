// FusedAdam's step: the one-pass vector loop (AVX-512 or AVX2) and the tensor-operation path. See
// fused_adam.h for the formula and why the state is libtorch's own.
#include "train/fused_adam.h"

#include <cmath>
#include <sstream>
#include <string>
#include <type_traits>

#include <torch/torch.h>

#include "ops/cpu_features.h"
#include "ops/simd_lanes.h"

namespace qkv {
namespace {

using torch::optim::AdamOptions;
using torch::optim::AdamParamState;

// One step's scalars for one parameter, in float32 as the loop uses them (libtorch too rounds its
// double scalars to the tensor's float32 when it applies them).
struct Coefficients {
  float beta1, beta2;
  float one_minus_beta1, one_minus_beta2;
  float inv_sqrt_bc2;  // 1 / sqrt(1 − β2^t)
  float eps;
  float step_size;  // lr / (1 − β1^t)
};

Coefficients coefficients(const AdamOptions& o, int64_t step) {
  const double beta1 = std::get<0>(o.betas()), beta2 = std::get<1>(o.betas());
  const double bc1 = 1 - std::pow(beta1, static_cast<double>(step));
  const double bc2 = 1 - std::pow(beta2, static_cast<double>(step));
  return {static_cast<float>(beta1),
          static_cast<float>(beta2),
          static_cast<float>(1 - beta1),
          static_cast<float>(1 - beta2),
          static_cast<float>(1 / std::sqrt(bc2)),
          static_cast<float>(o.eps()),
          static_cast<float>(o.lr() / bc1)};
}

#define QKV_SIMD_FILE "train/fused_adam_simd.inc"
#include "ops/simd_each_width.h"

// Elements per at::parallel_for chunk at least: 4 × 64 KiB streams, enough work to pay for a thread.
constexpr int64_t kGrain = 1 << 14;

// The one-pass update of a float32 parameter (its gradient and moments contiguous, same size), in the
// widest vectors this CPU has.
void adam_cpu_loop(torch::Tensor& p, const torch::Tensor& g, AdamParamState& s, const Coefficients& c) {
#if QKV_X86_SIMD
  float* pp = p.data_ptr<float>();
  const float* gp = g.data_ptr<float>();
  float* mp = s.exp_avg().data_ptr<float>();
  float* vp = s.exp_avg_sq().data_ptr<float>();
  const Simd simd = cpu_simd();
  TORCH_CHECK(simd != Simd::None, "FusedAdam: the one-pass CPU loop needs AVX2 and FMA");
  at::parallel_for(0, p.numel(), kGrain, [&](int64_t begin, int64_t end) {
    if (simd == Simd::Avx512) {
      avx512::adam_update(pp + begin, gp + begin, mp + begin, vp + begin, end - begin, c);
    } else {
      avx2::adam_update(pp + begin, gp + begin, mp + begin, vp + begin, end - begin, c);
    }
  });
  // Written through raw pointers: bump the version counters as in-place operations would, so that
  // anything cached against a version (precision.h's weight copies) sees the change.
  p.unsafeGetTensorImpl()->bump_version();
  s.exp_avg().unsafeGetTensorImpl()->bump_version();
  s.exp_avg_sq().unsafeGetTensorImpl()->bump_version();
#else
  (void)p, (void)g, (void)s, (void)c;
  TORCH_CHECK(false, "FusedAdam: the one-pass CPU loop needs an x86-64 build");
#endif
}

// The update in libtorch tensor operations, libtorch's own sequence of them: any device, dtype and
// layout, amsgrad and weight decay.
void adam_tensor_ops(torch::Tensor& p, torch::Tensor g, AdamParamState& s, const AdamOptions& o) {
  const double beta1 = std::get<0>(o.betas()), beta2 = std::get<1>(o.betas());
  const auto t = static_cast<double>(s.step());
  const double bc1 = 1 - std::pow(beta1, t), bc2 = 1 - std::pow(beta2, t);
  if (o.weight_decay() != 0) g = g.add(p, o.weight_decay());
  s.exp_avg().mul_(beta1).add_(g, 1 - beta1);
  s.exp_avg_sq().mul_(beta2).addcmul_(g, g, 1 - beta2);
  torch::Tensor second = s.exp_avg_sq();
  if (o.amsgrad()) second = torch::max_out(s.max_exp_avg_sq(), s.max_exp_avg_sq(), s.exp_avg_sq());
  const auto denom = (second.sqrt() / std::sqrt(bc2)).add_(o.eps());
  p.addcdiv_(s.exp_avg(), denom, -o.lr() / bc1);
}

// libtorch keys an optimizer's state by the parameter's TensorImpl: 1.13 by the address printed to a
// string (c10::guts::to_string), 2.x by the address itself.
template <typename Key>
Key state_key(const torch::Tensor& p) {
  if constexpr (std::is_same_v<Key, std::string>) {
    std::ostringstream out;
    out << static_cast<const void*>(p.unsafeGetTensorImpl());
    return out.str();
  } else {
    return static_cast<Key>(p.unsafeGetTensorImpl());
  }
}

// The parameter's state, created as libtorch's Adam creates it on a parameter's first step.
template <typename StateMap>
AdamParamState& state_of(StateMap& states, const torch::Tensor& p, const AdamOptions& o) {
  auto& slot = states[state_key<typename StateMap::key_type>(p)];
  if (!slot) {
    auto state = std::make_unique<AdamParamState>();
    state->step(0);
    state->exp_avg(torch::zeros_like(p, torch::MemoryFormat::Preserve));
    state->exp_avg_sq(torch::zeros_like(p, torch::MemoryFormat::Preserve));
    if (o.amsgrad()) state->max_exp_avg_sq(torch::zeros_like(p, torch::MemoryFormat::Preserve));
    slot = std::move(state);
  }
  return static_cast<AdamParamState&>(*slot);
}

// Whether the gradient and the moments can be walked with p by one index.
bool same_flat_layout(const torch::Tensor& p, const torch::Tensor& g, const AdamParamState& s) {
  for (const auto* t : {&g, &s.exp_avg(), &s.exp_avg_sq()}) {
    if (!t->is_contiguous() || t->scalar_type() != torch::kFloat || t->device() != p.device() ||
        t->sizes() != p.sizes())
      return false;
  }
  return true;
}

}  // namespace

const AdamParamState* adam_state(const torch::optim::Optimizer& optimizer, const torch::Tensor& p) {
  const auto& states = optimizer.state();
  const auto it = states.find(state_key<std::decay_t<decltype(states)>::key_type>(p));
  return it == states.end() ? nullptr : static_cast<const AdamParamState*>(it->second.get());
}

bool fused_adam_uses_cpu_loop(const torch::Tensor& p, const AdamOptions& options) {
#if QKV_X86_SIMD
  return cpu_simd() != Simd::None && p.is_cpu() && p.scalar_type() == torch::kFloat && p.is_contiguous() &&
         !options.amsgrad() && options.weight_decay() == 0;
#else
  (void)p, (void)options;
  return false;
#endif
}

torch::Tensor FusedAdam::step(LossClosure closure) {
  torch::NoGradGuard no_grad;
  torch::Tensor loss;
  if (closure != nullptr) {
    at::AutoGradMode enable_grad(true);
    loss = closure();
  }
  for (auto& group : param_groups()) {
    const auto& options = static_cast<const AdamOptions&>(group.options());
    for (auto& p : group.params()) {
      const torch::Tensor& g = p.grad();
      if (!g.defined()) continue;
      TORCH_CHECK(!g.is_sparse(), "FusedAdam does not support sparse gradients");
      AdamParamState& s = state_of(state(), p, options);
      s.step(s.step() + 1);
      if (fused_adam_uses_cpu_loop(p, options) && same_flat_layout(p, g, s))
        adam_cpu_loop(p, g, s, coefficients(options, s.step()));
      else
        adam_tensor_ops(p, g, s, options);
    }
  }
  return loss;
}

}  // namespace qkv
