// Matrix products through oneDNN's sgemm and gemm_bf16bf16f32 (linear layers, attention tiles): see
// gemm.h.
//
// Dimensions: N = rows, I = in features, O = out features.
#include "ops/gemm.h"

#include <dlfcn.h>

#include <vector>

#include <torch/autograd.h>
#include <torch/torch.h>

#include "ops/defer_signals.h"
#include "ops/precision.h"

namespace qkv {

// A transposed weight: the weight it was made from (kept alive, so that its storage cannot be reused
// by another tensor), the weight's version when copied, and the copy [I, O].
struct TransposedWeight {
  torch::Tensor source;
  int64_t version;
  torch::Tensor transposed;  // [I, O], rows padded (padded_transpose)
};

struct FixedWeightsScope::State {
  std::vector<TransposedWeight> weights;  // a few dozen: a linear search is cheaper than a hash
};

namespace {

thread_local FixedWeightsScope::State* innermost_fixed = nullptr;  // the outermost scope's

// Wᵀ as an [I, O] view with padded rows (padded_row_length): with rows exactly O = 512, 2048 or
// 32,000 apart, oneDNN's sgemm ran x W' at half its speed on an AVX2 CPU (Zen 3, 32 rows, I = 512,
// O = 2048: 84 GFLOP/s; padded, 184; x Wᵀ from W as stored, 154).
torch::Tensor padded_transpose(const torch::Tensor& w) {
  const int64_t out = w.size(0), in = w.size(1);
  const int64_t ld = padded_row_length(out, w.element_size());
  auto transposed = torch::empty({in, ld}, w.options()).narrow(1, 0, out);  // [I, O]
  transposed.copy_(w.t());
  return transposed;
}

// W' = Wᵀ stored [I, O] (rows padded, above) for a product x W' with `rows` rows, or undefined where
// the plain product serves as well: outside a FixedWeightsScope, with many rows, or when autograd
// records the weight. `w` is a contiguous [O, I] operand (a parameter, a bf16 copy of one, or rows of
// either).
torch::Tensor transposed_weight(const torch::Tensor& w, int64_t rows) {
  if (innermost_fixed == nullptr || rows > FixedWeightsScope::kFewRows) return {};
  if (torch::GradMode::is_enabled() && w.requires_grad()) return {};
  const int64_t version = w._version();
  for (auto& entry : innermost_fixed->weights) {
    // The same view of the same storage (cross-attention narrows W_Q and W_K/W_V from one parameter).
    const auto& e = entry.source;
    if (e.data_ptr() != w.data_ptr() || e.sizes() != w.sizes() || e.scalar_type() != w.scalar_type()) continue;
    if (entry.version != version) entry = {w, version, padded_transpose(w)};  // updated in place
    return entry.transposed;
  }
  innermost_fixed->weights.push_back({w, version, padded_transpose(w)});
  return innermost_fixed->weights.back().transposed;
}

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

// oneDNN's C API (dnnl.h, oneDNN 2.x): row-major products C = α·op(A)·op(B) + β·C, returning
// dnnl_success = 0. Looked up at run time in the libdnnl.so.2 that libtorch_cpu loads, so no oneDNN
// headers or link flags are needed. bfloat16 travels as its 16 raw bits.
using DnnlSgemm = int (*)(char transa, char transb, int64_t m, int64_t n, int64_t k, float alpha,
                          const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                          int64_t ldc);
using DnnlGemmBf16 = int (*)(char transa, char transb, int64_t m, int64_t n, int64_t k, float alpha,
                             const uint16_t* a, int64_t lda, const uint16_t* b, int64_t ldb, float beta,
                             float* c, int64_t ldc);

DnnlSgemm dnnl_sgemm() {
  static const auto fn = reinterpret_cast<DnnlSgemm>(dlsym(RTLD_DEFAULT, "dnnl_sgemm"));
  return fn;
}

// gemm_bf16bf16f32 needs AVX-512 (it emulates the bf16 dot products on CPUs without AVX512-BF16) and
// answers dnnl_unimplemented elsewhere: one 1×1×1 product at first use says whether it runs here.
DnnlGemmBf16 dnnl_gemm_bf16() {
  static const DnnlGemmBf16 fn = []() -> DnnlGemmBf16 {
    auto found = reinterpret_cast<DnnlGemmBf16>(dlsym(RTLD_DEFAULT, "dnnl_gemm_bf16bf16f32"));
    if (found == nullptr) return nullptr;
    const uint16_t one = 0x3f80;  // 1.0 in bfloat16
    float c = 0.0f;
    const DeferSignals no_signals_inside_the_kernel;  // defer_signals.h
    return found('N', 'N', 1, 1, 1, 1.0f, &one, 1, &one, 1, 0.0f, &c, 1) == 0 && c == 1.0f ? found : nullptr;
  }();
  return fn;
}

bool is_low_precision(torch::ScalarType t) {
  return t == torch::kBFloat16 || t == torch::kHalf;
}

// The dtype and device rules of gemm.h, checked once per call.
void check_operands(const char* who, const torch::Tensor& a, const torch::Tensor& b, const torch::Tensor& c) {
  const auto ta = a.scalar_type(), tc = c.scalar_type();
  TORCH_CHECK(b.scalar_type() == ta && (tc == ta || (tc == torch::kFloat && is_low_precision(ta))), who,
              ": dtypes ", ta, " x ", b.scalar_type(), " -> ", tc,
              " are not supported (A and B share one dtype; C has it too, or is float32 when A and B are "
              "bfloat16 or float16)");
  TORCH_CHECK(b.device() == a.device() && c.device() == a.device(), who,
              ": A, B and C must be on one device");
}

// Which kernel runs a product of the given operands (already checked).
enum class Kernel { OneDnnFloat, OneDnnBf16, Torch };

Kernel choose_kernel(const torch::Tensor& a, const torch::Tensor& c) {
  if (!a.device().is_cpu() || a.is_sparse() || c.scalar_type() != torch::kFloat) return Kernel::Torch;
  if (a.scalar_type() == torch::kFloat && dnnl_sgemm() != nullptr) return Kernel::OneDnnFloat;
  if (a.scalar_type() == torch::kBFloat16 && dnnl_gemm_bf16() != nullptr) return Kernel::OneDnnBf16;
  return Kernel::Torch;
}

// One row-major product through oneDNN; `a` and `b` point at float or bfloat16 elements as `kernel`
// says. The caller holds a DeferSignals guard.
void onednn_gemm(Kernel kernel, bool t_a, bool t_b, int64_t m, int64_t n, int64_t k, float alpha,
                 const void* a, int64_t lda, const void* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  const char ta = t_a ? 'T' : 'N', tb = t_b ? 'T' : 'N';
  const int status = kernel == Kernel::OneDnnFloat
                         ? dnnl_sgemm()(ta, tb, m, n, k, alpha, static_cast<const float*>(a), lda,
                                        static_cast<const float*>(b), ldb, beta, c, ldc)
                         : dnnl_gemm_bf16()(ta, tb, m, n, k, alpha, static_cast<const uint16_t*>(a), lda,
                                            static_cast<const uint16_t*>(b), ldb, beta, c, ldc);
  TORCH_CHECK(status == 0, "oneDNN ", kernel == Kernel::OneDnnFloat ? "sgemm" : "gemm_bf16bf16f32",
              " failed with status ", status);
}

// A and B in C's dtype for the torch fallback: the mixed case computes in float32.
torch::Tensor in_dtype_of(const torch::Tensor& x, const torch::Tensor& c) {
  return x.scalar_type() == c.scalar_type() ? x : x.to(c.scalar_type());
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
    float beta = 0.0f;
    if (has_bias) {
      // A copy, never a view: with one row the expanded bias is already contiguous, and contiguous()
      // would hand back the bias itself for the product to accumulate into.
      y = bias.expand({x2.size(0), out}).clone(at::MemoryFormat::Contiguous);
      beta = 1.0f;
    } else {
      y = torch::empty({x2.size(0), out}, weight.options());
    }
    const auto w_t = transposed_weight(w, x2.size(0));  // [I, O] or undefined (FixedWeightsScope)
    if (w_t.defined()) {
      sgemm(false, false, x2, w_t, y, 1.0f, beta);
    } else {
      sgemm(false, true, x2, w, y, 1.0f, beta);
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

FixedWeightsScope::FixedWeightsScope() {
  if (innermost_fixed != nullptr) return;  // inside another scope, whose copies serve this one too
  state_ = std::make_unique<State>();
  innermost_fixed = state_.get();
}

FixedWeightsScope::~FixedWeightsScope() {
  if (state_) innermost_fixed = nullptr;
}

int64_t padded_row_length(int64_t cols, int64_t element_size) {
  const int64_t per_line = std::max<int64_t>(64 / element_size, 1);  // elements in a cache line
  int64_t lines = (std::max<int64_t>(cols, 1) + per_line - 1) / per_line;
  if (lines % 2 == 0) ++lines;
  return lines * per_line;
}

bool onednn_sgemm_available() {
  return dnnl_sgemm() != nullptr;
}

bool onednn_bf16_gemm_available() {
  return dnnl_gemm_bf16() != nullptr;
}

namespace {

// A matrix whose rows are contiguous and do not overlap: its elements are t[i][j] at i·ld + j.
bool rows_contiguous(const torch::Tensor& t) {
  return (t.size(1) <= 1 || t.stride(1) == 1) && (t.size(0) <= 1 || t.stride(0) >= t.size(1));
}

int64_t leading_dimension(const torch::Tensor& t) {
  return t.size(0) > 1 ? t.stride(0) : std::max<int64_t>(t.size(1), 1);
}

}  // namespace

void sgemm(bool t_a, bool t_b, const torch::Tensor& a, const torch::Tensor& b, torch::Tensor& c, float alpha,
           float beta) {
  TORCH_CHECK(a.dim() == 2 && b.dim() == 2 && c.dim() == 2, "sgemm: matrices expected");
  TORCH_CHECK(rows_contiguous(a) && rows_contiguous(b) && c.is_contiguous(),
              "sgemm: A and B need contiguous rows and C must be contiguous");
  check_operands("sgemm", a, b, c);
  const int64_t m = t_a ? a.size(1) : a.size(0);
  const int64_t k = t_a ? a.size(0) : a.size(1);
  const int64_t n = t_b ? b.size(0) : b.size(1);
  TORCH_CHECK((t_b ? b.size(1) : b.size(0)) == k && c.size(0) == m && c.size(1) == n, "sgemm: shapes ",
              a.sizes(), (t_a ? "ᵀ" : ""), " x ", b.sizes(), (t_b ? "ᵀ" : ""), " -> ", c.sizes(),
              " do not match");
  const Kernel kernel = choose_kernel(a, c);
  if (kernel == Kernel::Torch || m == 0 || n == 0 || k == 0) {
    const auto a_c = in_dtype_of(a, c), b_c = in_dtype_of(b, c);
    const auto op_a = t_a ? a_c.t() : a_c, op_b = t_b ? b_c.t() : b_c;
    if (beta == 0.0f) {  // C's old contents ignored, NaN included
      at::mm_out(c, op_a, op_b);
      if (alpha != 1.0f) c.mul_(alpha);
    } else {
      c.addmm_(op_a, op_b, beta, alpha);
    }
    return;
  }
  const DeferSignals no_signals_inside_the_kernel;  // defer_signals.h
  onednn_gemm(kernel, t_a, t_b, m, n, k, alpha, a.data_ptr(), leading_dimension(a), b.data_ptr(),
              leading_dimension(b), beta, c.data_ptr<float>(), n);
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
  check_operands("batched_gemm", a, b, c);
  const int64_t batch = c.size(0);
  const int64_t m = c.size(1), n = c.size(2), k = t_a ? a.size(1) : a.size(2);
  TORCH_CHECK(a.size(0) == batch && b.size(0) == batch && (t_a ? a.size(2) : a.size(1)) == m &&
                  (t_b ? b.size(1) : b.size(2)) == n && (t_b ? b.size(2) : b.size(1)) == k,
              "batched_gemm: shapes ", a.sizes(), (t_a ? "ᵀ" : ""), " x ", b.sizes(), (t_b ? "ᵀ" : ""),
              " -> ", c.sizes(), " do not match");
  const Kernel kernel = choose_kernel(a, c);
  const int64_t lda = row_major_ld(a), ldb = row_major_ld(b), ldc = row_major_ld(c);
  const bool onednn = kernel != Kernel::Torch && lda > 0 && ldb > 0 && ldc > 0 && m > 0 && n > 0 && k > 0;
  if (!onednn) {
    const auto a_c = in_dtype_of(a, c), b_c = in_dtype_of(b, c);
    const auto op_a = t_a ? a_c.transpose(1, 2) : a_c, op_b = t_b ? b_c.transpose(1, 2) : b_c;
    if (beta == 0.0) {  // baddbmm_ would multiply C's old contents by 0, keeping NaN
      at::bmm_out(c, op_a, op_b);
      if (alpha != 1.0) c.mul_(alpha);
    } else {
      c.baddbmm_(op_a, op_b, beta, alpha);
    }
    return;
  }
  const auto* pa = static_cast<const char*>(a.data_ptr());
  const auto* pb = static_cast<const char*>(b.data_ptr());
  float* pc = c.data_ptr<float>();
  const int64_t step_a = a.stride(0) * a.element_size(), step_b = b.stride(0) * b.element_size();
  const DeferSignals no_signals_inside_the_kernel;  // defer_signals.h
  for (int64_t i = 0; i < batch; ++i) {
    onednn_gemm(kernel, t_a, t_b, m, n, k, static_cast<float>(alpha), pa + i * step_a, lda, pb + i * step_b,
                ldb, static_cast<float>(beta), pc + i * c.stride(0), ldc);
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
