// Scaled dot-product attention (src/ops/attention.h): values and contracts of every
// implementation. Gradients are in test_attention_grad.cpp.
//
// Dimensions: B = batch, H = heads, Tq, Tk = query and key lengths, Dk, Dv = widths.
#include <cmath>

#include <ATen/core/dispatch/Dispatcher.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "base/enums.h"
#include "ops/attention.h"
#include "ops/attention_dropout.h"
#include "ops/cpu_features.h"
#include "support.h"

namespace qkv {
namespace {

using test::expect_close;

// The implementations by name, so that failures name them.
const std::vector<std::string>& attention_impls() {
  return enum_names<AttentionKind>();
}

AttentionOptions with_impl(const std::string& impl) {
  AttentionOptions options;
  EXPECT_TRUE(parse_enum(impl, options.impl)) << impl;
  return options;
}

// The textbook example, worked by hand with scale 1:
//   Q Kᵀ = [[1·3 + 2·2, 1·1 + 2·0], [2·3 + 3·2, 2·1 + 3·0]] = [[7, 1], [12, 2]]
//   softmax rows: [σ(6), 1 − σ(6)] and [σ(10), 1 − σ(10)] with σ(x) = 1 / (1 + e^−x)
//   O = P V = [[2σ(6) + (1 − σ(6)), σ(6)], ...] = [[1 + σ(6), σ(6)], [1 + σ(10), σ(10)]]
//         ≈ [[1.9975, 0.9975], [2.0000, 1.0000]].
QKV_DEVICE_TEST(Attention, TextbookExample) {
  const auto f64 = torch::TensorOptions().dtype(torch::kDouble).device(device);
  auto q = torch::tensor({1.0, 2.0, 2.0, 3.0}, f64).view({1, 1, 2, 2});
  auto k = torch::tensor({3.0, 2.0, 1.0, 0.0}, f64).view({1, 1, 2, 2});
  auto v = torch::tensor({2.0, 1.0, 1.0, 0.0}, f64).view({1, 1, 2, 2});
  const double s6 = 1.0 / (1.0 + std::exp(-6.0)), s10 = 1.0 / (1.0 + std::exp(-10.0));
  auto expected = torch::tensor({1 + s6, s6, 1 + s10, s10}, f64).view({1, 1, 2, 2});
  for (const auto& impl : attention_impls()) {
    auto options = with_impl(impl);
    options.scale = 1.0;
    // 1e-12: two exponentials and a 2-term sum in float64, ~10 ulp of values near 2.
    EXPECT_TRUE(expect_close(attention(q, k, v, options), expected, 1e-12, 0, impl));
  }
  EXPECT_NEAR(expected[0][0][0][0].item<double>(), 1.9975, 1e-4);  // the rounded figures above
}

TEST(Attention, ImplNamesInFixedOrder) {
  EXPECT_EQ(attention_impls(), (std::vector<std::string>{"standard", "memory_efficient", "reference"}));
}

TEST(Attention, OperatorIsRegistered) {
  auto op = c10::Dispatcher::singleton().findSchema({"qkv::attention", ""});
  ASSERT_TRUE(op.has_value());
  EXPECT_EQ(c10::toString(op->schema()),
            "qkv::attention(Tensor q, Tensor k, Tensor v, Tensor? key_padding_mask, bool causal, "
            "float? scale, float dropout_p, str impl) -> Tensor");
}

// Every implementation agrees with the reference on values, masks and causal alignment included;
// gradient agreement is in test_attention_grad.cpp.
QKV_DEVICE_TEST(Attention, ImplementationsAgreeWithReference) {
  torch::manual_seed(1);
  const auto f64 = torch::TensorOptions().dtype(torch::kDouble).device(device);
  auto q = torch::randn({2, 3, 5, 4}, f64), k = torch::randn({2, 3, 7, 4}, f64);
  auto v = torch::randn({2, 3, 7, 6}, f64);
  auto mask = torch::zeros({2, 7}, f64.dtype(torch::kBool));
  mask[1].slice(0, 4).fill_(true);
  for (bool causal : {false, true}) {
    auto options = with_impl("reference");
    options.causal = causal;
    options.key_padding_mask = mask;
    const auto expected = attention(q, k, v, options);
    for (const std::string impl : {"standard", "memory_efficient"}) {
      ASSERT_TRUE(parse_enum(impl, options.impl));
      // 1e-12: the same float64 sums in a different order.
      EXPECT_TRUE(expect_close(attention(q, k, v, options), expected, 1e-12, 0, impl));
    }
  }
}

// The fused CPU row passes (attention_rows_simd.inc), in every instruction set this CPU has, agree with
// the generic path of libtorch's tensor ops: outputs and gradients of both tiled implementations,
// float32 and bfloat16 inputs, with padding, causal masks, rows that see no key (Tq > Tk) and widths
// that leave partial vectors (Tk = 150 = 9·16 + 6 = 18·8 + 6, and the stairs' narrower keys).
TEST(Attention, FusedRowPassesAgreeWithTheGenericPath) {
  const Simd widest = cpu_simd();
  if (widest == Simd::None) GTEST_SKIP() << "this CPU has neither AVX2 + FMA nor AVX-512";
  struct Case {
    bool causal, padded;
    int64_t tq, tk;
  };
  auto run = [](AttentionKind impl, torch::Dtype dtype, const Case& c) {
    torch::manual_seed(4);
    auto q = torch::randn({2, 3, c.tq, 24}).to(dtype).requires_grad_();
    auto k = torch::randn({2, 3, c.tk, 24}).to(dtype).requires_grad_();
    auto v = torch::randn({2, 3, c.tk, 20}).to(dtype).requires_grad_();
    AttentionOptions options;
    options.impl = impl;
    options.causal = c.causal;
    if (c.padded) {
      options.key_padding_mask = torch::zeros({2, c.tk}, torch::kBool);
      options.key_padding_mask[1].slice(0, c.tk - 37).fill_(true);
    }
    auto out = attention(q, k, v, options);
    auto grads = torch::autograd::grad({out}, {q, k, v}, {torch::randn_like(out)});
    return std::vector<torch::Tensor>{out.detach(), grads[0], grads[1], grads[2]};
  };
  const std::vector<Case> cases = {{true, true, 150, 150}, {true, false, 170, 130}, {false, true, 77, 150}};
  for (const auto isa : {Simd::Avx2, Simd::Avx512}) {
    if (isa > widest) continue;
    for (const auto impl : {AttentionKind::Standard, AttentionKind::MemoryEfficient}) {
      for (const auto dtype : {torch::kFloat, torch::kBFloat16}) {
        for (const auto& c : cases) {
          const auto before = limit_simd(Simd::None);
          const auto expected = run(impl, dtype, c);
          limit_simd(isa);
          const auto got = run(impl, dtype, c);
          limit_simd(before);
          const std::string what = std::string(isa == Simd::Avx2 ? "avx2 " : "avx512 ") + to_string(impl) +
                                   (dtype == torch::kFloat ? " float32" : " bfloat16") +
                                   " causal=" + std::to_string(c.causal) + " Tq=" + std::to_string(c.tq);
          for (size_t i = 0; i < got.size(); ++i) {
            // Both paths round each exp to 1-2 ulp and sum rows of at most 150 terms in a different
            // order: float32 errors of at most about 150·2^-24 ≈ 1e-5 relative (6e-7 seen). In
            // bfloat16 the outputs and gradients are rounded to 8 bits (2^-8 relative), and one ulp
            // apart where the float32 results straddle a rounding boundary: 1e-2 relative.
            const double tol = dtype == torch::kFloat ? 1e-5 : 1e-2;
            EXPECT_TRUE(expect_close(got[i].to(torch::kFloat), expected[i].to(torch::kFloat), tol, tol,
                                     what + " tensor " + std::to_string(i)));
          }
        }
      }
    }
  }
}

// Queries aligned to the end of the keys: the last query alone (incremental decoding) sees what
// the last row of the full causal attention sees.
QKV_DEVICE_TEST(Attention, CausalAlignsQueriesToTheEnd) {
  torch::manual_seed(2);
  const auto f64 = torch::TensorOptions().dtype(torch::kDouble).device(device);
  auto q = torch::randn({1, 2, 6, 4}, f64), k = torch::randn({1, 2, 6, 4}, f64);
  auto v = torch::randn({1, 2, 6, 3}, f64);
  for (const auto& impl : attention_impls()) {
    auto options = with_impl(impl);
    options.causal = true;
    auto full = attention(q, k, v, options);              // [1, 2, 6, 3]
    auto last = attention(q.slice(2, 4), k, v, options);  // [1, 2, 2, 3]
    EXPECT_TRUE(expect_close(last, full.slice(2, 4), 1e-12, 0, impl));
    // The first query sees only the first key: its output is v's first row.
    EXPECT_TRUE(expect_close(full.select(2, 0), v.select(2, 0), 1e-12, 0, impl));
  }
}

QKV_DEVICE_TEST(Attention, FullyMaskedRowIsZeroNotNaN) {
  torch::manual_seed(3);
  const auto f64 = torch::TensorOptions().dtype(torch::kDouble).device(device);
  auto q = torch::randn({2, 2, 3, 4}, f64).requires_grad_();
  auto k = torch::randn({2, 2, 5, 4}, f64).requires_grad_();
  auto v = torch::randn({2, 2, 5, 3}, f64).requires_grad_();
  auto mask = torch::zeros({2, 5}, f64.dtype(torch::kBool));
  mask[1].fill_(true);  // batch 1: every key is padding
  for (const auto& impl : attention_impls()) {
    auto options = with_impl(impl);
    options.key_padding_mask = mask;
    auto out = attention(q, k, v, options);
    EXPECT_TRUE(expect_close(out[1], torch::zeros_like(out[1]), 0, 0, impl + " output"));
    auto grads = torch::autograd::grad({(out * torch::randn_like(out)).sum()}, {q, k, v});
    for (int i = 0; i < 3; ++i) {
      EXPECT_TRUE(expect_close(grads[i][1], torch::zeros_like(grads[i][1]), 0, 0, impl + " grad"));
      EXPECT_TRUE(torch::isfinite(grads[i]).all().item<bool>()) << impl;
    }
  }
}

// A decoding step: one query per head against keys and values that are views of a time-major cache
// [Tk, B, H, D] (rows spaced B·H·D apart), with padding, in float32 without a graph: the CPU takes
// the single-query loop (attention_single_query.cpp), which must agree with the float64 reference.
// Widths 20 and 24 are not multiples of 16, so the vector loops' partial lanes are exercised.
TEST(Attention, SingleQueryStepAgreesWithReference) {
  torch::manual_seed(4);
  const int64_t batch = 3, heads = 4, tk = 37, dk = 20, dv = 24;
  auto q = torch::randn({batch, heads, 1, dk});
  auto k = torch::randn({tk, batch, heads, dk}).permute({1, 2, 0, 3});  // [B, H, Tk, Dk], time-major
  auto v = torch::randn({tk, batch, heads, dv}).permute({1, 2, 0, 3});  // [B, H, Tk, Dv]
  auto mask = torch::zeros({batch, tk}, torch::kBool);
  mask[1].slice(0, 30).fill_(true);  // a shorter sentence
  mask[2].fill_(true);               // every key padding: the output is 0
  auto reference = with_impl("reference");
  reference.key_padding_mask = mask;
  const auto expected =
      attention(q.to(torch::kDouble), k.to(torch::kDouble), v.to(torch::kDouble), reference);
  // Each vector path this CPU has (cpu_features.h), and the portable loop.
  for (const auto simd : {Simd::None, Simd::Avx2, Simd::Avx512}) {
    if (simd > cpu_simd()) continue;
    const auto before = limit_simd(simd);
    for (const std::string impl : {"standard", "memory_efficient"}) {
      for (bool causal : {false, true}) {  // one query aligned to the end sees every key either way
        auto options = with_impl(impl);
        options.key_padding_mask = mask;
        options.causal = causal;
        torch::NoGradGuard no_grad;
        const auto out = attention(q, k, v, options);  // [B, H, 1, Dv]
        const std::string what = impl + " simd " + std::to_string(static_cast<int>(simd));
        // 1e-5 absolute: a score's float32 error is about Dk·u·Σ|q_d k_d|·scale ≈ 20 · 6e-8 · 16 · 0.22
        // ≈ 4e-6, which each probability carries as a relative error; outputs are weighted means of
        // values below 5 in magnitude, so they move by a few 1e-6 (plus the float32 rounding of the
        // sums).
        EXPECT_TRUE(expect_close(out, expected, 1e-5, 0, what));
        EXPECT_TRUE(expect_close(out[2], torch::zeros_like(out[2]), 0, 0, what + " all padding"));
      }
    }
    limit_simd(before);
  }
}

TEST(Attention, NoGraphUnderNoGradGuard) {
  auto q = torch::randn({1, 2, 3, 4}, torch::requires_grad());
  auto k = torch::randn({1, 2, 3, 4}, torch::requires_grad());
  auto v = torch::randn({1, 2, 3, 4}, torch::requires_grad());
  for (const auto& impl : attention_impls()) {
    torch::NoGradGuard no_grad;
    auto out = attention(q, k, v, with_impl(impl));
    EXPECT_FALSE(out.requires_grad()) << impl;
    EXPECT_EQ(out.grad_fn(), nullptr) << impl;
  }
  auto out = attention(q, k, v);  // and a graph with grad mode on
  EXPECT_TRUE(out.requires_grad());
  EXPECT_NE(out.grad_fn(), nullptr);
}

// Expects `call` to throw an error whose message contains `fragment`.
template <class F>
void expect_error(F&& call, const std::string& fragment) {
  try {
    call();
    ADD_FAILURE() << "no error; expected one mentioning \"" << fragment << "\"";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

TEST(Attention, WrongInputsAreRefusedReadably) {
  auto q = torch::randn({1, 2, 3, 4}), k = torch::randn({1, 2, 5, 4}), v = torch::randn({1, 2, 5, 6});
  expect_error([&] { attention(q[0], k, v); }, "must be 4-D [B, H, T, D]");
  expect_error([&] { attention(q, k.slice(3, 0, 3), v); }, "expected q [B, H, Tq, Dk]");
  expect_error([&] { attention(q, k, v.slice(2, 0, 4)); }, "expected q [B, H, Tq, Dk]");
  expect_error([&] { attention(q, k, v.to(torch::kDouble)); }, "must share one dtype");
  expect_error([&] { attention(q.to(torch::kInt), k, v); }, "float32, float64, bfloat16 or float16");
  const auto half = torch::kHalf;
  expect_error([&] { attention(q.to(half), k.to(half), v.to(half)); }, "float16 attention runs on CUDA only");
  // The operator's schema takes the implementation as a string: a wrong one is refused there.
  const auto op = c10::Dispatcher::singleton()
                      .findSchemaOrThrow("qkv::attention", "")
                      .typed<torch::Tensor(const torch::Tensor&, const torch::Tensor&, const torch::Tensor&,
                                           const c10::optional<torch::Tensor>&, bool, c10::optional<double>,
                                           double, c10::string_view)>();
  expect_error([&] { op.call(q, k, v, c10::nullopt, false, c10::nullopt, 0.0, "flash"); },
               "unknown impl \"flash\"");
  AttentionOptions options;
  options.key_padding_mask = torch::zeros({1, 4}, torch::kBool);
  expect_error([&] { attention(q, k, v, options); }, "key_padding_mask must be [B, Tk] = [1, 5]");
  options.key_padding_mask = torch::zeros({1, 5});
  expect_error([&] { attention(q, k, v, options); }, "key_padding_mask must be bool");
  options = {};
  options.dropout_p = 1.0;
  expect_error([&] { attention(q, k, v, options); }, "dropout_p must be in [0, 1)");
}

QKV_DEVICE_TEST(Attention, EmptyAndSingleLengths) {
  const auto f32 = torch::TensorOptions().device(device);
  for (const auto& impl : attention_impls()) {
    auto none = attention(torch::randn({2, 2, 0, 4}, f32), torch::randn({2, 2, 3, 4}, f32),
                          torch::randn({2, 2, 3, 5}, f32), with_impl(impl));
    EXPECT_EQ(none.sizes(), (std::vector<int64_t>{2, 2, 0, 5})) << impl;
    auto no_keys = attention(torch::randn({2, 2, 3, 4}, f32), torch::randn({2, 2, 0, 4}, f32),
                             torch::randn({2, 2, 0, 5}, f32), with_impl(impl));
    EXPECT_TRUE(expect_close(no_keys, torch::zeros({2, 2, 3, 5}, f32), 0, 0, impl));
    // One key: the softmax is 1 and the output is that key's value.
    auto v = torch::randn({2, 2, 1, 5}, f32);
    auto one =
        attention(torch::randn({2, 2, 3, 4}, f32), torch::randn({2, 2, 1, 4}, f32), v, with_impl(impl));
    EXPECT_TRUE(expect_close(one, v.expand({2, 2, 3, 5}), 1e-6, 0, impl));  // float32 rounding
  }
}

QKV_DEVICE_TEST(Attention, ProbabilitiesAreMaskedDistributions) {
  torch::manual_seed(4);
  const auto f64 = torch::TensorOptions().dtype(torch::kDouble).device(device);
  auto q = torch::randn({2, 2, 4, 3}, f64), k = torch::randn({2, 2, 6, 3}, f64);
  auto mask = torch::zeros({2, 6}, f64.dtype(torch::kBool));
  mask[0][5] = true;
  auto p = attention_probabilities(q, k, mask, /*causal=*/true);  // [2, 2, 4, 6]
  EXPECT_TRUE(expect_close(p.sum(-1), torch::ones({2, 2, 4}, f64), 1e-12, 0, "row sums"));
  // Query i (aligned to the end) sees keys <= i + 2; padding key 5 of batch 0 is hidden.
  auto allowed = torch::ones({4, 6}, f64).tril(2).to(torch::kBool);
  EXPECT_EQ(p.masked_select(allowed.logical_not()).abs().max().item<double>(), 0.0);
  EXPECT_EQ(p[0].select(-1, 5).abs().max().item<double>(), 0.0);
  // The probabilities are those of the reference softmax.
  auto scores = at::matmul(q, k.transpose(-2, -1)) / std::sqrt(3.0);
  scores =
      scores.masked_fill(allowed.logical_not(), -INFINITY).masked_fill(mask.view({2, 1, 1, 6}), -INFINITY);
  EXPECT_TRUE(expect_close(p, scores.softmax(-1), 1e-12, 0, "probabilities"));
}

AttentionOptions with_dropout(const std::string& impl, double p) {
  auto options = with_impl(impl);
  options.dropout_p = p;
  return options;
}

// The dropout mask comes from a seed drawn from the default generator: torch::manual_seed makes it
// reproducible, another seed changes it, and grad mode does not change which mask is drawn.
QKV_DEVICE_TEST(AttentionDropout, SameSeedSameResult) {
  torch::manual_seed(5);
  const auto f32 = torch::TensorOptions().device(device);
  auto q = torch::randn({2, 2, 8, 4}, f32), k = torch::randn({2, 2, 8, 4}, f32);
  auto v = torch::randn({2, 2, 8, 4}, f32);
  for (const auto& impl : attention_impls()) {
    const auto options = with_dropout(impl, 0.5);
    torch::manual_seed(42);
    auto first = attention(q, k, v, options);
    torch::manual_seed(42);
    auto again = attention(q, k, v, options);
    EXPECT_TRUE(torch::equal(first, again)) << impl;
    torch::manual_seed(43);
    EXPECT_FALSE(torch::equal(first, attention(q, k, v, options))) << impl;
    torch::manual_seed(42);
    auto with_grad = attention(q.clone().requires_grad_(), k, v, options);
    EXPECT_TRUE(torch::equal(first, with_grad.detach())) << impl;
  }
}

// All implementations regenerate the same mask from the same seed, so they agree under dropout.
QKV_DEVICE_TEST(AttentionDropout, ImplementationsDropTheSameProbabilities) {
  torch::manual_seed(6);
  const auto f64 = torch::TensorOptions().dtype(torch::kDouble).device(device);
  auto q = torch::randn({2, 2, 9, 4}, f64), k = torch::randn({2, 2, 11, 4}, f64);
  auto v = torch::randn({2, 2, 11, 3}, f64);
  torch::manual_seed(7);
  auto expected = attention(q, k, v, with_dropout("reference", 0.3));
  for (const auto& impl : {"standard", "memory_efficient"}) {
    torch::manual_seed(7);
    // 1e-12: the same float64 sums in a different order.
    EXPECT_TRUE(expect_close(attention(q, k, v, with_dropout(impl, 0.3)), expected, 1e-12, 0, impl));
  }
}

// With q = 0 every probability is 1/Tk, and with V = I the output is the dropped, rescaled
// probability matrix itself: P ∘ M / (1 - p). So its zeros count the dropped entries.
QKV_DEVICE_TEST(AttentionDropout, DropsTheRequestedFractionAndRescales) {
  const int64_t tk = 64;
  const double p = 0.25;
  const auto f64 = torch::TensorOptions().dtype(torch::kDouble).device(device);
  auto q = torch::zeros({2, 4, 64, 8}, f64), k = torch::randn({2, 4, tk, 8}, f64);
  auto v = torch::eye(tk, f64).expand({2, 4, tk, tk});
  for (const auto& impl : attention_impls()) {
    torch::manual_seed(8);
    auto out = attention(q, k, v, with_dropout(impl, p));  // [2, 4, 64, Tk]
    const double dropped = out.eq(0.0).to(torch::kDouble).mean().item<double>();
    // 32768 Bernoulli(0.25) draws: standard deviation 0.0024, so 0.015 is six of them.
    EXPECT_NEAR(dropped, p, 0.015) << impl;
    // Kept entries are 1/Tk scaled by 1/(1 - p).
    auto kept = out.masked_select(out.ne(0.0));
    EXPECT_TRUE(expect_close(kept, torch::full_like(kept, 1.0 / (tk * (1 - p))), 1e-15, 0, impl));
  }
}

// The largest |correlation| between two distinct rows of x [rows, samples] holding ±1.
double max_offdiagonal_correlation(const torch::Tensor& x) {
  auto c = at::matmul(x, x.t()).div_(x.size(1)).abs_();  // [rows, rows]
  c.fill_diagonal_(0.0);
  return c.max().item<double>();
}

// The keep decisions of distinct rows (across heads too) and of distinct keys are uncorrelated,
// and neither identical nor complementary: a hash that combines row and key badly shows up as
// |correlation| near 1.
TEST(AttentionDropout, KeepMaskHasNoRowOrKeyStructure) {
  const auto f64 = torch::TensorOptions().dtype(torch::kDouble);
  auto keep = detail::dropout_keep(123, 0.5, 0, 8, 0, 64, 0, 1024, f64);  // [8, 64, 1024]: 0 or 2
  auto z = keep.sub(1.0).view({512, 1024});                               // ±1
  EXPECT_NEAR(z.mean().item<double>(), 0.0, 0.01);                        // 524288 fair coins: sd 0.0014
  // 512 rows of 1024 keys: a pair's correlation has sd 1/32, the largest of 130816 pairs ~ 4.9 sd.
  EXPECT_LT(max_offdiagonal_correlation(z), 0.25);
  // 1024 keys seen by 512 rows: sd 1/sqrt(512) = 0.044, the largest of 523776 pairs ~ 5.2 sd.
  EXPECT_LT(max_offdiagonal_correlation(z.t()), 0.35);
  // A block regenerates exactly the entries of the larger mask it is part of.
  auto block = detail::dropout_keep(123, 0.5, 3, 5, 10, 20, 300, 556, f64);
  EXPECT_TRUE(torch::equal(block, keep.slice(0, 3, 5).slice(1, 10, 20).slice(2, 300, 556)));
}

// The CPU's 32-bit loop (each instruction set this CPU has, and the portable one) draws the mask of
// the int64 tensor operations bit for bit: seeds with high bits set, blocks that start anywhere, row
// lengths that end in partial vectors, float32 and float64, several rates.
TEST(AttentionDropout, CpuLoopEqualsTheTensorOperations) {
  for (const int64_t seed : {int64_t{123}, int64_t{0x7fffffff12345678}, int64_t{-5}}) {
    for (const double p : {0.1, 0.5, 0.9}) {
      for (const auto dtype : {torch::kFloat, torch::kDouble}) {
        const auto options = torch::TensorOptions().dtype(dtype);
        const auto expected = detail::dropout_keep_by_tensor_ops(seed, p, 3, 6, 17, 50, 250, 293, options);
        for (const auto simd : {Simd::None, Simd::Avx2, Simd::Avx512}) {
          if (simd > cpu_simd()) continue;
          const auto before = limit_simd(simd);
          const auto keep = detail::dropout_keep(seed, p, 3, 6, 17, 50, 250, 293, options);
          limit_simd(before);
          EXPECT_TRUE(torch::equal(keep, expected))
              << "seed " << seed << ", p " << p << ", " << dtype << ", simd " << static_cast<int>(simd);
        }
      }
    }
  }
}

}  // namespace
}  // namespace qkv
