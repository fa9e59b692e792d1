// Label-smoothed cross entropy (src/train/loss.h): values against hand computation, the closed-form
// backward against autograd through a composed reference and against finite differences (support.h),
// padding.
#include <cmath>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "support.h"
#include "train/loss.h"

namespace qkv {
namespace {

// The composed reference: the target distribution q written out, loss = −Σ q log p.
torch::Tensor reference_loss(const torch::Tensor& logits, const torch::Tensor& target, double eps,
                             int64_t pad) {
  const int64_t vocab = logits.size(-1);
  auto lprobs = torch::log_softmax(logits.reshape({-1, vocab}), 1);  // [N, V]
  auto flat = target.reshape({-1});                                  // [N]
  auto q = torch::full_like(lprobs, eps / static_cast<double>(vocab - 1));
  q.scatter_(1, flat.unsqueeze(1), 1.0 - eps);
  auto per_token = -(q * lprobs).sum(1);  // [N]
  return (per_token * flat.ne(pad).to(lprobs.dtype())).sum();
}

TEST(Loss, MatchesHandComputation) {
  // Token 1: p = (0.5, 0.25, 0.25), target 0 -> loss = −0.9·ln 0.5 − 0.05·(ln 0.25 + ln 0.25).
  // Token 2: target is padding -> contributes nothing.
  auto probs = torch::tensor({0.5, 0.25, 0.25, 0.1, 0.2, 0.7}, torch::kDouble).reshape({1, 2, 3});
  auto logits = probs.log();
  auto target = torch::tensor({0, 1}, torch::kLong).reshape({1, 2});
  const int64_t pad = 1;
  auto r = label_smoothed_cross_entropy(logits, target, 0.1, pad);
  const double expected_loss = -0.9 * std::log(0.5) - 0.05 * (2 * std::log(0.25));
  EXPECT_NEAR(r.loss.item<double>(), expected_loss, 1e-12);
  EXPECT_NEAR(r.nll.item<double>(), -std::log(0.5), 1e-12);
  EXPECT_EQ(r.tokens, 1);
}

TEST(Loss, ZeroSmoothingIsTheNll) {
  torch::manual_seed(0);
  auto logits = torch::randn({3, 4, 7}, torch::kDouble);
  auto target = torch::randint(1, 7, {3, 4}, torch::kLong);
  target[0][3] = 0;
  auto r = label_smoothed_cross_entropy(logits, target, 0.0, 0);
  EXPECT_NEAR(r.loss.item<double>(), r.nll.item<double>(), 1e-12);
  auto expected = torch::nll_loss(torch::log_softmax(logits.reshape({-1, 7}), 1), target.reshape({-1}), {},
                                  at::Reduction::Sum, 0);
  EXPECT_NEAR(r.nll.item<double>(), expected.item<double>(), 1e-12);
  EXPECT_EQ(r.tokens, 11);
}

TEST(Loss, ValueAndGradientMatchComposedReference) {
  torch::manual_seed(1);
  auto logits = torch::randn({2, 5, 11}, torch::kDouble).requires_grad_(true);
  auto ref_logits = logits.detach().clone().requires_grad_(true);
  auto target = torch::randint(0, 11, {2, 5}, torch::kLong);
  target[1][4] = 0;
  target[1][3] = 0;
  const double eps = 0.1;
  const double upstream = 0.37;  // a non-unit upstream gradient catches a dropped grad_output factor
  auto r = label_smoothed_cross_entropy(logits, target, eps, 0);
  (r.loss * upstream).backward();
  auto ref = reference_loss(ref_logits, target, eps, 0);
  (ref * upstream).backward();
  EXPECT_NEAR(r.loss.item<double>(), ref.item<double>(), 1e-12);
  const double max_err = (logits.grad() - ref_logits.grad()).abs().max().item<double>();
  EXPECT_LT(max_err, 1e-12) << "max |grad - reference grad|";
  // Padding rows get no gradient at all.
  EXPECT_EQ(logits.grad()[1][4].abs().sum().item<double>(), 0.0);
}

// The closed-form backward against central finite differences in float64 (support.h's gradcheck),
// through a random upstream gradient on the loss, with one padding row.
TEST(Loss, GradientMatchesFiniteDifferences) {
  torch::manual_seed(2);
  auto logits = torch::randn({4, 5}, torch::kDouble).requires_grad_(true);
  const auto target = torch::tensor({1, 0, 4, 2}, torch::kLong);
  const auto loss = [&](const std::vector<torch::Tensor>& in) {
    return label_smoothed_cross_entropy(in[0], target, /*epsilon=*/0.2, /*pad=*/0).loss;
  };
  test::GradcheckOptions options;
  options.eps = 1e-6;
  // Central differences in float64: truncation O(eps²) ≈ 1e-12 plus rounding ~1e-16/eps = 1e-10.
  options.atol = 1e-8;
  options.rtol = 0.0;
  EXPECT_TRUE(test::gradcheck(loss, {logits}, options));
}

TEST(Loss, FloatLogitsGiveFloatGradient) {
  auto logits = torch::randn({2, 3, 6}).requires_grad_(true);
  auto target = torch::randint(1, 6, {2, 3}, torch::kLong);
  auto r = label_smoothed_cross_entropy(logits, target, 0.1, 0);
  r.loss.backward();
  EXPECT_EQ(logits.grad().scalar_type(), torch::kFloat);
  EXPECT_FALSE(r.nll.requires_grad());
}

TEST(Loss, TokenAccuracyIgnoresPadding) {
  // Rows predict 2, 0, 1; targets 2, 1, pad -> one right out of two real tokens.
  auto logits = torch::tensor({0.0, 0.0, 5.0, 5.0, 0.0, 0.0, 0.0, 5.0, 0.0}).reshape({3, 3});
  auto target = torch::tensor({2, 1, 0}, torch::kLong);
  EXPECT_DOUBLE_EQ(token_accuracy(logits, target, 0), 0.5);
}

}  // namespace
}  // namespace qkv
