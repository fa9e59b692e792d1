// FusedAdam (src/train/fused_adam.h) against libtorch's torch::optim::Adam: ten steps on parameters
// of several sizes (odd ones, ones not a multiple of 16, ones split over threads) with the learning
// rate changed between steps as training changes it; a state saved by libtorch's Adam (in a qkv
// checkpoint) continued by FusedAdam; the tensor-operation path (float64, non-contiguous, amsgrad,
// weight decay) equal to libtorch's bit for bit; a skipped step and lazy state creation; the vector
// loops of every width this CPU has, with one thread and two, equal bit for bit.
#include <cmath>
#include <vector>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "checkpoint/checkpoint.h"
#include "ops/cpu_features.h"
#include "support.h"
#include "train/fused_adam.h"
#include "train/train_step.h"

namespace qkv {
namespace {

using torch::optim::Adam;
using torch::optim::AdamOptions;
using torch::optim::AdamParamState;

constexpr double kUnitRoundoff = 0x1p-24;  // float32: a correctly rounded operation errs by at most this
constexpr int64_t kSteps = 10;

// Parameters of the given shapes in a module (so that a checkpoint can hold them), of the size of
// initialised weights. Sizes below, at and above 16 lanes, odd ones, and one over the loop's
// 16384-element chunk (split across threads). `strided`: every parameter a view with stride 2 (not
// contiguous: FusedAdam's tensor-operation path).
const std::vector<std::vector<int64_t>> kShapes = {{1}, {15}, {16}, {17}, {33, 7}, {512}, {64, 129}, {70001}};

struct ParamsImpl : torch::nn::Module {
  explicit ParamsImpl(torch::ScalarType dtype = torch::kFloat, bool strided = false) {
    torch::manual_seed(5);
    for (size_t i = 0; i < kShapes.size(); ++i) {
      auto shape = kShapes[i];
      if (strided) shape.push_back(2);
      auto p = 0.1 * torch::randn(shape, dtype);
      register_parameter(fmt::format("p{}", i), strided ? p.select(-1, 0).detach() : p);
    }
  }
};
TORCH_MODULE(Params);

AdamOptions qkv_options() {
  return AdamOptions(1e-3).betas(std::make_tuple(0.9, 0.98)).eps(1e-9);
}

// Step t's gradient of parameter i: random, with a scale that changes from step to step and a few
// elements kept tiny (so that eps matters for them and their m swings in sign). Parameter 0 has none
// before step 3, as a parameter that no batch has used yet: its state is created later.
torch::Tensor gradient(int64_t t, size_t i, const torch::Tensor& like) {
  if (i == 0 && t < 3) return {};
  torch::manual_seed(static_cast<uint64_t>(100 * t + static_cast<int64_t>(i)));
  const double scale = std::pow(2.0, static_cast<double>(t % 4) - 2);
  auto g = torch::randn(like.sizes(), like.options()) * scale;
  return torch::where(torch::rand(like.sizes(), like.device()) < 0.05, g * 1e-6, g);
}

void set_gradients(Params& params, int64_t t) {
  auto ps = params->parameters();
  for (size_t i = 0; i < ps.size(); ++i) ps[i].mutable_grad() = gradient(t, i, ps[i]);
}

// The learning rate of step t: it changes as the schedule changes it, through set_learning_rate.
double lr_at(int64_t t) {
  return 1e-3 * (1.0 + static_cast<double>(t % 3));
}

const AdamParamState& state_of(const torch::optim::Optimizer& o, const torch::Tensor& p) {
  const AdamParamState* s = adam_state(o, p);
  if (s == nullptr) throw std::runtime_error("no Adam state for a parameter");
  return *s;
}

// How far FusedAdam's float32 loop may be from libtorch's Adam, element by element, after each step:
// a first-order bound on the two implementations' rounding on the same inputs, carried from step to
// step (computed in float64 from libtorch's values; libtorch's Adam with equal float32 scalars is the
// reference, and both err from exact arithmetic by at most the amounts below, so they differ by twice).
//   v = β2·v + ((1 − β2)·g)·g: a sum of non-negative terms; at most 4 roundings, each within u·v_t
//       (every intermediate is at most v_t), and an earlier error shrinks by β2:  Δv += 2·4u·v_t.
//   m = β1·m + (1 − β1)·g: at most 3 roundings, each within u·max(|m_{t−1}|, |g|):  Δm += 2·3u·max.
//   d = sqrt(v)/sqrt(1 − β2^t) + ε: sqrt halves v's relative error; 3 roundings (sqrt, the scaling,
//       the sum, whose terms are non-negative): Δd/d <= ½·Δv/v + 3u.
//   p = p − s·m/d (s = lr/(1 − β1^t), rounded to float32 alike in both): the quotient, the product and
//       the difference round (3u, the last on |p_t|), and Δm and Δd carry through:
//       Δp += 2·(3u·|s·m/d| + u·|p_t|) + s·Δm/d + |s·m/d|·Δd/d.
// The bound is then doubled, for the second-order terms this drops.
struct Bound {
  torch::Tensor m, v, p;  // float64, like the parameter
  explicit Bound(const torch::Tensor& like)
      : m(torch::zeros(like.sizes(), torch::kDouble)), v(m.clone()), p(m.clone()) {}

  void add_step(const torch::Tensor& m_prev, const torch::Tensor& g, const AdamParamState& now,
                const torch::Tensor& p_now, double lr, int64_t t, const AdamOptions& o) {
    const double u = kUnitRoundoff;
    const double b1 = std::get<0>(o.betas()), b2 = std::get<1>(o.betas());
    const auto m_t = now.exp_avg().to(torch::kDouble), v_t = now.exp_avg_sq().to(torch::kDouble);
    v += 2 * 4 * u * v_t;
    m += 2 * 3 * u * torch::maximum(m_prev.to(torch::kDouble).abs(), g.to(torch::kDouble).abs());
    const double s = lr / (1 - std::pow(b1, static_cast<double>(t)));
    const auto d = v_t.sqrt() / std::sqrt(1 - std::pow(b2, static_cast<double>(t))) + o.eps();
    const auto rel_d = 0.5 * v / v_t.clamp_min(1e-300) + 3 * u;
    const auto update = (s * m_t / d).abs();
    p += 2 * (3 * u * update + u * p_now.to(torch::kDouble).abs()) + s * m / d + update * rel_d;
  }
};

::testing::AssertionResult within(const torch::Tensor& actual, const torch::Tensor& expected,
                                  const torch::Tensor& bound, const std::string& what) {
  const auto err = (actual.to(torch::kDouble) - expected.to(torch::kDouble)).abs();
  const auto over = err > 2 * bound;  // 2: the second-order terms the bound leaves out
  if (!over.any().item<bool>()) return ::testing::AssertionSuccess();
  const auto i = over.flatten().nonzero()[0].item<int64_t>();
  return ::testing::AssertionFailure()
         << what << ": " << over.sum().item<int64_t>() << " element(s) out of bound, "
         << "first at flat index " << i << ": error " << err.flatten()[i].item<double>() << " > 2 x "
         << bound.flatten()[i].item<double>();
}

TEST(FusedAdam, UsesTheOneLoopOnFloat32CpuParameters) {
  Params params;
  if (!fused_adam_uses_cpu_loop(params->parameters()[0], qkv_options()))
    GTEST_SKIP() << "this CPU has no AVX2: FusedAdam uses libtorch's operations (tested below)";
  EXPECT_FALSE(fused_adam_uses_cpu_loop(params->parameters()[0], qkv_options().amsgrad(true)));
  EXPECT_FALSE(fused_adam_uses_cpu_loop(params->parameters()[0], qkv_options().weight_decay(0.1)));
  EXPECT_FALSE(fused_adam_uses_cpu_loop(params->parameters()[0].to(torch::kDouble), qkv_options()));
}

// Steps `first`..`last` on both sides with the same gradients and learning rates, FusedAdam's moments
// and parameters checked against libtorch's after each step within the carried bound. Both sides
// must start from equal parameters and states.
void step_alongside(Params& ours, FusedAdam& fused, Params& theirs, Adam& reference, int64_t first,
                    int64_t last) {
  const auto ps = ours->parameters(), qs = theirs->parameters();
  std::vector<Bound> bounds;
  for (const auto& p : ps) bounds.emplace_back(p);
  for (int64_t t = first; t <= last; ++t) {
    std::vector<torch::Tensor> m_prev;  // libtorch's m before this step (zeros before the first)
    for (const auto& q : qs) {
      const AdamParamState* s = adam_state(reference, q);
      m_prev.push_back(s ? s->exp_avg().clone() : torch::zeros_like(q));
    }
    set_gradients(ours, t);
    set_gradients(theirs, t);
    set_learning_rate(fused, lr_at(t));
    set_learning_rate(reference, lr_at(t));
    fused.step();
    reference.step();
    for (size_t i = 0; i < ps.size(); ++i) {
      const auto where = fmt::format("step {}, parameter {} {}", t, i, c10::str(ps[i].sizes()));
      if (!qs[i].grad().defined()) {  // no gradient yet: no state on either side
        EXPECT_EQ(adam_state(fused, ps[i]), nullptr) << where;
        ASSERT_EQ(adam_state(reference, qs[i]), nullptr) << where;
        continue;
      }
      const auto& mine = state_of(fused, ps[i]);
      const auto& libtorch = state_of(reference, qs[i]);
      ASSERT_EQ(mine.step(), libtorch.step()) << where;
      bounds[i].add_step(m_prev[i], qs[i].grad(), libtorch, qs[i], lr_at(t), libtorch.step(), qkv_options());
      EXPECT_TRUE(within(mine.exp_avg(), libtorch.exp_avg(), bounds[i].m, "m at " + where));
      EXPECT_TRUE(within(mine.exp_avg_sq(), libtorch.exp_avg_sq(), bounds[i].v, "v at " + where));
      EXPECT_TRUE(within(ps[i], qs[i], bounds[i].p, "p at " + where));
    }
  }
  // The bound is tight enough to see a wrong formula: it stays below a hundredth of one update
  // (about lr), which a mistake in the bias corrections or the moments would change by more.
  for (size_t i = 0; i < ps.size(); ++i) EXPECT_LT(bounds[i].p.max().item<double>(), 1e-2 * lr_at(1)) << i;
}

// The vector instruction sets this CPU has, narrowest first (empty without AVX2).
std::vector<Simd> vector_paths() {
  std::vector<Simd> paths;
  for (const auto simd : {Simd::Avx2, Simd::Avx512}) {
    if (simd <= cpu_simd()) paths.push_back(simd);
  }
  return paths;
}

// Runs f() with cpu_simd() capped at `simd`.
template <class F>
void with_simd(Simd simd, F&& f) {
  const auto before = limit_simd(simd);
  try {
    f();
  } catch (...) {
    limit_simd(before);
    throw;
  }
  limit_simd(before);
}

// Each vector loop this CPU has (on a CPU with none: the tensor-operation path, equal to libtorch).
TEST(FusedAdam, FollowsLibtorchsAdamWithinRoundingOverTenSteps) {
  auto paths = vector_paths();
  if (paths.empty()) paths.push_back(Simd::None);
  for (const auto simd : paths) {
    SCOPED_TRACE("simd " + std::to_string(static_cast<int>(simd)));
    with_simd(simd, [] {
      Params ours, theirs;
      FusedAdam fused(ours->parameters(), qkv_options());
      Adam reference(theirs->parameters(), qkv_options());
      step_alongside(ours, fused, theirs, reference, 1, kSteps);
      EXPECT_EQ(state_of(fused, ours->parameters()[0]).step(), kSteps - 2);  // created at step 3
      EXPECT_EQ(state_of(fused, ours->parameters()[1]).step(), kSteps);
    });
  }
}

// Ten steps of FusedAdam from the same start under each vector loop this CPU has, with one thread
// and with two (chunks split elsewhere): every parameter and moment equal bit for bit, since each
// element goes through the same correctly rounded lane operations whatever the width and the chunk
// (a run is reproducible across AVX2 and AVX-512 machines and thread counts). The tensor-operation
// path rounds differently (it divides by sqrt(1 − β2^t)), so this compares vector loops only.
TEST(FusedAdam, VectorWidthsAndThreadCountsAgreeBitForBit) {
  const auto paths = vector_paths();
  if (paths.empty()) GTEST_SKIP() << "this CPU has no AVX2: FusedAdam uses libtorch's operations";
  const int threads = at::get_num_threads();
  const auto run = [](Simd simd, int thread_count) {
    std::vector<torch::Tensor> states;
    with_simd(simd, [&] {
      at::set_num_threads(thread_count);
      Params params;
      FusedAdam fused(params->parameters(), qkv_options());
      for (int64_t t = 1; t <= kSteps; ++t) {
        set_gradients(params, t);
        set_learning_rate(fused, lr_at(t));
        fused.step();
      }
      for (const auto& p : params->parameters()) {
        EXPECT_TRUE(fused_adam_uses_cpu_loop(p, qkv_options()));
        const auto& s = state_of(fused, p);
        states.insert(states.end(), {p.clone(), s.exp_avg().clone(), s.exp_avg_sq().clone()});
      }
    });
    return states;
  };
  const auto expected = run(paths.front(), 1);
  for (const auto simd : paths) {
    for (const int thread_count : {1, 2}) {
      const auto got = run(simd, thread_count);
      ASSERT_EQ(got.size(), expected.size());
      for (size_t i = 0; i < got.size(); ++i) {
        EXPECT_TRUE(torch::equal(got[i], expected[i]))
            << "simd " << static_cast<int>(simd) << ", " << thread_count << " thread(s), tensor " << i;
      }
    }
  }
  at::set_num_threads(threads);
}

// A checkpoint written while training with libtorch's Adam (every qkv checkpoint before FusedAdam)
// resumes under FusedAdam: the same state objects come back and the run continues as libtorch's
// would. And the other way: FusedAdam's state is libtorch's format.
TEST(FusedAdam, ContinuesACheckpointOfLibtorchsAdam) {
  const test::TempDir temp;
  const std::string path = (temp.path / "step-4.pt").string();
  Params theirs;
  Adam reference(theirs->parameters(), qkv_options());
  for (int64_t t = 1; t <= 4; ++t) {
    set_gradients(theirs, t);
    set_learning_rate(reference, lr_at(t));
    reference.step();
  }
  save_checkpoint(path, *theirs, &reference, {{"step", 4}});

  Params ours(torch::kFloat);  // the same initial values; the checkpoint's replace them
  FusedAdam fused(ours->parameters(), qkv_options());
  LoadedCheckpoint checkpoint(path);
  checkpoint.load_model(*ours);
  checkpoint.load_optimizer(fused);
  const auto ps = ours->parameters(), qs = theirs->parameters();
  for (size_t i = 0; i < ps.size(); ++i) {
    ASSERT_TRUE(torch::equal(ps[i], qs[i])) << i;
    const auto& mine = state_of(fused, ps[i]);
    const auto& libtorch = state_of(reference, qs[i]);
    EXPECT_EQ(mine.step(), libtorch.step()) << i;
    EXPECT_TRUE(torch::equal(mine.exp_avg(), libtorch.exp_avg())) << i;
    EXPECT_TRUE(torch::equal(mine.exp_avg_sq(), libtorch.exp_avg_sq())) << i;
  }
  step_alongside(ours, fused, theirs, reference, 5, kSteps);

  // FusedAdam's state saved, loaded by libtorch's Adam: the same tensors.
  save_checkpoint(path, *ours, &fused, {{"step", kSteps}});
  Params back;
  Adam restored(back->parameters(), qkv_options());
  LoadedCheckpoint again(path);
  again.load_model(*back);
  again.load_optimizer(restored);
  for (size_t i = 0; i < ps.size(); ++i) {
    const auto& mine = state_of(fused, ps[i]);
    const auto& loaded = state_of(restored, back->parameters()[i]);
    EXPECT_EQ(loaded.step(), mine.step()) << i;
    EXPECT_TRUE(torch::equal(loaded.exp_avg(), mine.exp_avg())) << i;
    EXPECT_TRUE(torch::equal(loaded.exp_avg_sq(), mine.exp_avg_sq())) << i;
  }
}

// The tensor-operation path is libtorch's own sequence of operations: equal to libtorch's Adam bit for
// bit, over ten steps with changing learning rates, lazily created states included.
void expect_identical_to_libtorch(const torch::Device& device, torch::ScalarType dtype, bool strided,
                                  const AdamOptions& options, const std::string& what) {
  Params ours(dtype, strided), theirs(dtype, strided);
  if (!strided) {  // moving a strided view would make it contiguous
    ours->to(device);
    theirs->to(device);
  }
  FusedAdam fused(ours->parameters(), options);
  Adam reference(theirs->parameters(), options);
  const auto ps = ours->parameters(), qs = theirs->parameters();
  for (int64_t t = 1; t <= kSteps; ++t) {
    set_gradients(ours, t);
    set_gradients(theirs, t);
    set_learning_rate(fused, lr_at(t));
    set_learning_rate(reference, lr_at(t));
    fused.step();
    reference.step();
    for (size_t i = 0; i < ps.size(); ++i) {
      if (strided && ps[i].is_contiguous()) continue;  // {1}: one element is contiguous at any stride
      const auto where = fmt::format("{}: step {}, parameter {}", what, t, i);
      ASSERT_TRUE(torch::equal(ps[i], qs[i])) << where;
      if (!qs[i].grad().defined()) continue;
      const auto& mine = state_of(fused, ps[i]);
      const auto& libtorch = state_of(reference, qs[i]);
      EXPECT_EQ(mine.step(), libtorch.step()) << where;
      EXPECT_TRUE(torch::equal(mine.exp_avg(), libtorch.exp_avg())) << where;
      EXPECT_TRUE(torch::equal(mine.exp_avg_sq(), libtorch.exp_avg_sq())) << where;
      if (options.amsgrad()) {
        EXPECT_TRUE(torch::equal(mine.max_exp_avg_sq(), libtorch.max_exp_avg_sq())) << where;
      }
    }
  }
}

QKV_DEVICE_TEST(FusedAdam, TensorOperationPathEqualsLibtorchsAdam) {
  expect_identical_to_libtorch(device, torch::kDouble, false, qkv_options(), "float64");
  expect_identical_to_libtorch(device, torch::kFloat, false, qkv_options().amsgrad(true), "amsgrad");
  expect_identical_to_libtorch(device, torch::kFloat, false, qkv_options().weight_decay(0.01),
                               "weight decay");
  if (device.is_cuda())
    expect_identical_to_libtorch(device, torch::kFloat, false, qkv_options(), "CUDA float32");
  if (device.is_cpu()) expect_identical_to_libtorch(device, torch::kFloat, true, qkv_options(), "strided");
}

// Like libtorch's in-place operations, the update advances the parameter's version counter: a cached
// bf16 copy of a weight (ops/precision.h) sees that the weight changed.
TEST(FusedAdam, AdvancesTheParametersVersion) {
  Params params;
  FusedAdam fused(params->parameters(), qkv_options());
  set_gradients(params, 3);
  const auto p = params->parameters()[7];
  const auto before = p._version();
  fused.step();
  EXPECT_GT(p._version(), before);
}

}  // namespace
}  // namespace qkv
