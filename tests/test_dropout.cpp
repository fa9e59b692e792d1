// Counter-based dropout (src/ops/dropout.h): the keep rate and scale, the mask's lack of structure,
// the two implementations' agreement, reproducibility from the default generator, and the gradient.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "ops/cpu_features.h"
#include "ops/dropout.h"
#include "support.h"

namespace qkv {
namespace {

// The mask of `count` elements as dropout applies it, from the vectorised path where it runs.
torch::Tensor applied_mask(int64_t count, double p, int64_t seed_for_generator) {
  torch::manual_seed(seed_for_generator);
  return counter_dropout(torch::ones({count}), p, /*training=*/true);
}

TEST(Dropout, KeepsOneMinusPAndRescales) {
  for (double p : {0.1, 0.3, 0.5}) {
    auto y = applied_mask(1 << 20, p, 7);
    const double scale = 1.0 / (1.0 - p);
    // Every element is 0 or exactly the float32 scale.
    EXPECT_TRUE(y.eq(0.0f).logical_or(y.eq(static_cast<float>(scale))).all().item<bool>()) << p;
    // 2^20 Bernoulli(1 - p) draws: the kept fraction has sd sqrt(p(1-p)/2^20) <= 0.0005; 0.003 is 6 sd.
    EXPECT_NEAR(y.ne(0.0f).to(torch::kDouble).mean().item<double>(), 1.0 - p, 0.003) << p;
  }
}

// Neighbouring elements are independent: the keep decisions as ±1 signs, laid out as 1024 rows of
// 1024, have no correlation between rows or columns (a poor counter hash shows stripes, i.e.
// correlations near 1).
TEST(Dropout, MaskHasNoStructure) {
  auto z = applied_mask(1 << 20, 0.5, 11).ne(0.0f).to(torch::kDouble).mul_(2.0).sub_(1.0).view({1024, 1024});
  // 2^20 fair coins: the mean has sd 0.001.
  EXPECT_NEAR(z.mean().item<double>(), 0.0, 0.006);
  for (const auto& m : {z, z.t()}) {
    auto c = at::matmul(m, m.t()).div_(1024.0).abs_();  // [1024, 1024]
    c.fill_diagonal_(0.0);
    // A pair's correlation has sd 1/32; the largest of 523776 pairs is about 5.3 sd, i.e. 0.17.
    EXPECT_LT(c.max().item<double>(), 0.3);
  }
}

// Each vectorised float32 loop this CPU has and the generic integer-tensor path draw the same mask.
// 999·37 elements: the last thread's share (past 2·16384) ends in a partial vector of 3.
TEST(Dropout, VectorisedAndGenericPathsAgree) {
  torch::manual_seed(3);
  const auto x = torch::randn({999, 37});
  torch::manual_seed(5);
  auto y64 = counter_dropout(x.to(torch::kDouble), 0.25, true);  // float64: the generic path
  for (const auto simd : {Simd::None, Simd::Avx2, Simd::Avx512}) {
    if (simd > cpu_simd()) continue;
    const auto before = limit_simd(simd);
    torch::manual_seed(5);
    auto y = counter_dropout(x, 0.25, true);  // float32: the vector loop (None: the generic path)
    limit_simd(before);
    const std::string what = "simd " + std::to_string(static_cast<int>(simd));
    EXPECT_TRUE(torch::equal(y.ne(0.0f), y64.ne(0.0))) << what;  // the same elements kept (no zeros in x)
    // The kept values are x·1/(1 - p), rounded once in float32 and once in float64: within float32's
    // ulp.
    EXPECT_TRUE(torch::allclose(y.to(torch::kDouble), y64, /*rtol=*/2e-7, /*atol=*/0.0)) << what;
  }
}

// Elements past 2^32: the hash takes the index's low and high 32-bit halves separately, and a vector
// of lanes whose low halves wrap to 0 must carry one into their high halves. Each vector loop this CPU
// has, on ranges that cross 2^32 and 3·2^32 in mid-vector and end in a partial vector, against the
// generic path (float64 tensors of 64-bit indices).
TEST(Dropout, IndicesPastTwoToThe32) {
  constexpr int64_t kTwo32 = int64_t{1} << 32;
  constexpr int64_t kSeed = 0x1234567887654321LL, kCount = 101;
  constexpr double kP = 0.5;
  torch::manual_seed(13);
  const auto x = torch::randn({kCount});  // [count], no zeros
  for (const int64_t first : {kTwo32 - 37, 3 * kTwo32 - 5}) {
    const auto expected =
        x.to(torch::kDouble) * detail::dropout_mask(kSeed, kP, kCount, torch::kDouble, first);
    // The high half enters the hash: the same low halves one 2^32 lower draw another mask.
    const auto lower = detail::dropout_mask(kSeed, kP, kCount, torch::kDouble, first - kTwo32);
    EXPECT_FALSE(torch::equal(expected.ne(0.0), lower.ne(0.0))) << first;
    for (const auto simd : {Simd::None, Simd::Avx2, Simd::Avx512}) {
      if (simd > cpu_simd()) continue;
      const auto before = limit_simd(simd);
      auto y = torch::empty_like(x);
      detail::dropout_float_range(x.data_ptr<float>(), y.data_ptr<float>(), first, kCount, kSeed, kP);
      limit_simd(before);
      const std::string what =
          "first " + std::to_string(first) + ", simd " + std::to_string(static_cast<int>(simd));
      EXPECT_TRUE(torch::equal(y.ne(0.0f), expected.ne(0.0))) << what;
      // Kept values: x·2 is exact in float32 and float64.
      EXPECT_TRUE(torch::equal(y.to(torch::kDouble), expected)) << what;
    }
  }
}

TEST(Dropout, ReproducibleFromTheDefaultGenerator) {
  const auto x = torch::randn({4096});
  torch::manual_seed(1);
  auto a = counter_dropout(x, 0.1, true);
  auto b = counter_dropout(x, 0.1, true);
  torch::manual_seed(1);
  auto a_again = counter_dropout(x, 0.1, true);
  EXPECT_TRUE(torch::equal(a, a_again));
  EXPECT_FALSE(torch::equal(a, b));  // each call draws a new seed
}

TEST(Dropout, IdentityOutsideTrainingOrAtZero) {
  const auto x = torch::randn({8, 8});
  EXPECT_TRUE(counter_dropout(x, 0.5, /*training=*/false).is_same(x));
  EXPECT_TRUE(counter_dropout(x, 0.0, /*training=*/true).is_same(x));
  EXPECT_THROW(counter_dropout(x, 1.0, true), c10::Error);
}

// The gradient is the same mask: dx = dy ∘ mask, checked against the forward's own mask (the
// function is linear in x, so this is the whole Jacobian) for both paths.
TEST(Dropout, GradientIsTheForwardMask) {
  for (auto dtype : {torch::kFloat, torch::kDouble}) {
    auto x = torch::randn({64, 33}, dtype).requires_grad_();
    torch::manual_seed(9);
    auto y = counter_dropout(x, 0.4, true);
    auto dy = torch::randn_like(y);
    auto dx = torch::autograd::grad({y}, {x}, {dy}, false, false)[0];
    torch::manual_seed(9);
    auto mask = counter_dropout(torch::ones_like(x), 0.4, true).detach();
    // Both sides are one product of dy with the same float mask: equal bit for bit.
    EXPECT_TRUE(torch::equal(dx, dy * mask)) << dtype;
  }
}

TEST(Dropout, Gradcheck) {
  auto x = torch::randn({5, 7}, torch::kDouble).requires_grad_();
  EXPECT_TRUE(test::gradcheck(
      [](const std::vector<torch::Tensor>& in) {
        torch::manual_seed(4);  // the same mask at every evaluation
        return counter_dropout(in[0], 0.3, true);
      },
      {x}));
}

}  // namespace
}  // namespace qkv
