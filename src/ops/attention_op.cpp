// The dispatcher operator qkv::attention, one implementation for C++, TorchScript and Python
// (torch.ops.qkv.attention after torch.ops.load_library("libqkv_ops.so")):
//   attention(Tensor q, Tensor k, Tensor v, Tensor? key_padding_mask, bool causal, float? scale,
//             float dropout_p, str impl) -> Tensor
// Kernels:
//   CPU, CUDA  forward only, nothing saved: inference, or no input needs a gradient. The code is
//              device-generic (tensor ops only), so one kernel serves both backends; a single query
//              row per head in float32 on the CPU (a decoding step) takes a loop of its own.
//   Autograd   "standard" and "memory_efficient" run AttentionFunction, whose backward is the
//              hand-written one; "reference" runs its composite ops under autograd.
//
// Dimensions: B = batch, H = heads, N = B·H, Tq, Tk = query and key lengths, Dk, Dv = widths.
#include <torch/library.h>
#include <torch/torch.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "base/enums.h"
#include "ops/attention_internal.h"

namespace qkv::detail {
namespace {

// The schema's `impl` string as the enum: the one place where the operator's string is read.
AttentionKind kind_from_schema(c10::string_view impl) {
  const std::string name(impl.data(), impl.size());
  AttentionKind kind{};
  TORCH_CHECK(parse_enum(name, kind), fmt::format("qkv::attention: unknown impl \"{}\" (expected one of {})",
                                                  name, fmt::join(enum_names<AttentionKind>(), ", ")));
  return kind;
}

torch::Tensor mask_or_undefined(const c10::optional<torch::Tensor>& mask) {
  return mask.has_value() ? *mask : torch::Tensor();
}

// [N, T, D] -> [B, H, T, D].
torch::Tensor unflatten(const torch::Tensor& x, const Problem& pr) {
  return x.view({pr.batch, pr.heads, x.size(1), x.size(2)});
}

torch::Tensor attention_kernel(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                               const c10::optional<torch::Tensor>& key_padding_mask, bool causal,
                               c10::optional<double> scale, double dropout_p, c10::string_view impl) {
  const auto padding = mask_or_undefined(key_padding_mask);
  check_inputs(q, k, v, padding, dropout_p);
  const AttentionKind kind = kind_from_schema(impl);
  const double s = resolve_scale(scale, q.size(3));
  const int64_t seed = dropout_p > 0 ? draw_dropout_seed() : 0;
  if (kind == AttentionKind::Reference) {
    return reference_attention(q, k, v, padding, causal, s, dropout_p, seed);
  }
  const auto pr = make_problem(q, k, v, padding, causal, s, dropout_p, seed);
  if (single_query_applies(pr)) return unflatten(single_query_forward(pr), pr);
  auto out = kind == AttentionKind::Standard ? std::get<0>(standard_forward(pr, /*save_probs=*/false))
                                             : std::get<0>(memory_efficient_forward(pr));
  return unflatten(out, pr);  // [B, H, Tq, Dv]
}

// Saves the inputs, the output and one implementation-specific tensor: the probabilities P
// [N, Tq, Tk] (standard) or the row log-sum-exp L [N, Tq, 1] (memory_efficient). The scalars,
// including the dropout seed, go into saved_data so backward rebuilds the same problem.
class AttentionFunction : public torch::autograd::Function<AttentionFunction> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& q,
                               const torch::Tensor& k, const torch::Tensor& v,
                               const c10::optional<torch::Tensor>& key_padding_mask, bool causal,
                               double scale, double dropout_p, int64_t impl) {
    at::AutoDispatchBelowADInplaceOrView guard;
    const int64_t seed = dropout_p > 0 ? draw_dropout_seed() : 0;
    const auto pr =
        make_problem(q, k, v, mask_or_undefined(key_padding_mask), causal, scale, dropout_p, seed);
    auto [out, aux] = static_cast<AttentionKind>(impl) == AttentionKind::Standard
                          ? standard_forward(pr, /*save_probs=*/true)
                          : memory_efficient_forward(pr);
    auto result = unflatten(out, pr);  // [B, H, Tq, Dv]
    ctx->save_for_backward({q, k, v, result, aux});
    ctx->saved_data["key_padding_mask"] = key_padding_mask;  // bool, never differentiated
    ctx->saved_data["causal"] = causal;
    ctx->saved_data["scale"] = scale;
    ctx->saved_data["dropout_p"] = dropout_p;
    ctx->saved_data["seed"] = seed;
    ctx->saved_data["impl"] = impl;
    return result;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto &q = saved[0], &k = saved[1], &v = saved[2];
    const auto mask = mask_or_undefined(ctx->saved_data["key_padding_mask"].toOptional<torch::Tensor>());
    const auto pr =
        make_problem(q, k, v, mask, ctx->saved_data["causal"].toBool(), ctx->saved_data["scale"].toDouble(),
                     ctx->saved_data["dropout_p"].toDouble(), ctx->saved_data["seed"].toInt());
    const auto out = saved[3].reshape({pr.n(), pr.tq(), -1});                    // [N, Tq, Dv]
    const auto grad_out = grads[0].reshape({pr.n(), pr.tq(), -1}).contiguous();  // [N, Tq, Dv]
    auto [dq, dk, dv] = static_cast<AttentionKind>(ctx->saved_data["impl"].toInt()) == AttentionKind::Standard
                            ? standard_backward(pr, out, saved[4], grad_out)
                            : memory_efficient_backward(pr, out, saved[4], grad_out);
    // One gradient per forward input; the mask and the scalars get none.
    return {dq.view(q.sizes()), dk.view(k.sizes()), dv.view(v.sizes()), torch::Tensor(),
            torch::Tensor(),    torch::Tensor(),    torch::Tensor(),    torch::Tensor()};
  }
};

torch::Tensor attention_autograd(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                 const c10::optional<torch::Tensor>& key_padding_mask, bool causal,
                                 c10::optional<double> scale, double dropout_p, c10::string_view impl) {
  const bool wants_grad =
      torch::GradMode::is_enabled() && (q.requires_grad() || k.requires_grad() || v.requires_grad());
  if (!wants_grad) {  // no graph: straight to the CPU/CUDA kernel, which saves nothing
    at::AutoDispatchBelowADInplaceOrView guard;
    return attention_op().call(q, k, v, key_padding_mask, causal, scale, dropout_p, impl);
  }
  const auto padding = mask_or_undefined(key_padding_mask);
  check_inputs(q, k, v, padding, dropout_p);
  const AttentionKind kind = kind_from_schema(impl);
  const double s = resolve_scale(scale, q.size(3));
  if (kind == AttentionKind::Reference) {  // composite ops: autograd records them
    const int64_t seed = dropout_p > 0 ? draw_dropout_seed() : 0;
    return reference_attention(q, k, v, padding, causal, s, dropout_p, seed);
  }
  return AttentionFunction::apply(q, k, v, key_padding_mask, causal, s, dropout_p,
                                  static_cast<int64_t>(kind));
}

}  // namespace

const c10::TypedOperatorHandle<AttentionSignature>& attention_op() {
  static const auto op =
      c10::Dispatcher::singleton().findSchemaOrThrow("qkv::attention", "").typed<AttentionSignature>();
  return op;
}

}  // namespace qkv::detail

TORCH_LIBRARY(qkv, m) {
  m.def(
      "attention(Tensor q, Tensor k, Tensor v, Tensor? key_padding_mask, bool causal, "
      "float? scale, float dropout_p, str impl) -> Tensor");
}

TORCH_LIBRARY_IMPL(qkv, CPU, m) {
  m.impl("attention", &qkv::detail::attention_kernel);
}

TORCH_LIBRARY_IMPL(qkv, CUDA, m) {
  m.impl("attention", &qkv::detail::attention_kernel);
}

TORCH_LIBRARY_IMPL(qkv, Autograd, m) {
  m.impl("attention", &qkv::detail::attention_autograd);
}
