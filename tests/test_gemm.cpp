// qkv::gemm_linear and qkv::sgemm (src/ops/gemm.h) against torch::linear / torch::mm: values and
// gradients with a random upstream gradient, with and without bias, for 2-D and 3-D inputs, and the
// fallback for other dtypes; qkv::batched_gemm on strided tiles against torch::bmm.
#include <atomic>
#include <csignal>
#include <limits>
#include <thread>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "ops/gemm.h"

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

TEST(BatchedGemm, RefusesMismatchedShapes) {
  auto a = torch::randn({2, 3, 4}), b = torch::randn({2, 5, 6});
  auto c = torch::empty({2, 3, 6});
  EXPECT_THROW(batched_gemm(false, false, a, b, c), c10::Error);
}

// oneDNN's generated sgemm kernels move the stack pointer into the heap (ops/defer_signals.h): a
// signal delivered inside one used to corrupt the heap within a few hundred calls. Under a storm of
// signals sent to the whole process (any thread may take them), every product must still be exact
// and the process alive.
extern "C" void count_signal(int) {}

TEST(Sgemm, ExactAndAliveUnderASignalStorm) {
  struct sigaction action {
  }, previous{};
  action.sa_handler = count_signal;
  sigemptyset(&action.sa_mask);
  ASSERT_EQ(sigaction(SIGUSR2, &action, &previous), 0);
  torch::manual_seed(9);
  const auto a = torch::randn({256, 192}), b = torch::randn({192, 224});
  auto expected = torch::empty({256, 224});
  sgemm(false, false, a, b, expected);
  std::atomic<bool> done{false};
  std::thread storm([&] {
    while (!done) {
      ::kill(::getpid(), SIGUSR2);
      std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
  });
  int64_t mismatches = 0;
  for (int i = 0; i < 3000; ++i) {
    auto c = torch::full({256, 224}, std::numeric_limits<float>::quiet_NaN());
    sgemm(false, false, a, b, c);
    mismatches += torch::equal(c, expected) ? 0 : 1;  // the same kernel on the same data: bit for bit
  }
  done = true;
  storm.join();
  sigaction(SIGUSR2, &previous, nullptr);
  EXPECT_EQ(mismatches, 0);
}

}  // namespace
}  // namespace qkv
