// qkv's own parallel loops (at::parallel_for, compiled with OpenMP: see CMakeLists.txt) give the same
// bits on two threads as on one. The rest of the suite runs with ATen's default thread count (one on
// the 2-core machines it is written for), where these loops run on the calling thread only.
//
// Each loop splits its work so that no element is computed by two threads or in a different order:
//   - the attention tiles: every tile (heads × query rows) on one thread, its products
//     single-threaded inside the parallel region as they are on one thread;
//   - the single-query decoding kernel: one head per iteration;
//   - counter-based dropout and FusedAdam: element-wise, each element's value independent of the split.
// So the comparisons are exact. The sizes are small, but large enough for every loop to split: several
// head groups and row blocks, more elements than a dropout or Adam chunk (16,384).
#include <vector>

#include <ATen/Parallel.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "base/enums.h"
#include "ops/attention.h"
#include "ops/dropout.h"
#include "support.h"
#include "train/fused_adam.h"

namespace qkv {
namespace {

// Without OpenMP (a Clang build: see CMakeLists.txt) these loops run on the calling thread, so there
// is no split to check. oneDNN then divides each product between the threads itself, which changes
// its rounding with the thread count, so the comparisons below would not even hold.
#ifdef _OPENMP
#define QKV_SKIP_WITHOUT_OPENMP()
#else
#define QKV_SKIP_WITHOUT_OPENMP() \
  GTEST_SKIP() << "qkv built without OpenMP: its parallel loops run on the calling thread"
#endif

// Runs f with `threads` ATen threads and restores the previous count.
template <class F>
auto with_threads(int threads, F&& f) {
  const int before = at::get_num_threads();
  at::set_num_threads(threads);
  auto result = f();
  at::set_num_threads(before);
  return result;
}

bool same_bits(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!torch::equal(a[i], b[i])) return false;
  }
  return true;
}

// Forward output and the three input gradients of one attention call.
std::vector<torch::Tensor> attention_and_grads(AttentionKind impl, bool causal, bool padded, bool dropout) {
  torch::manual_seed(11);
  // T = 160: causal row blocks of 64 rows, stairs, and key blocks past the first; N = 12 heads.
  auto q = torch::randn({3, 4, 160, 24}, torch::requires_grad());
  auto k = torch::randn({3, 4, 160, 24}, torch::requires_grad());
  auto v = torch::randn({3, 4, 160, 16}, torch::requires_grad());
  AttentionOptions options;
  options.impl = impl;
  options.causal = causal;
  options.dropout_p = dropout ? 0.2 : 0.0;
  if (padded) {
    options.key_padding_mask = torch::zeros({3, 160}, torch::kBool);
    options.key_padding_mask[1].slice(0, 100).fill_(true);
  }
  auto out = attention(q, k, v, options);
  auto grads = torch::autograd::grad({out}, {q, k, v}, {torch::randn_like(out)});
  return {out.detach(), grads[0], grads[1], grads[2]};
}

TEST(Parallel, AttentionTilesGiveTheSameBitsOnTwoThreads) {
  QKV_SKIP_WITHOUT_OPENMP();
  for (auto impl : {AttentionKind::Standard, AttentionKind::MemoryEfficient}) {
    for (bool causal : {false, true}) {
      for (bool padded : {false, true}) {
        const bool dropout = causal && padded;
        const auto one = with_threads(1, [&] { return attention_and_grads(impl, causal, padded, dropout); });
        const auto two = with_threads(2, [&] { return attention_and_grads(impl, causal, padded, dropout); });
        EXPECT_TRUE(same_bits(one, two)) << to_string(impl) << (causal ? " causal" : "")
                                         << (padded ? " padded" : "") << (dropout ? " dropout" : "");
      }
    }
  }
}

TEST(Parallel, SingleQueryStepGivesTheSameBitsOnTwoThreads) {
  QKV_SKIP_WITHOUT_OPENMP();
  auto step = [] {
    torch::manual_seed(12);
    torch::NoGradGuard no_grad;
    auto q = torch::randn({16, 8, 1, 64});
    auto k = torch::randn({16, 8, 30, 64}), v = torch::randn({16, 8, 30, 64});
    return std::vector<torch::Tensor>{attention(q, k, v)};
  };
  EXPECT_TRUE(same_bits(with_threads(1, step), with_threads(2, step)));
}

TEST(Parallel, DropoutGivesTheSameMaskOnTwoThreads) {
  QKV_SKIP_WITHOUT_OPENMP();
  auto drop = [] {
    torch::manual_seed(13);
    auto x = torch::randn({5, 40000});
    return std::vector<torch::Tensor>{counter_dropout(x, 0.3, /*training=*/true)};
  };
  EXPECT_TRUE(same_bits(with_threads(1, drop), with_threads(2, drop)));
}

TEST(Parallel, FusedAdamGivesTheSameBitsOnTwoThreads) {
  QKV_SKIP_WITHOUT_OPENMP();
  auto train = [] {
    torch::manual_seed(14);
    auto p = (0.1 * torch::randn({3, 70001})).requires_grad_();
    FusedAdam adam({p}, torch::optim::AdamOptions(1e-3).betas(std::make_tuple(0.9, 0.98)).eps(1e-9));
    for (int step = 0; step < 3; ++step) {
      p.mutable_grad() = torch::randn_like(p);
      adam.step();
    }
    return std::vector<torch::Tensor>{p.detach().clone()};
  };
  EXPECT_TRUE(same_bits(with_threads(1, train), with_threads(2, train)));
}

}  // namespace
}  // namespace qkv
