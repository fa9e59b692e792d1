// Mixed precision (src/ops/precision.h): the policy's scopes and casts, the linear layers' bf16
// products and gradients against float64 on the same rounded operands, and a bf16 model, decoder and
// training step that keep fp32 masters, gradients and Adam state. The attention kernels' own bf16
// tests are in test_attention*.cpp; the float16 loss scaler's in test_loss_scaler.cpp.
#include <thread>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "data/batching.h"
#include "ops/gemm.h"
#include "ops/precision.h"
#include "support.h"
#include "train/fused_adam.h"
#include "train/train_step.h"

namespace qkv {
namespace {

using test::expect_close;

// bfloat16 keeps 8 significant bits: rounding moves a value by at most 2^-9 of itself.
constexpr double kBf16Rounding = 1.0 / 512;

// --- the policy -------------------------------------------------------------------------------------

TEST(PrecisionPolicy, Fp32IsTheDefaultAndChangesNothing) {
  EXPECT_EQ(current_precision(), Precision::Fp32);
  const auto x = torch::randn({3, 4});
  EXPECT_TRUE(product_input(x).is_same(x));
  EXPECT_TRUE(product_weight(x).is_same(x));
  const PrecisionScope fp32(Precision::Fp32);
  EXPECT_TRUE(product_input(x).is_same(x));
  EXPECT_TRUE(product_weight(x).is_same(x));
}

// A bf16 run where oneDNN's bf16 GEMM does not run (its products fall back to float32) is warned
// that it will be slower; fp32 never is, nor bf16 on CUDA.
TEST(PrecisionPolicy, WarnsWhereBf16ProductsFallBackToFloat32) {
  EXPECT_EQ(precision_warning(Precision::Fp32, torch::kCPU), "");
  const auto cpu_bf16 = precision_warning(Precision::Bf16, torch::kCPU);
  EXPECT_EQ(cpu_bf16.empty(), onednn_bf16_gemm_available()) << cpu_bf16;
  if (!cpu_bf16.empty()) {
    EXPECT_NE(cpu_bf16.find("slower than fp32"), std::string::npos) << cpu_bf16;
  }
  EXPECT_EQ(precision_warning(Precision::Bf16, torch::Device(torch::kCUDA, 0)), "");
}

TEST(PrecisionPolicy, ScopesNestAndRestore) {
  {
    const PrecisionScope outer(Precision::Bf16);
    EXPECT_EQ(current_precision(), Precision::Bf16);
    {
      const PrecisionScope inner(Precision::Fp32);
      EXPECT_EQ(current_precision(), Precision::Fp32);
    }
    EXPECT_EQ(current_precision(), Precision::Bf16);
  }
  EXPECT_EQ(current_precision(), Precision::Fp32);
}

// The scope belongs to the thread that opened it: other threads (another trainer, a test runner's
// helpers) keep their own precision.
TEST(PrecisionPolicy, ScopeIsPerThread) {
  const PrecisionScope bf16(Precision::Bf16);
  Precision seen = Precision::Bf16;
  std::thread other([&] { seen = current_precision(); });
  other.join();
  EXPECT_EQ(seen, Precision::Fp32);
  EXPECT_EQ(current_precision(), Precision::Bf16);
}

TEST(PrecisionPolicy, Bf16CastsOnlyFloat32Operands) {
  const PrecisionScope bf16(Precision::Bf16);
  const auto x = torch::randn({3, 4});
  EXPECT_EQ(product_input(x).scalar_type(), torch::kBFloat16);
  const auto d = torch::randn({3, 4}, torch::kDouble);  // gradient checks stay in float64
  EXPECT_TRUE(product_input(d).is_same(d));
  const auto low = x.to(torch::kBFloat16);
  EXPECT_TRUE(product_input(low).is_same(low));
  EXPECT_EQ(product_result(low).scalar_type(), torch::kFloat);
}

TEST(PrecisionPolicy, WeightCopiesAreReusedUntilTheWeightChanges) {
  const PrecisionScope bf16(Precision::Bf16);
  auto w = torch::randn({6, 4});
  const auto first = product_weight(w);
  EXPECT_EQ(first.scalar_type(), torch::kBFloat16);
  EXPECT_TRUE(product_weight(w).is_same(first));
  // The same rows narrowed again (cross-attention's W_K/W_V) are the same weight; other rows are not.
  const auto rows = product_weight(w.narrow(0, 2, 3));
  EXPECT_TRUE(product_weight(w.narrow(0, 2, 3)).is_same(rows));
  EXPECT_FALSE(product_weight(w.narrow(0, 3, 3)).is_same(rows));
  {
    torch::NoGradGuard no_grad;
    w.add_(1.0);  // an optimizer step: the version counter moves
  }
  const auto updated = product_weight(w);
  EXPECT_FALSE(updated.is_same(first));
  EXPECT_TRUE(torch::equal(updated, w.to(torch::kBFloat16)));
}

TEST(PrecisionPolicy, AWeightBeingTrainedIsCastAfreshIntoTheGraph) {
  const PrecisionScope bf16(Precision::Bf16);
  auto w = torch::randn({6, 4}).requires_grad_(true);
  const auto a = product_weight(w), b = product_weight(w);
  EXPECT_FALSE(a.is_same(b));
  EXPECT_TRUE(a.requires_grad());  // the cast is recorded: gradients reach the fp32 weight
  (a.to(torch::kFloat).sum() + b.to(torch::kFloat).sum()).backward();
  EXPECT_EQ(w.grad().scalar_type(), torch::kFloat);
  EXPECT_TRUE(torch::equal(w.grad(), torch::full({6, 4}, 2.0f)));
}

// --- linear layers in bf16 --------------------------------------------------------------------------

// float32 rounding: a sum of K terms computed in fp32 is off by at most (K + 1)·2^-24 of the sum of
// the terms' magnitudes (one rounding per addition, plus the result's).
constexpr double kFp32Rounding = 1.0 / (1 << 24);

// Every element of `actual` within `bound` (same shape, float64) of `expected`.
::testing::AssertionResult within(const torch::Tensor& actual, const torch::Tensor& expected,
                                  const torch::Tensor& bound, const std::string& what) {
  const auto error = (actual.detach().to(torch::kDouble) - expected).abs();
  const auto excess = (error - bound).max().item<double>();
  if (excess <= 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << what << ": an error exceeds its bound by " << excess
                                       << " (max error " << error.max().item<double>() << ")";
}

// y = x Wᵀ + b under bf16 against float64 on the same bf16-rounded operands, and its gradients with a
// random upstream gradient G (rounded to bf16 where it meets a product, as backward does): products
// of two bf16 numbers are exact in fp32 (8 + 8 significant bits), so only the fp32 sums may differ,
// within kFp32Rounding's bound. The bias and db are fp32 throughout.
void check_bf16_linear(const std::vector<int64_t>& x_shape, int64_t out, bool with_bias) {
  torch::manual_seed(5);
  const int64_t in = x_shape.back();
  auto x = torch::randn(x_shape).requires_grad_(true);
  auto w = torch::randn({out, in}).requires_grad_(true);
  auto b = with_bias ? torch::randn({out}).requires_grad_(true) : torch::Tensor();
  torch::Tensor y;
  {
    const PrecisionScope bf16(Precision::Bf16);
    y = gemm_linear(x, w, b);
  }
  ASSERT_EQ(y.scalar_type(), torch::kFloat);
  const auto upstream = torch::randn_like(y);
  (y * upstream).sum().backward();
  ASSERT_EQ(x.grad().scalar_type(), torch::kFloat);
  ASSERT_EQ(w.grad().scalar_type(), torch::kFloat);

  auto f64 = [](const torch::Tensor& t) { return t.detach().to(torch::kDouble); };
  auto rounded = [&](const torch::Tensor& t) { return f64(t.detach().to(torch::kBFloat16)); };
  const auto x64 = rounded(x).reshape({-1, in}), w64 = rounded(w);  // [N, I], [O, I]
  const auto g64 = rounded(upstream).reshape({-1, out});            // [N, O]
  const int64_t n = x64.size(0);
  const auto bias64 = with_bias ? f64(b) : torch::zeros({out}, torch::kDouble);
  const auto y_ref = torch::mm(x64, w64.t()) + bias64;  // [N, O]
  const auto y_bound = (in + 2) * kFp32Rounding * (torch::mm(x64.abs(), w64.abs().t()) + bias64.abs());
  EXPECT_TRUE(within(y.reshape({-1, out}), y_ref, y_bound, "y"));
  EXPECT_TRUE(within(x.grad().reshape({-1, in}), torch::mm(g64, w64),
                     (out + 1) * kFp32Rounding * torch::mm(g64.abs(), w64.abs()), "dx"));
  EXPECT_TRUE(within(w.grad(), torch::mm(g64.t(), x64),
                     (n + 1) * kFp32Rounding * torch::mm(g64.abs().t(), x64.abs()), "dW"));
  if (with_bias) {
    const auto g = f64(upstream).reshape({-1, out});
    EXPECT_TRUE(within(b.grad(), g.sum(0), (n + 1) * kFp32Rounding * g.abs().sum(0), "db"));
  }
  // And the product really ran in bf16: against the unrounded operands the error is beyond fp32's
  // bound somewhere, and everywhere within bf16's, 2·2^-9 of Σ|x·w| (each operand rounded once).
  const auto x_full = f64(x).reshape({-1, in}), w_full = f64(w);
  const auto exact = torch::mm(x_full, w_full.t()) + bias64;
  const auto magnitude = torch::mm(x_full.abs(), w_full.abs().t());  // [N, O]
  EXPECT_FALSE(within(y.reshape({-1, out}), exact, y_bound, "y")) << "no bf16 rounding: did it run in fp32?";
  EXPECT_TRUE(within(y.reshape({-1, out}), exact, 2 * kBf16Rounding * magnitude + y_bound, "y vs exact"));
}

TEST(Bf16Linear, MatchesFloat64OnRoundedOperands2d) {
  check_bf16_linear({37, 64}, 48, true);
}
TEST(Bf16Linear, MatchesFloat64OnRoundedOperands3dWithoutBias) {
  check_bf16_linear({4, 9, 32}, 80, false);
}
TEST(Bf16Linear, MatchesFloat64OnRoundedOperandsLargeShapes) {
  check_bf16_linear({8, 64, 256}, 512, true);
}

// Attention hands its output on in bf16; the output projection takes it as it is and returns fp32,
// and the input's gradient goes back in bf16.
TEST(Bf16Linear, TakesAnInputAlreadyInBf16) {
  const PrecisionScope bf16(Precision::Bf16);
  auto x = torch::randn({5, 16}).to(torch::kBFloat16).requires_grad_(true);
  auto w = torch::randn({8, 16}).requires_grad_(true);
  auto y = gemm_linear(x, w, torch::zeros({8}));
  EXPECT_EQ(y.scalar_type(), torch::kFloat);
  y.sum().backward();
  EXPECT_EQ(x.grad().scalar_type(), torch::kBFloat16);
  EXPECT_EQ(w.grad().scalar_type(), torch::kFloat);
}

// --- a bf16 model and training step -----------------------------------------------------------------

ModelConfig tiny_model() {
  ModelConfig m;
  m.d_model = 32;
  m.d_ff = 64;
  m.heads = 4;
  m.encoder_layers = 2;
  m.decoder_layers = 2;
  m.dropout = 0.0;
  m.max_len = 32;
  return m;
}

// `n` sentence pairs of random ids 4..19, lengths 3..8.
Batch random_batch(int64_t n, uint64_t seed) {
  torch::manual_seed(seed);
  std::vector<Example> examples;
  std::vector<int64_t> rows;
  for (int64_t i = 0; i < n; ++i) {
    auto length = [] { return torch::randint(3, 9, {1}).item<int64_t>(); };
    auto ids = [](int64_t len) {
      auto t = torch::randint(4, 20, {len}, torch::kLong);
      return std::vector<int64_t>(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + len);
    };
    examples.push_back({ids(length()), ids(length())});
    rows.push_back(i);
  }
  return make_batch(examples, rows);
}

double max_abs(const torch::Tensor& t) {
  return t.abs().max().item<double>();
}

// Error budget of a bf16 forward pass against fp32: every product rounds its operands to 2^-9, and a
// path through this model crosses about 15 products (3 per encoder layer, 5 per decoder layer with the
// FFN's two, the projection). Independent roundings add up to about √15·2·2^-9 ≈ 1.5% of the logits'
// scale; 5% leaves room, and a wrong cast (a weight or an activation garbled) costs O(100%).
constexpr double kBf16ModelTolerance = 0.05;

TEST(Bf16Model, LogitsAreFloat32AndCloseToFp32) {
  torch::manual_seed(1);
  Transformer model(tiny_model(), 20, 20);
  model->eval();
  const Batch batch = random_batch(4, 2);
  torch::NoGradGuard no_grad;
  const auto reference = model->forward(batch.src, batch.tgt_in);  // [B, T, V]
  model->set_record_attention(true);
  torch::Tensor logits;
  {
    const PrecisionScope bf16(Precision::Bf16);
    logits = model->forward(batch.src, batch.tgt_in);
  }
  ASSERT_EQ(logits.scalar_type(), torch::kFloat);
  const double error = max_abs(logits - reference);
  EXPECT_GT(error, 0.0) << "the bf16 forward equals the fp32 one: it did not run in bf16";
  EXPECT_LT(error, kBf16ModelTolerance * max_abs(reference));
  for (const auto& map : model->attention_maps().decoder_cross) {  // pictures get fp32 probabilities
    ASSERT_EQ(map.scalar_type(), torch::kFloat);
    // The kernel returns probabilities in bf16 (q's dtype), each rounded by at most 2^-9 of itself,
    // so a row sums to one within 2^-9; 1e-2 leaves room and catches unnormalised rows.
    EXPECT_TRUE(expect_close(map.sum(-1), torch::ones_like(map.sum(-1)), 1e-2, 0, "row sums"));
  }
}

// Decoding one step at a time against the bf16 KV caches gives the teacher-forced logits: the same
// operands, with fp32 sums taken in another order. A sum that differs in its last fp32 bit can round
// to the neighbouring bf16 value when it becomes the next product's operand (2^-8 of it); a few such
// flips along a path stay within 4·2^-9 of the logits' scale, and a wrong cache is O(100%).
TEST(Bf16Model, IncrementalDecodingMatchesTheFullPass) {
  torch::manual_seed(3);
  Transformer model(tiny_model(), 20, 20);
  model->eval();
  const Batch batch = random_batch(3, 4);
  torch::NoGradGuard no_grad;
  const PrecisionScope bf16(Precision::Bf16);
  const auto memory = model->encode(batch.src);
  const auto full = model->decode(batch.tgt_in, memory, batch.src);  // [B, T, V]
  auto state = model->start_state();
  for (int64_t t = 0; t < batch.tgt_in.size(1); ++t) {
    const auto step = model->decode_step(batch.tgt_in.select(1, t), memory, batch.src, state);  // [B, V]
    EXPECT_TRUE(expect_close(step, full.select(1, t), 4 * kBf16Rounding * max_abs(full), 0,
                             "step " + std::to_string(t)));
  }
  EXPECT_EQ(state.self.front().k().scalar_type(), torch::kBFloat16);  // the caches hold bf16 K and V
}

TEST(Bf16TrainStep, KeepsFp32MastersGradientsAndAdamState) {
  torch::manual_seed(5);
  Transformer model(tiny_model(), 20, 20);
  torch::manual_seed(5);
  Transformer reference(tiny_model(), 20, 20);
  FusedAdam adam(model->parameters()), adam_ref(reference->parameters());
  const Batch batch = random_batch(8, 6);
  const auto before = model->parameters().front().detach().clone();
  StepOptions options{0.1, 0.0, 1e-3, Precision::Bf16};
  const StepResult r = train_step(model, adam, {batch}, options);
  options.precision = Precision::Fp32;
  const StepResult r_ref = train_step(reference, adam_ref, {batch}, options);
  ASSERT_TRUE(r.finite);
  EXPECT_FALSE(torch::equal(model->parameters().front(), before)) << "no update";
  for (const auto& p : model->parameters()) {
    EXPECT_EQ(p.scalar_type(), torch::kFloat);
    EXPECT_EQ(p.grad().scalar_type(), torch::kFloat);
  }
  for (const auto& state : adam.state()) {
    const auto& s = static_cast<const torch::optim::AdamParamState&>(*state.second);
    EXPECT_EQ(s.exp_avg().scalar_type(), torch::kFloat);
    EXPECT_EQ(s.exp_avg_sq().scalar_type(), torch::kFloat);
  }
  // The loss is computed in fp32 from fp32 logits; both it and the gradient norm follow fp32's
  // within the forward pass's error budget.
  EXPECT_NEAR(r.loss_sum, r_ref.loss_sum, kBf16ModelTolerance * r_ref.loss_sum);
  EXPECT_NEAR(r.grad_norm, r_ref.grad_norm, kBf16ModelTolerance * r_ref.grad_norm);
  EXPECT_NE(r.grad_norm, r_ref.grad_norm) << "the bf16 step equals the fp32 one: it did not run in bf16";
}

}  // namespace
}  // namespace qkv
