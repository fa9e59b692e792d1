// qkv::gemm_linear and qkv::sgemm (src/ops/gemm.h) against torch::linear / torch::mm: values and
// gradients with a random upstream gradient, with and without bias, for 2-D and 3-D inputs, and the
// fallback for other dtypes; qkv::batched_gemm on strided tiles against torch::bmm; bfloat16 (and
// float16) inputs with a float32 output against float64 products.
#include <limits>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "ops/gemm.h"
#include "support.h"

namespace qkv {
namespace {

// float32 products of length ≤ 512 summed in a different order: relative 1e-5 of the output scale.
void expect_close(const torch::Tensor& actual, const torch::Tensor& expected, const char* what) {
  const double scale = std::max(expected.abs().max().item<double>(), 1.0);
  const double err = (actual - expected).abs().max().item<double>();
  EXPECT_LT(err, 1e-5 * scale) << what << ": max error " << err;
}

// Without oneDNN's sgemm, gemm_linear is torch::linear itself: comparing the two would pass without
// testing anything, so the Linear tests skip instead (and say why).
constexpr const char* kNoOneDnn =
    "oneDNN's sgemm not found: gemm_linear is torch::linear, nothing to compare";

void check_linear(const std::vector<int64_t>& x_shape, int64_t out, bool with_bias) {
  if (!onednn_sgemm_available()) GTEST_SKIP() << kNoOneDnn;
  torch::manual_seed(3);
  const int64_t in = x_shape.back();
  auto x = torch::randn(x_shape).requires_grad_(true);
  auto w = torch::randn({out, in}).requires_grad_(true);
  auto b = with_bias ? torch::randn({out}).requires_grad_(true) : torch::Tensor();
  auto x_ref = x.detach().clone().requires_grad_(true);
  auto w_ref = w.detach().clone().requires_grad_(true);
  auto b_ref = with_bias ? b.detach().clone().requires_grad_(true) : torch::Tensor();

  auto y = gemm_linear(x, w, b);
  auto y_ref = torch::linear(x_ref, w_ref, b_ref);
  ASSERT_EQ(y.sizes(), y_ref.sizes());
  expect_close(y, y_ref, "output");
  auto upstream = torch::randn_like(y_ref);
  (y * upstream).sum().backward();
  (y_ref * upstream).sum().backward();
  expect_close(x.grad(), x_ref.grad(), "dx");
  expect_close(w.grad(), w_ref.grad(), "dW");
  if (with_bias) expect_close(b.grad(), b_ref.grad(), "db");
}

TEST(Linear, MatchesTorchLinear2d) {
  check_linear({37, 64}, 48, true);
}
TEST(Linear, MatchesTorchLinear3dWithoutBias) {
  check_linear({4, 9, 32}, 80, false);
}
TEST(Linear, MatchesTorchLinearLargeShapes) {
  check_linear({8, 64, 256}, 512, true);
}

TEST(Linear, OnlyTheNeededGradientsAreComputed) {
  if (!onednn_sgemm_available()) GTEST_SKIP() << kNoOneDnn;
  auto x = torch::randn({5, 8});
  auto w = torch::randn({3, 8}).requires_grad_(true);
  gemm_linear(x, w).sum().backward();
  EXPECT_TRUE(w.grad().defined());
  EXPECT_FALSE(x.grad().defined());
}

// One row (a decoding step of one sentence): the bias broadcast over it is the bias itself, and the
// product once accumulated into it, so every later call saw a corrupted bias.
TEST(Linear, OneRowLeavesTheBiasAlone) {
  torch::NoGradGuard no_grad;  // as in decoding, where nothing else would notice
  auto x = torch::randn({1, 8});
  auto w = torch::randn({3, 8});
  auto b = torch::randn({3});
  const auto bias_before = b.clone();
  const auto first = gemm_linear(x, w, b);
  EXPECT_TRUE(torch::equal(b, bias_before));
  EXPECT_TRUE(torch::equal(gemm_linear(x, w, b), first));
  expect_close(first, torch::linear(x, w, bias_before), "output");
}

// Inside a FixedWeightsScope the few-row products multiply by transposed copies of the weights: the
// same values as torch::linear, for the whole weight and for rows narrowed from it (cross-attention's
// W_Q), with and without bias; a weight changed in place inside the scope is seen at once; the
// many-row products and a product whose weight autograd records take the plain path and agree too.
TEST(Linear, FixedWeightsScopeGivesTheSameProducts) {
  if (!onednn_sgemm_available()) GTEST_SKIP() << kNoOneDnn;
  torch::manual_seed(6);
  auto w = torch::randn({24, 40});
  auto b = torch::randn({24});
  auto few = torch::randn({2, 3, 40});  // 6 rows
  auto many = torch::randn({FixedWeightsScope::kFewRows + 1, 40});
  {
    torch::NoGradGuard no_grad;
    const FixedWeightsScope scope;
    expect_close(gemm_linear(few, w, b), torch::linear(few, w, b), "few rows");
    expect_close(gemm_linear(few, w.narrow(0, 8, 16)), torch::linear(few, w.narrow(0, 8, 16)), "narrowed rows");
    expect_close(gemm_linear(many, w, b), torch::linear(many, w, b), "many rows");
    const FixedWeightsScope nested;  // shares the outer copies
    w.mul_(2.0);                     // an in-place update moves the version counter
    expect_close(gemm_linear(few, w, b), torch::linear(few, w, b), "after an in-place update");
  }
  const FixedWeightsScope scope;
  auto w_trained = w.clone().requires_grad_(true);
  auto y = gemm_linear(few, w_trained, b);
  expect_close(y, torch::linear(few, w, b), "recorded weight");
  y.sum().backward();
  expect_close(w_trained.grad(), torch::ones({2 * 3, 24}).t().mm(few.reshape({6, 40})), "its gradient");
}

TEST(Linear, DoubleFallsBackToTorchLinear) {
  auto x = torch::randn({6, 5}, torch::kDouble);
  auto w = torch::randn({4, 5}, torch::kDouble);
  EXPECT_TRUE(torch::allclose(gemm_linear(x, w), torch::linear(x, w)));
}

TEST(Sgemm, AllTransposesMatchMm) {
  std::cout << "[linear] oneDNN sgemm " << (onednn_sgemm_available() ? "found" : "not found: torch fallback")
            << "\n";
  torch::manual_seed(4);
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      auto a = ta ? torch::randn({7, 5}) : torch::randn({5, 7});  // op(A) [5, 7]
      auto b = tb ? torch::randn({3, 7}) : torch::randn({7, 3});  // op(B) [7, 3]
      auto c = torch::randn({5, 3});
      auto expected = 0.5 * c + 2.0 * torch::mm(ta ? a.t() : a, tb ? b.t() : b);
      sgemm(ta, tb, a, b, c, 2.0f, 0.5f);
      expect_close(c, expected, "sgemm");
    }
  }
}

// A and B may be views whose rows lie further apart than their length (the padded transposed
// weights of a FixedWeightsScope are such views): every transpose against torch::mm.
TEST(Sgemm, RowStridedOperandsMatchMm) {
  torch::manual_seed(7);
  auto rows_of = [](int64_t rows, int64_t cols) { return torch::randn({rows, cols + 5}).narrow(1, 0, cols); };
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      auto a = ta ? rows_of(7, 5) : rows_of(5, 7);  // op(A) [5, 7]
      auto b = tb ? rows_of(3, 7) : rows_of(7, 3);  // op(B) [7, 3]
      ASSERT_FALSE(a.is_contiguous());
      auto c = torch::empty({5, 3});
      sgemm(ta, tb, a, b, c);
      expect_close(c, torch::mm(ta ? a.t() : a, tb ? b.t() : b), "row-strided sgemm");
    }
  }
}

// Padded rows hold the row and end on an odd number of 64-byte cache lines (never a multiple of
// 128 bytes, so never of 1 KiB), in float32 and bfloat16, and pad as little as that allows.
TEST(Sgemm, PaddedRowLengthsAreAnOddNumberOfCacheLines) {
  for (int64_t element_size : {4, 2}) {
    const int64_t per_line = 64 / element_size;
    for (int64_t cols : {1, 15, 16, 17, 31, 32, 33, 64, 512, 1000, 1024, 2048, 32000}) {
      const int64_t ld = padded_row_length(cols, element_size);
      EXPECT_GE(ld, cols);
      EXPECT_EQ(ld % per_line, 0) << cols;
      EXPECT_EQ((ld / per_line) % 2, 1) << cols;
      EXPECT_LT(ld, cols + 2 * per_line) << cols;
    }
  }
  EXPECT_EQ(padded_row_length(512, 4), 528);
  EXPECT_EQ(padded_row_length(1000, 4), 1008);  // 63 lines: already odd
}

// batched_gemm on tiles of larger tensors (row strides wider than the rows), every transpose, β 0
// over a NaN-filled C (C's old contents must be ignored) and β 1, in float32 (oneDNN) and float64.
TEST(BatchedGemm, StridedTilesMatchBmm) {
  torch::manual_seed(5);
  for (auto dtype : {torch::kFloat, torch::kDouble}) {
    for (bool ta : {false, true}) {
      for (bool tb : {false, true}) {
        for (double beta : {0.0, 1.0}) {
          auto a_big = torch::randn({3, 9, 11}, dtype), b_big = torch::randn({3, 10, 12}, dtype);
          auto a = ta ? a_big.slice(1, 1, 8).slice(2, 2, 7)
                      : a_big.slice(1, 2, 7).slice(2, 1, 8);  // op(A) [3, 5, 7]
          auto b = tb ? b_big.slice(1, 0, 4).slice(2, 3, 10)
                      : b_big.slice(1, 1, 8).slice(2, 0, 4);  // op(B) [3, 7, 4]
          auto c_big = torch::randn({3, 6, 9}, dtype);
          if (beta == 0.0) c_big.fill_(std::numeric_limits<double>::quiet_NaN());
          auto c = c_big.slice(1, 1, 6).slice(2, 2, 6);  // [3, 5, 4]
          auto expected = torch::bmm(ta ? a.transpose(1, 2) : a, tb ? b.transpose(1, 2) : b).mul(0.5);
          if (beta != 0.0) expected += beta * c;
          batched_gemm(ta, tb, a, b, c, 0.5, beta);
          expect_close(c, expected, "batched_gemm");
          EXPECT_TRUE(c_big.slice(2, 0, 2).isnan().all().item<bool>() || beta != 0.0) << "wrote outside C";
        }
      }
    }
  }
}

// Low-precision inputs with a float32 C, against the same product in float64 of the same values.
//
// Tolerance, element by element (a rigorous first-order bound, not a fitted figure): a bfloat16 value
// has an 8-bit significand and a float16 one 11 bits, so the product of two of them has at most 16
// (22) significant bits and is exact in float32's 24. What remains is float32 arithmetic: the K-term
// sum and the α and β·C steps, each operation a relative rounding of at most w = 2^-24, hence
//   |C − C₆₄| ≤ (K + 3)·w·(|α|·|op(A)|·|op(B)| + |β|·|C₀|)     (Higham, "Accuracy and Stability", §3.5)
// with |X| elementwise and the product of the absolute values computed in float64. This is ~2^-14 of
// the scale for K = 512, while a product that rounded its result (or its sum) to bfloat16 would be
// off by up to 2^-9 of it: the bound tells fp32 accumulation from bf16 accumulation.
::testing::AssertionResult within_float32_accumulation(const torch::Tensor& c, const torch::Tensor& expected,
                                                       const torch::Tensor& magnitude, int64_t k) {
  const double w = std::ldexp(1.0, -24);
  const auto bound = magnitude * ((k + 3) * w);
  const auto ratio = ((c.to(torch::kDouble) - expected).abs() / bound.clamp_min(1e-300));
  const double worst = ratio.max().item<double>();
  if (worst <= 1.0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "error reaches " << worst << "x the float32 accumulation bound";
}

// sgemm and batched_gemm (on strided tiles, every transpose, β 0 over NaN and β 1) with bfloat16 and
// float16 inputs and a float32 C. bfloat16 runs through oneDNN's gemm_bf16bf16f32 where it runs; float16
// (and bfloat16 without oneDNN) through the upcasting torch fallback: the same contract for both.
TEST(BatchedGemm, LowPrecisionInputsAccumulateInFloat32) {
  std::cout << "[gemm] oneDNN gemm_bf16bf16f32 "
            << (onednn_bf16_gemm_available() ? "runs here" : "unavailable: torch fallback") << "\n";
  torch::manual_seed(6);
  const int64_t k = 512;  // a long sum, where float32 and bfloat16 accumulation differ most
  for (auto dtype : {torch::kBFloat16, torch::kHalf}) {
    for (bool ta : {false, true}) {
      for (bool tb : {false, true}) {
        for (double beta : {0.0, 1.0}) {
          // Tiles of larger tensors: op(A) [3, 30, K], op(B) [3, K, 28], C [3, 30, 28].
          auto a = ta ? torch::randn({3, k + 4, 40}).to(dtype).slice(1, 2, k + 2).slice(2, 3, 33)
                      : torch::randn({3, 31, k + 8}).to(dtype).slice(1, 1, 31).slice(2, 4, k + 4);
          auto b = tb ? torch::randn({3, 36, k + 6}).to(dtype).slice(1, 2, 30).slice(2, 3, k + 3)
                      : torch::randn({3, k + 2, 33}).to(dtype).slice(1, 1, k + 1).slice(2, 2, 30);
          auto c_big = torch::randn({3, 32, 31});
          if (beta == 0.0) c_big.fill_(std::numeric_limits<float>::quiet_NaN());
          auto c = c_big.slice(1, 1, 31).slice(2, 2, 30);  // [3, 30, 28]
          const auto op_a = (ta ? a.transpose(1, 2) : a).to(torch::kDouble);
          const auto op_b = (tb ? b.transpose(1, 2) : b).to(torch::kDouble);
          auto c0 = beta == 0.0 ? torch::zeros({3, 30, 28}, torch::kDouble) : c.to(torch::kDouble);
          const auto expected = torch::bmm(op_a, op_b).mul(0.75) + beta * c0;
          const auto magnitude = torch::bmm(op_a.abs(), op_b.abs()).mul(0.75) + beta * c0.abs();
          batched_gemm(ta, tb, a, b, c, 0.75, beta);
          EXPECT_TRUE(within_float32_accumulation(c, expected, magnitude, k))
              << c10::toString(dtype) << " ta " << ta << " tb " << tb << " beta " << beta;
          EXPECT_TRUE(c_big.slice(2, 0, 2).isnan().all().item<bool>() || beta != 0.0) << "wrote outside C";
        }
      }
    }
  }
}

TEST(Sgemm, LowPrecisionInputsAccumulateInFloat32) {
  torch::manual_seed(7);
  const int64_t k = 700;
  for (auto dtype : {torch::kBFloat16, torch::kHalf}) {
    for (bool ta : {false, true}) {
      for (bool tb : {false, true}) {
        auto a = (ta ? torch::randn({k, 45}) : torch::randn({45, k})).to(dtype);  // op(A) [45, K]
        auto b = (tb ? torch::randn({37, k}) : torch::randn({k, 37})).to(dtype);  // op(B) [K, 37]
        auto c = torch::randn({45, 37});
        const auto op_a = (ta ? a.t() : a).to(torch::kDouble), op_b = (tb ? b.t() : b).to(torch::kDouble);
        const auto c0 = c.to(torch::kDouble);
        const auto expected = 2.0 * torch::mm(op_a, op_b) - 0.5 * c0;
        const auto magnitude = 2.0 * torch::mm(op_a.abs(), op_b.abs()) + 0.5 * c0.abs();
        sgemm(ta, tb, a, b, c, 2.0f, -0.5f);
        EXPECT_TRUE(within_float32_accumulation(c, expected, magnitude, k))
            << c10::toString(dtype) << " ta " << ta << " tb " << tb;
      }
    }
  }
}

// The dtype rules of gemm.h: A and B share a dtype; C has it, or is float32 for bfloat16/float16.
TEST(Sgemm, RefusesMixedDtypesOutsideTheContract) {
  auto f = torch::randn({4, 4}), h = f.to(torch::kBFloat16), d = f.to(torch::kDouble);
  auto c = torch::empty({4, 4}), c_d = torch::empty({4, 4}, torch::kDouble);
  EXPECT_THROW(sgemm(false, false, h, f, c), c10::Error);    // A and B differ
  EXPECT_THROW(sgemm(false, false, h, h, c_d), c10::Error);  // bfloat16 into float64
  EXPECT_THROW(sgemm(false, false, f, f, c_d), c10::Error);  // float32 into float64
  auto c3 = torch::empty({1, 4, 4}, torch::kDouble);
  EXPECT_THROW(batched_gemm(false, false, d.unsqueeze(0), f.unsqueeze(0), c3), c10::Error);
  auto c_h = torch::empty({4, 4}, torch::kBFloat16);  // bfloat16 throughout: allowed (torch fallback)
  sgemm(false, false, h, h, c_h);
  EXPECT_TRUE(torch::allclose(c_h.to(torch::kFloat), torch::mm(h, h).to(torch::kFloat)));
}

TEST(BatchedGemm, RefusesMismatchedShapes) {
  auto a = torch::randn({2, 3, 4}), b = torch::randn({2, 5, 6});
  auto c = torch::empty({2, 3, 6});
  EXPECT_THROW(batched_gemm(false, false, a, b, c), c10::Error);
}

// oneDNN's generated sgemm kernels move the stack pointer into the heap (ops/defer_signals.h): a
// signal delivered inside one used to corrupt the heap within a few hundred calls. Under a storm of
// signals sent to the whole process (any thread may take them), every product must still be exact
// and the process alive.

// Runs `iterations` products of `dtype` inputs into float32 under the storm; returns the mismatches.
int64_t products_under_storm(torch::ScalarType dtype, int iterations) {
  torch::manual_seed(9);
  const auto a = torch::randn({256, 192}).to(dtype), b = torch::randn({192, 224}).to(dtype);
  auto expected = torch::empty({256, 224});
  sgemm(false, false, a, b, expected);
  int64_t mismatches = 0;
  for (int i = 0; i < iterations; ++i) {
    auto c = torch::full({256, 224}, std::numeric_limits<float>::quiet_NaN());
    sgemm(false, false, a, b, c);
    mismatches += torch::equal(c, expected) ? 0 : 1;  // the same kernel on the same data: bit for bit
  }
  return mismatches;
}

TEST(Sgemm, ExactAndAliveUnderASignalStorm) {
  int64_t float_mismatches = 0, bf16_mismatches = 0;
  {
    const test::SignalStorm storm(std::chrono::microseconds(20));
    float_mismatches = products_under_storm(torch::kFloat, 3000);    // oneDNN sgemm
    bf16_mismatches = products_under_storm(torch::kBFloat16, 3000);  // gemm_bf16bf16f32
  }
  EXPECT_EQ(float_mismatches, 0);
  EXPECT_EQ(bf16_mismatches, 0);
}

}  // namespace
}  // namespace qkv
