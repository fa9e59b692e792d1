// Matrix products through oneDNN on the CPU: the linear layers (y = x Wᵀ + b) and the per-head
// products of the attention kernels, in float32 (oneDNN's sgemm) or with bfloat16 inputs and float32
// accumulation and output (oneDNN's gemm_bf16bf16f32).
//
// Why: on CPUs that Debian's OpenBLAS 0.3.21 does not know (AMD Zen 4, for one), OpenBLAS falls back
// to its Haswell (AVX2) kernels, while oneDNN, which libtorch already loads (libdnnl.so.2), uses
// AVX-512. For the Transformer's shapes that is about twice the FLOP rate on one core (qkv bench
// train prints the figures). oneDNN threads with OpenMP, i.e. with ATen's intra-op thread count.
//
// gemm_linear() is a drop-in for torch::linear: the same shapes, the same gradients (forward and backward
// are one autograd Function, below), and it falls back to torch::linear wherever oneDNN does not
// apply: CUDA tensors, float16, weights that are not float32, or a libtorch without libdnnl's C API
// (CUDA builds link oneDNN statically and hide it). Its operands' precision is the policy's
// (ops/precision.h).
//
// Dimensions: N = rows (all leading dimensions of x flattened), I = in features, O = out features.
#pragma once

#include <memory>

#include <torch/types.h>

namespace qkv {

// x [..., I], weight [O, I], bias [O] or undefined -> [..., O]. The product runs in the precision of
// the thread's PrecisionScope (ops/precision.h): under bf16, x and W enter it as bf16 copies and the
// result (and every gradient) is float32.
torch::Tensor gemm_linear(const torch::Tensor& x, const torch::Tensor& weight,
                          const torch::Tensor& bias = {});

// A scope (per thread, nestable) in which the weights stay as they are, as in decoding. Inside it,
// a linear layer with few rows (at most kFewRows) and no gradient to record multiplies by a
// transposed copy of its weight, [I, O] with its rows a little more than O apart (gemm.cpp says
// why), made once per scope and weight: x W' with W' = Wᵀ stored. oneDNN's sgemm is slow at x Wᵀ
// with W as stored ([O, I]) when x has few rows: for 32 rows, I = 512, O = 1536 it ran 135 GFLOP/s
// on a Zen 4's 2 cores (AVX-512) against 470 for x W', and the output projection (O = 32,000) 125
// against 350; on a Zen 3's (AVX2) 110 against 122 and 85 against 123. With many rows the two are
// within noise (433 and 424 at 1,536 rows), so training never needs the copies. A weight updated in
// place inside the scope (its version counter moves) gets a fresh copy. Nested scopes share the
// outermost one's copies, so a scope around many decoding calls (a test set's batches) makes each
// copy once.
class FixedWeightsScope {
 public:
  static constexpr int64_t kFewRows = 256;
  FixedWeightsScope();
  ~FixedWeightsScope();
  FixedWeightsScope(const FixedWeightsScope&) = delete;
  FixedWeightsScope& operator=(const FixedWeightsScope&) = delete;

  struct State;

 private:
  std::unique_ptr<State> state_;
};

// A row length, in elements, for a matrix that products read down its columns: at least `cols`
// elements of `element_size` bytes, rounded up to an odd number of 64-byte cache lines. Rows exactly
// 512 or 1,024 floats long (the usual widths) lie a multiple of 1 KiB apart, so a column's elements
// fall into a few cache sets and evict one another: on a Zen 3, one thread, oneDNN's sgemm ran
// Pᵀ·dO (P [32, 1,024] rows 1,024 apart, dO [32, 64]) at 52 GFLOP/s, and at 92 with the rows
// 1,040 apart. Such a matrix is allocated [rows, padded_row_length(cols)] and used through
// narrow(1, 0, cols).
int64_t padded_row_length(int64_t cols, int64_t element_size);

// True when oneDNN's sgemm was found (then float32 CPU products go through it).
bool onednn_sgemm_available();
// True when oneDNN's gemm_bf16bf16f32 was found and runs on this CPU (then bfloat16 × bfloat16 →
// float32 CPU products go through it: AVX512-BF16 instructions where the CPU has them).
bool onednn_bf16_gemm_available();

// The dtypes both products accept: A and B share one dtype, and C has that dtype too, or C is
// float32 while A and B are bfloat16 or float16 ("mixed": the products of the low-precision inputs
// are accumulated and returned in float32, never rounded to the inputs' precision on the way).
//
// Row-major C = α·op(A)·op(B) + β·C, op = transpose when t_* is true, on matrices whose rows are
// contiguous (A and B may have rows further apart than their length; C is contiguous): A is
// [M, K] (or [K, M] transposed), B is [K, N] (or [N, K]), C is [M, N]. Paths: float32 on the CPU
// through oneDNN's sgemm, mixed bfloat16 on the CPU through oneDNN's gemm_bf16bf16f32, everything
// else (other dtypes, CUDA, no oneDNN) through torch::addmm_, with A and B upcast to float32 in the
// mixed case. With β = 0, C's old contents are ignored (NaN included).
void sgemm(bool t_a, bool t_b, const torch::Tensor& a, const torch::Tensor& b, torch::Tensor& c,
           float alpha = 1.0f, float beta = 0.0f);

// The batched form over the first dimension: C[i] = α·op(A[i])·op(B[i]) + β·C[i] for 3-D tensors on
// any device, with the dtypes above. Each matrix may be a strided view (a tile of a larger tensor) as
// long as its rows are contiguous; float32 and mixed bfloat16 CPU matrices of that kind go through
// oneDNN, one call per matrix, everything else through at::bmm / at::baddbmm (A and B upcast to
// float32 in the mixed case). With β = 0, C's old contents are ignored (NaN included).
void batched_gemm(bool t_a, bool t_b, const torch::Tensor& a, const torch::Tensor& b, torch::Tensor& c,
                  double alpha = 1.0, double beta = 0.0);

}  // namespace qkv
