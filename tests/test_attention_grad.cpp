// Gradients of scaled dot-product attention (src/ops/attention.h), two ways:
//   1. finite differences in float64 (support.h's gradcheck) for every implementation and every
//      mask situation: padding, causal, Tq ≠ Tk, Dk ≠ Dv, T = 1, a fully masked row, dropout;
//   2. agreement of standard and memory_efficient with the reference (composite ops under
//      autograd) in outputs and in gradients for a random upstream gradient, on shapes large
//      enough to span several tiles and key blocks;
//   3. every implementation in bfloat16 against the float64 reference on the same values, outputs
//      and gradients, within a rounding bound derived element by element.
//
// Dimensions: B = batch, H = heads, Tq, Tk = query and key lengths, Dk, Dv = widths.
#include <cmath>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "base/enums.h"
#include "ops/attention.h"
#include "support.h"

namespace qkv {
namespace {

struct Case {
  std::string name;
  int64_t b, h, tq, tk, dk, dv;
  bool causal = false;
  int64_t padded_keys = 0;               // the last keys of batch 1 that are padding
  int64_t hole_begin = 0, hole_end = 0;  // keys [hole_begin, hole_end) of batch 0 are padding
  double dropout_p = 0.0;
  std::optional<double> scale;  // default 1/sqrt(Dk)

  Case(std::string name, int64_t b, int64_t h, int64_t tq, int64_t tk, int64_t dk, int64_t dv)
      : name(std::move(name)), b(b), h(h), tq(tq), tk(tk), dk(dk), dv(dv) {}
  Case with_causal() const {
    auto c = *this;
    c.causal = true;
    return c;
  }
  Case with_padding(int64_t keys) const {
    auto c = *this;
    c.padded_keys = keys;
    return c;
  }
  Case with_hole(int64_t begin, int64_t end) const {
    auto c = *this;
    c.hole_begin = begin;
    c.hole_end = end;
    return c;
  }
  Case with_dropout(double p) const {
    auto c = *this;
    c.dropout_p = p;
    return c;
  }
  Case with_scale(double s) const {
    auto c = *this;
    c.scale = s;
    return c;
  }
};

// GoogleTest prints a failing parameter with this instead of its bytes.
void PrintTo(const Case& c, std::ostream* os) {
  *os << c.name;
}

// [B, Tk] bool: the last `padded_keys` keys of batch 1 and the hole of batch 0 hidden; undefined
// without padding.
torch::Tensor padding_mask(const Case& c) {
  if (c.padded_keys == 0 && c.hole_end == 0) return {};
  auto mask = torch::zeros({c.b, c.tk}, torch::kBool);  // [B, Tk]
  if (c.padded_keys > 0) mask[1].slice(0, c.tk - c.padded_keys).fill_(true);
  if (c.hole_end > 0) mask[0].slice(0, c.hole_begin, c.hole_end).fill_(true);
  return mask;
}

// Runs attention on (q, k, v) with the case's masks; with dropout, reseeds first so that every
// evaluation draws the same dropout mask (finite differences need a fixed function).
torch::Tensor run(const Case& c, const std::string& impl, const torch::Tensor& q, const torch::Tensor& k,
                  const torch::Tensor& v) {
  AttentionOptions options;
  EXPECT_TRUE(parse_enum(impl, options.impl)) << impl;
  options.causal = c.causal;
  options.scale = c.scale;
  options.dropout_p = c.dropout_p;
  const auto mask = padding_mask(c);
  if (mask.defined()) options.key_padding_mask = mask.to(q.device());
  if (c.dropout_p > 0) torch::manual_seed(1234);
  return attention(q, k, v, options);
}

std::vector<torch::Tensor> inputs(const Case& c, torch::Dtype dtype, uint64_t seed) {
  torch::manual_seed(seed);
  const auto options = torch::TensorOptions().dtype(dtype).requires_grad(true);
  return {torch::randn({c.b, c.h, c.tq, c.dk}, options), torch::randn({c.b, c.h, c.tk, c.dk}, options),
          torch::randn({c.b, c.h, c.tk, c.dv}, options)};
}

const std::vector<Case>& gradcheck_cases() {
  static const std::vector<Case> cases = {
      Case("plain", 2, 2, 3, 4, 3, 3),
      Case("padding", 2, 2, 3, 4, 3, 3).with_padding(2),
      Case("causal", 2, 2, 4, 4, 3, 3).with_causal(),
      Case("causal_decode_tq_lt_tk", 2, 2, 2, 5, 3, 3).with_causal(),
      Case("tq_gt_tk", 1, 2, 5, 3, 3, 3),
      Case("dk_ne_dv", 2, 2, 3, 4, 2, 5),
      Case("single_step", 2, 2, 1, 1, 3, 3),
      Case("fully_masked_row", 2, 2, 3, 4, 3, 3).with_padding(4),
      Case("causal_padding", 2, 2, 4, 4, 3, 3).with_causal().with_padding(1),
      Case("scale_one", 1, 2, 3, 4, 3, 3).with_scale(1.0),
      Case("dropout", 2, 2, 3, 4, 3, 3).with_dropout(0.3),
      Case("dropout_causal_padding", 2, 2, 4, 5, 3, 2).with_causal().with_padding(2).with_dropout(0.5),
  };
  return cases;
}

class AttentionGradcheck : public ::testing::TestWithParam<std::tuple<std::string, Case>> {};

TEST_P(AttentionGradcheck, MatchesFiniteDifferences) {
  const std::string& impl = std::get<0>(GetParam());  // named, not bound: lambdas capture them
  const Case& c = std::get<1>(GetParam());
  test::GradcheckOptions options;
  // Central differences with eps = 1e-6 in float64: truncation error ~eps²·|f'''| ≈ 1e-12 and
  // rounding error ~1e-16·|L| / eps ≈ 1e-10·|L|, with |L| = O(10) here: 1e-8 + 1e-6 relative
  // leaves two orders of magnitude of margin while a wrong formula is off by O(1).
  options.atol = 1e-8;
  options.rtol = 1e-6;
  EXPECT_TRUE(
      test::gradcheck([&](const std::vector<torch::Tensor>& x) { return run(c, impl, x[0], x[1], x[2]); },
                      inputs(c, torch::kDouble, 7), options));
}

INSTANTIATE_TEST_SUITE_P(EveryImplementation, AttentionGradcheck,
                         ::testing::Combine(::testing::ValuesIn(enum_names<AttentionKind>()),
                                            ::testing::ValuesIn(gradcheck_cases())),
                         [](const auto& info) {
                           return std::get<0>(info.param) + "_" + std::get<1>(info.param).name;
                         });

// Output and gradients (for a random upstream gradient G, never just .sum()) of `impl` against
// the reference on the same inputs.
void expect_agreement(const Case& c, const std::string& impl, torch::Dtype dtype, double tolerance) {
  auto x = inputs(c, dtype, 11);
  auto x_ref = inputs(c, dtype, 11);
  auto out = run(c, impl, x[0], x[1], x[2]);
  auto out_ref = run(c, "reference", x_ref[0], x_ref[1], x_ref[2]);
  ASSERT_TRUE(test::expect_close(out, out_ref, tolerance, 0, impl + " " + c.name + " output"));
  auto upstream = torch::randn_like(out);
  auto grads = torch::autograd::grad({(out * upstream).sum()}, x);
  auto grads_ref = torch::autograd::grad({(out_ref * upstream).sum()}, x_ref);
  const char* names[] = {"dQ", "dK", "dV"};
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(
        test::expect_close(grads[i], grads_ref[i], tolerance, 0, impl + " " + c.name + " " + names[i]));
  }
}

// Big enough for several tiles (see plan_tiles in attention_tiles.cpp): with 2 MiB tiles, 1100
// queries × 520 keys span two or three query blocks in the standard implementation and three
// 256-key blocks in the memory-efficient one, whose query blocks (2048 float32 rows) the
// 2100-query case splits. Causal problems take query blocks of 64 to 256 rows whose squares across
// the diagonal go in stairs of 64 rows, so the causal cases (Tq ≠ Tk, aligned to the end) have
// several blocks and stairs per side: keys wholly above the diagonal (skipped), stairs crossing it
// (masked row by row) and keys below it. Padding at the end of a
// sequence cuts the keys of the tiles of that batch entry; the hole of 256 keys in "hole_padding"
// covers a whole key block of the memory-efficient implementation (skipped) and parts of others.
const std::vector<Case>& agreement_cases() {
  static const std::vector<Case> cases = {
      Case("plain", 1, 3, 1100, 520, 16, 16),
      Case("long_queries", 1, 1, 2100, 300, 8, 8).with_causal(),
      Case("padding_causal", 2, 2, 300, 520, 16, 8).with_causal().with_padding(100),
      Case("hole_padding", 2, 2, 200, 700, 16, 16).with_causal().with_padding(150).with_hole(256, 512),
      Case("hole_padding_full", 2, 2, 150, 700, 8, 8).with_hole(200, 600),
      Case("fully_masked_row", 2, 1, 64, 300, 8, 8).with_padding(300),
      Case("dropout", 2, 2, 200, 300, 16, 16).with_causal().with_padding(30).with_dropout(0.2),
  };
  return cases;
}

class AttentionAgreement : public ::testing::TestWithParam<std::tuple<std::string, Case>> {};

// float64: the implementations sum the same products in different orders (blocked online
// softmax, tiles), so they differ by rounding only: ~1e-14 relative; 1e-10 is the bound asked for.
TEST_P(AttentionAgreement, Float64Within1e10) {
  const auto& [impl, c] = GetParam();
  expect_agreement(c, impl, torch::kDouble, 1e-10);
}

// float32: the same reorderings at ~1e-7 relative rounding over sums of a few hundred terms of
// O(1) values; 1e-5 absolute is the bound asked for.
TEST_P(AttentionAgreement, Float32Within1e5) {
  const auto& [impl, c] = GetParam();
  expect_agreement(c, impl, torch::kFloat, 1e-5);
}

INSTANTIATE_TEST_SUITE_P(HandWritten, AttentionAgreement,
                         ::testing::Combine(::testing::Values("standard", "memory_efficient"),
                                            ::testing::ValuesIn(agreement_cases())),
                         [](const auto& info) {
                           return std::get<0>(info.param) + "_" + std::get<1>(info.param).name;
                         });

// --- bfloat16 ----------------------------------------------------------------------------------
//
// Each implementation runs on bfloat16 Q, K, V and upstream gradient G; the float64 reference runs
// on the same values (upcast exactly), so rounding the inputs to bfloat16 is not part of the error.
// What remains, with u = 2^-8 the unit roundoff of bfloat16 (8-bit significand, round to nearest)
// and |X| elementwise, to first order in u:
//   O  = P V       P is rounded to bfloat16 to enter the product (relative error ≤ u per element,
//                  P ≥ 0), the sum over Tk keys is float32, O is rounded to bfloat16 on return:
//                  |δO| ≤ u·(P|V|) + u·|O| =: bO
//   dV = Pᵀ G      likewise over Tq queries:  |δdV| ≤ u·(Pᵀ|G|) + u·|dV|
//   D  = rowsum(G ∘ O), computed from the returned (rounded) O:  |δD| ≤ rowsum(|G| ∘ bO)
//   dS = P ∘ (G Vᵀ − D)   P saved in bfloat16 (standard) and dS rounded to enter its products:
//                  |δdS| ≤ 2u·|dS| + P ∘ |δD| =: E
//   dQ = scale·dS K over Tk keys:   |δdQ| ≤ scale·(E|K|) + u·|dQ|
//   dK = scale·dSᵀ Q over Tq queries: |δdK| ≤ scale·(Eᵀ|Q|) + u·|dK|
// The reduction lengths enter through the sums of magnitudes (P|V|, E|K|, ...), which grow with
// Tk and Tq. The float32 parts are left out of the bound and covered by a 25% margin: products of
// bfloat16 values are exact in float32, and a float32 sum of n ≤ 2100 terms errs by at most
// n·2^-24 ≤ 2^-13 of its magnitude, under 1/8 of u·magnitude even where the score (|S| ≤ ~10)
// amplifies it through exp(); the second-order terms are u² = 2^-16 relative.
struct Bf16Bounds {
  torch::Tensor out, dq, dk, dv;  // elementwise, shaped like the tensors they bound
};

Bf16Bounds bf16_bounds(const Case& c, const std::vector<torch::Tensor>& x, const torch::Tensor& g,
                       const torch::Tensor& out, const std::vector<torch::Tensor>& grads) {
  torch::NoGradGuard no_grad;
  const double u = std::ldexp(1.0, -8);
  const auto &q = x[0], &k = x[1], &v = x[2];
  const double scale = c.scale.value_or(1.0 / std::sqrt(static_cast<double>(c.dk)));
  const auto p =
      attention_probabilities(q.detach(), k.detach(), padding_mask(c), c.causal, scale);  // [B, H, Tq, Tk]
  const auto pt = p.transpose(-2, -1);                                                    // [B, H, Tk, Tq]
  Bf16Bounds b;
  b.out = u * (at::matmul(p, v.abs()) + out.abs());                              // [B, H, Tq, Dv]
  const auto d_err = (g.abs() * b.out).sum(-1, /*keepdim=*/true);                // [B, H, Tq, 1] |δD|
  const auto d = (g * out).sum(-1, /*keepdim=*/true);                            // [B, H, Tq, 1] D
  const auto ds = p * (at::matmul(g, v.transpose(-2, -1)) - d);                  // [B, H, Tq, Tk]
  const auto e = 2 * u * ds.abs() + p * d_err;                                   // [B, H, Tq, Tk] E
  b.dq = scale * at::matmul(e, k.abs()) + u * grads[0].abs();                    // [B, H, Tq, Dk]
  b.dk = scale * at::matmul(e.transpose(-2, -1), q.abs()) + u * grads[1].abs();  // [B, H, Tk, Dk]
  b.dv = u * (at::matmul(pt, g.abs()) + grads[2].abs());                         // [B, H, Tk, Dv]
  return b;
}

// |actual − expected| ≤ 1.25·bound everywhere; reports the worst error as a fraction of the bound.
::testing::AssertionResult within_bound(const torch::Tensor& actual, const torch::Tensor& expected,
                                        const torch::Tensor& bound, const std::string& what) {
  if (actual.sizes() != expected.sizes()) {
    return ::testing::AssertionFailure()
           << what << ": shape " << actual.sizes() << " != " << expected.sizes();
  }
  const auto err = (actual.detach().to(torch::kDouble) - expected.detach()).abs();
  const auto ratio = err / (1.25 * bound).clamp_min(1e-300);  // 0/0 (exact zeros) gives 0
  const double worst = ratio.max().item<double>();
  if (worst <= 1.0 && !ratio.isnan().any().item<bool>()) {
    return ::testing::AssertionSuccess() << what << ": worst error " << worst << " of the bound";
  }
  return ::testing::AssertionFailure()
         << what << ": error reaches " << worst << "x the bfloat16 bound (max error "
         << err.max().item<double>() << ")";
}

class AttentionBf16 : public ::testing::TestWithParam<std::tuple<std::string, Case>> {};

TEST_P(AttentionBf16, MatchesFloat64WithinRoundingBound) {
  const auto& [impl, c] = GetParam();
  auto x64 = inputs(c, torch::kDouble, 13);
  std::vector<torch::Tensor> x16, x;  // the bfloat16 inputs, and the same values in float64
  for (auto& t : x64) {
    x16.push_back(t.detach().to(torch::kBFloat16).requires_grad_(true));
    x.push_back(x16.back().detach().to(torch::kDouble).requires_grad_(true));
  }
  auto out16 = run(c, impl, x16[0], x16[1], x16[2]);
  ASSERT_EQ(out16.scalar_type(), torch::kBFloat16) << impl;
  auto out = run(c, "reference", x[0], x[1], x[2]);
  const auto g16 = torch::randn_like(out16);  // G, rounded to bfloat16 by construction
  const auto g = g16.to(torch::kDouble);
  auto grads16 = torch::autograd::grad({(out16 * g16).sum()}, x16);
  auto grads = torch::autograd::grad({(out * g).sum()}, x);
  const auto bounds = bf16_bounds(c, x, g, out, grads);
  const std::string name = impl + " " + c.name;
  EXPECT_TRUE(within_bound(out16, out, bounds.out, name + " output"));
  const torch::Tensor* bound[] = {&bounds.dq, &bounds.dk, &bounds.dv};
  const char* names[] = {"dQ", "dK", "dV"};
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(grads16[i].scalar_type(), torch::kBFloat16) << name << " " << names[i];
    EXPECT_TRUE(within_bound(grads16[i], grads[i], *bound[i], name + " " + names[i]));
  }
}

// The agreement shapes (several tiles and key blocks) without dropout, whose mask is the same code in
// every dtype, plus a small case with Dk ≠ Dv and a scale of 1 (larger scores).
std::vector<Case> bf16_cases() {
  std::vector<Case> cases;
  for (const auto& c : agreement_cases()) {
    if (c.dropout_p == 0.0) cases.push_back(c);
  }
  cases.push_back(Case("small_scale_one", 2, 2, 7, 9, 8, 5).with_scale(1.0).with_causal().with_padding(3));
  return cases;
}

INSTANTIATE_TEST_SUITE_P(EveryImplementation, AttentionBf16,
                         ::testing::Combine(::testing::ValuesIn(enum_names<AttentionKind>()),
                                            ::testing::ValuesIn(bf16_cases())),
                         [](const auto& info) {
                           return std::get<0>(info.param) + "_" + std::get<1>(info.param).name;
                         });

}  // namespace
}  // namespace qkv
