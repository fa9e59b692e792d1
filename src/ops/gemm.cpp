// Matrix products through oneDNN's sgemm (linear layers, attention tiles): see gemm.h.
//
// Dimensions: N = rows, I = in features, O = out features.
#include "ops/gemm.h"

#include <dlfcn.h>

#include <torch/autograd.h>
#include <torch/torch.h>

#include "ops/defer_signals.h"
#include "ops/precision.h"

namespace qkv {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

// oneDNN's C API (dnnl.h, oneDNN 2.x): row-major sgemm; returns dnnl_success = 0. Looked up at run
// time in the libdnnl.so.2 that libtorch_cpu loads, so no oneDNN headers or link flags are needed.
using DnnlSgemm = int (*)(char transa, char transb, int64_t m, int64_t n, int64_t k, float alpha,
                          const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                          int64_t ldc);

DnnlSgemm dnnl_sgemm() {
  static const auto fn = reinterpret_cast<DnnlSgemm>(dlsym(RTLD_DEFAULT, "dnnl_sgemm"));
  return fn;
}

bool onednn_applies(const torch::Tensor& t) {
  return t.device().is_cpu() && t.scalar_type() == torch::kFloat && !t.is_sparse();
}

// The forward and backward of y = x Wᵀ + b as one Function:
//   y  = x Wᵀ + b      [N, O]
//   dx = dy W          [N, I]
//   dW = dyᵀ x         [O, I]
//   db = Σ_rows dy     [O]
// Under a low-precision policy (ops/precision.h) the products' operands x and W are bf16 copies made
// here and saved for backward, where dy meets them as a bf16 copy too; y, dx, dW and db are float32
// (oneDNN accumulates in fp32 and writes fp32), so the master weight gets an fp32 gradient directly.
// A layer without bias passes an empty [0] tensor: autograd Functions in libtorch 1.x do not accept
// undefined tensor inputs.
struct LinearFunction : torch::autograd::Function<LinearFunction> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& weight,
                               const torch::Tensor& bias) {
    const int64_t in = weight.size(1), out = weight.size(0);
    auto x2 = product_input(x.reshape({-1, in})).contiguous();  // [N, I]
    auto w = product_weight(weight).contiguous();               // [O, I]
    torch::Tensor y;                                            // [N, O], float32
    const bool has_bias = bias.numel() > 0;
    if (has_bias) {
      y = bias.expand({x2.size(0), out}).contiguous();
      sgemm(false, true, x2, w, y, 1.0f, 1.0f);
    } else {
      y = torch::empty({x2.size(0), out}, weight.options());
      sgemm(false, true, x2, w, y);
    }
    ctx->save_for_backward({x2, w});
    ctx->saved_data["has_bias"] = has_bias;
    auto shape = x.sizes().vec();
    shape.back() = out;
    return y.view(shape);  // [..., O]
  }

  // dx is returned in float32; for an input that arrived in bf16 (attention's output under the bf16
  // policy) autograd's engine hands it on in the input's dtype.
  static tensor_list backward(AutogradContext* ctx, tensor_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const auto& x2 = saved[0];                                          // [N, I]
    const auto& w = saved[1];                                           // [O, I]
    auto dy32 = grad_outputs[0].reshape({-1, w.size(0)}).contiguous();  // [N, O], float32
    auto dy = match_dtype(dy32, w);                                     // [N, O], as the operands
    torch::Tensor dx, dw, db;
    if (ctx->needs_input_grad(0)) {
      dx = torch::empty({dy.size(0), w.size(1)}, dy32.options());  // [N, I] = dy W
      sgemm(false, false, dy, w, dx);
      auto shape = grad_outputs[0].sizes().vec();
      shape.back() = w.size(1);
      dx = dx.view(shape);
    }
    if (ctx->needs_input_grad(1)) {
      dw = torch::empty(w.sizes(), dy32.options());  // [O, I] = dyᵀ x
      sgemm(true, false, dy, x2, dw);
    }
    if (ctx->saved_data["has_bias"].toBool() && ctx->needs_input_grad(2)) db = dy32.sum(0);  // [O]
    return {dx, dw, db};
  }
};

}  // namespace

bool onednn_sgemm_available() {
  return dnnl_sgemm() != nullptr;
}

void sgemm(bool t_a, bool t_b, const torch::Tensor& a, const torch::Tensor& b, torch::Tensor& c, float alpha,
           float beta) {
  TORCH_CHECK(a.dim() == 2 && b.dim() == 2 && c.dim() == 2, "sgemm: matrices expected");
  TORCH_CHECK(a.is_contiguous() && b.is_contiguous() && c.is_contiguous(),
              "sgemm: contiguous matrices expected");
  const int64_t m = t_a ? a.size(1) : a.size(0);
  const int64_t k = t_a ? a.size(0) : a.size(1);
  const int64_t n = t_b ? b.size(0) : b.size(1);
  TORCH_CHECK((t_b ? b.size(1) : b.size(0)) == k && c.size(0) == m && c.size(1) == n, "sgemm: shapes ",
              a.sizes(), (t_a ? "ᵀ" : ""), " x ", b.sizes(), (t_b ? "ᵀ" : ""), " -> ", c.sizes(),
              " do not match");
  auto fn = dnnl_sgemm();
  const bool onednn = fn != nullptr && onednn_applies(a) && onednn_applies(b) && onednn_applies(c);
  if (!onednn || m == 0 || n == 0 || k == 0) {
    c.addmm_(t_a ? a.t() : a, t_b ? b.t() : b, beta, alpha);
    return;
  }
  const DeferSignals no_signals_inside_the_kernel;  // defer_signals.h
  const int status = fn(t_a ? 'T' : 'N', t_b ? 'T' : 'N', m, n, k, alpha, a.data_ptr<float>(), a.size(1),
                        b.data_ptr<float>(), b.size(1), beta, c.data_ptr<float>(), n);
  TORCH_CHECK(status == 0, "oneDNN sgemm failed with status ", status);
}

namespace {

// The leading dimension of the row-major matrices t[i] (rows contiguous, any row stride), or 0 when
// their layout is not row-major. A matrix with one row or one column has no meaningful stride there.
int64_t row_major_ld(const torch::Tensor& t) {
  const int64_t rows = t.size(1), cols = t.size(2);
  if (cols > 1 && t.stride(2) != 1) return 0;
  const int64_t ld = rows > 1 ? t.stride(1) : std::max<int64_t>(cols, 1);
  return ld >= std::max<int64_t>(cols, 1) ? ld : 0;
}

}  // namespace

void batched_gemm(bool t_a, bool t_b, const torch::Tensor& a, const torch::Tensor& b, torch::Tensor& c,
                  double alpha, double beta) {
  TORCH_CHECK(a.dim() == 3 && b.dim() == 3 && c.dim() == 3, "batched_gemm: 3-D tensors expected");
  const int64_t batch = c.size(0);
  const int64_t m = c.size(1), n = c.size(2), k = t_a ? a.size(1) : a.size(2);
  TORCH_CHECK(a.size(0) == batch && b.size(0) == batch && (t_a ? a.size(2) : a.size(1)) == m &&
                  (t_b ? b.size(1) : b.size(2)) == n && (t_b ? b.size(2) : b.size(1)) == k,
              "batched_gemm: shapes ", a.sizes(), (t_a ? "ᵀ" : ""), " x ", b.sizes(), (t_b ? "ᵀ" : ""),
              " -> ", c.sizes(), " do not match");
  auto fn = dnnl_sgemm();
  const int64_t lda = row_major_ld(a), ldb = row_major_ld(b), ldc = row_major_ld(c);
  const bool onednn = fn != nullptr && onednn_applies(a) && onednn_applies(b) && onednn_applies(c) &&
                      lda > 0 && ldb > 0 && ldc > 0 && m > 0 && n > 0 && k > 0;
  if (!onednn) {
    const auto op_a = t_a ? a.transpose(1, 2) : a, op_b = t_b ? b.transpose(1, 2) : b;
    if (beta == 0.0) {  // baddbmm_ would multiply C's old contents by 0, keeping NaN
      at::bmm_out(c, op_a, op_b);
      if (alpha != 1.0) c.mul_(alpha);
    } else {
      c.baddbmm_(op_a, op_b, beta, alpha);
    }
    return;
  }
  const float* pa = a.data_ptr<float>();
  const float* pb = b.data_ptr<float>();
  float* pc = c.data_ptr<float>();
  const DeferSignals no_signals_inside_the_kernel;  // defer_signals.h
  for (int64_t i = 0; i < batch; ++i) {
    const int status =
        fn(t_a ? 'T' : 'N', t_b ? 'T' : 'N', m, n, k, static_cast<float>(alpha), pa + i * a.stride(0), lda,
           pb + i * b.stride(0), ldb, static_cast<float>(beta), pc + i * c.stride(0), ldc);
    TORCH_CHECK(status == 0, "oneDNN sgemm failed with status ", status);
  }
}

torch::Tensor gemm_linear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias) {
  // oneDNN takes float32 weights with inputs in float32 or already in the products' dtype (attention's
  // output under bf16); fp16 (CUDA's) and every other case go through at::linear.
  const Precision precision = current_precision();
  const bool input_fits = x.scalar_type() == torch::kFloat || x.scalar_type() == scalar_type(precision);
  const bool use_onednn = onednn_sgemm_available() && precision != Precision::Fp16 && x.is_cpu() &&
                          !x.is_sparse() && input_fits && onednn_applies(weight) &&
                          (!bias.defined() || onednn_applies(bias)) && x.dim() >= 1 && x.numel() > 0;
  if (!use_onednn)
    return product_result(torch::linear(product_input(x), product_weight(weight), product_weight(bias)));
  return LinearFunction::apply(x, weight, bias.defined() ? bias : torch::empty({0}, weight.options()));
}

}  // namespace qkv
