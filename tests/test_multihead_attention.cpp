// Multi-head attention (src/model/multihead_attention.h): agreement with torch::nn::MultiheadAttention
// (outputs and gradients, copied weights), finite-difference gradients w.r.t. inputs and every
// parameter, incremental decoding with the KV cache against a full causal recompute, cache reordering,
// recorded probabilities and the option contracts.
//
// Dimensions: B = batch, T = query length, S = key length, C = d_model, H = heads.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "model/multihead_attention.h"
#include "support.h"

namespace qkv {
namespace {

using test::expect_close;
using test::gradcheck;

const auto kF64 = torch::TensorOptions().dtype(torch::kDouble);

MultiheadAttention make_mha(int64_t d_model, int64_t heads, int64_t d_k = 0, int64_t d_v = 0) {
  MultiheadAttentionOptions o;
  o.d_model = d_model;
  o.heads = heads;
  o.d_k = d_k;
  o.d_v = d_v;
  MultiheadAttention mha(o);
  mha->to(torch::kDouble);
  return mha;
}

// torch's MHA with our weights copied in (the parameter layouts are the same by design).
torch::nn::MultiheadAttention torch_copy(const MultiheadAttention& ours) {
  const auto& o = ours->options();
  torch::nn::MultiheadAttention theirs(torch::nn::MultiheadAttentionOptions(o.d_model, o.heads));
  theirs->to(torch::kDouble);
  torch::NoGradGuard no_grad;
  theirs->in_proj_weight.copy_(ours->in_proj_weight);
  theirs->in_proj_bias.copy_(ours->in_proj_bias);
  theirs->out_proj->weight.copy_(ours->out_proj->weight);
  theirs->out_proj->bias.copy_(ours->out_proj->bias);
  return theirs;
}

std::vector<torch::Tensor> parameters_of(torch::nn::Module& m) {
  return m.parameters();
}

// Gradients of (out ∘ G).sum() w.r.t. `wrt`.
std::vector<torch::Tensor> grads(const torch::Tensor& out, const torch::Tensor& upstream,
                                 const std::vector<torch::Tensor>& wrt) {
  return torch::autograd::grad({(out * upstream).sum()}, wrt);
}

// [T, T] float mask with -inf above the diagonal, torch's causal convention.
torch::Tensor float_causal_mask(int64_t t) {
  return torch::triu(torch::full({t, t}, -INFINITY, kF64), 1);
}

TEST(MultiheadAttention, SelfAttentionMatchesTorch) {
  torch::manual_seed(0);
  auto ours = make_mha(16, 4);
  auto theirs = torch_copy(ours);
  auto mask = torch::zeros({2, 5}, torch::kBool);  // [B, T]
  mask[1].slice(0, 3).fill_(true);
  for (bool causal : {false, true}) {
    auto x = torch::randn({2, 5, 16}, kF64).requires_grad_(true);  // [B, T, C]
    auto out = ours->forward_self(x, mask, causal);                // [B, T, C]
    auto xt = x.transpose(0, 1);                                   // [T, B, C]: torch is sequence-first
    auto expected = std::get<0>(theirs->forward(xt, xt, xt, mask, /*need_weights=*/false,
                                                causal ? float_causal_mask(5) : torch::Tensor()))
                        .transpose(0, 1);
    // 1e-12: the same float64 products, summed in a different order.
    EXPECT_TRUE(expect_close(out, expected, 1e-12, 0, "output"));
    auto g = torch::randn_like(out);
    auto ours_wrt = parameters_of(*ours);
    ours_wrt.insert(ours_wrt.begin(), x);
    auto theirs_wrt = parameters_of(*theirs);
    theirs_wrt.insert(theirs_wrt.begin(), x);
    auto a = grads(out, g, ours_wrt), b = grads(expected, g, theirs_wrt);
    ASSERT_EQ(a.size(), b.size());
    // 1e-11: gradients sum over every position of the batch as well, so a little more rounding.
    for (size_t i = 0; i < a.size(); ++i) {
      EXPECT_TRUE(expect_close(a[i], b[i], 1e-11, 0, "gradient " + std::to_string(i)));
    }
  }
}

TEST(MultiheadAttention, CrossAttentionMatchesTorch) {
  torch::manual_seed(1);
  auto ours = make_mha(12, 3);
  auto theirs = torch_copy(ours);
  auto x = torch::randn({3, 4, 12}, kF64).requires_grad_(true);       // [B, T, C]
  auto memory = torch::randn({3, 6, 12}, kF64).requires_grad_(true);  // [B, S, C]
  auto mask = torch::zeros({3, 6}, torch::kBool);                     // [B, S]
  mask[0].slice(0, 2).fill_(true);
  mask[2].slice(0, 5).fill_(true);
  auto out = ours->forward_cross(x, memory, mask);  // [B, T, C]
  auto mt = memory.transpose(0, 1);                 // [S, B, C]
  auto expected = std::get<0>(theirs->forward(x.transpose(0, 1), mt, mt, mask, false)).transpose(0, 1);
  EXPECT_TRUE(expect_close(out, expected, 1e-12, 0, "output"));  // as above
  auto g = torch::randn_like(out);
  auto ours_wrt = parameters_of(*ours), theirs_wrt = parameters_of(*theirs);
  for (auto* list : {&ours_wrt, &theirs_wrt}) list->insert(list->begin(), {x, memory});
  auto a = grads(out, g, ours_wrt), b = grads(expected, g, theirs_wrt);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_TRUE(expect_close(a[i], b[i], 1e-11, 0, "gradient " + std::to_string(i)));  // as above
  }
}

// Finite differences with d_k != d_v and H·d_k != C (Table 3 rows A and B), where torch's layout
// does not reach: every input and parameter.
TEST(MultiheadAttention, GradcheckSelfAndCross) {
  torch::manual_seed(2);
  auto mha = make_mha(6, 2, /*d_k=*/4, /*d_v=*/3);
  EXPECT_EQ(mha->in_proj_weight.sizes(), (std::vector<int64_t>{2 * 8 + 6, 6}));
  EXPECT_EQ(mha->out_proj->weight.sizes(), (std::vector<int64_t>{6, 6}));
  auto x = torch::randn({2, 3, 6}, kF64).requires_grad_(true);       // [B, T, C]
  auto memory = torch::randn({2, 4, 6}, kF64).requires_grad_(true);  // [B, S, C]
  auto self_mask = torch::zeros({2, 3}, torch::kBool);
  self_mask[1][2] = true;
  auto memory_mask = torch::zeros({2, 4}, torch::kBool);
  memory_mask[0].slice(0, 2).fill_(true);
  std::vector<torch::Tensor> inputs{x, memory};
  for (auto& p : mha->parameters()) inputs.push_back(p);
  // Tolerances: central differences with eps 1e-6 in float64 have truncation error ~eps² · f''' and
  // rounding error ~1e-16 / eps ≈ 1e-10; 1e-7 leaves a wide margin without hiding a wrong formula.
  test::GradcheckOptions options;
  options.atol = 1e-7;
  EXPECT_TRUE(gradcheck(
      [&](const std::vector<torch::Tensor>& in) {
        return mha->forward_self(in[0], self_mask, /*causal=*/true);
      },
      inputs, options));
  EXPECT_TRUE(gradcheck(
      [&](const std::vector<torch::Tensor>& in) { return mha->forward_cross(in[0], in[1], memory_mask); },
      inputs, options));
}

// Feeding the steps one at a time (and then two at a time) through the cache gives what one causal
// pass over the whole sequence gives.
QKV_DEVICE_TEST(MultiheadAttention, IncrementalEqualsFullCausal) {
  torch::manual_seed(3);
  auto mha = make_mha(8, 2, 3, 5);
  mha->to(device);
  auto x = torch::randn({2, 6, 8}, kF64.device(device));  // [B, T, C]
  auto full = mha->forward_self(x, {}, /*causal=*/true);  // [B, T, C]
  for (int64_t chunk : {1, 2}) {
    KVCache cache;
    std::vector<torch::Tensor> steps;
    for (int64_t t = 0; t < 6; t += chunk)
      steps.push_back(mha->forward_self(x.narrow(1, t, chunk), {}, true, &cache));
    EXPECT_EQ(cache.k().sizes(), (std::vector<int64_t>{2, 2, 6, 3}));
    EXPECT_EQ(cache.v().sizes(), (std::vector<int64_t>{2, 2, 6, 5}));
    // 1e-12: the same float64 sums over a prefix.
    EXPECT_TRUE(expect_close(torch::cat(steps, 1), full, 1e-12, 0, "chunk " + std::to_string(chunk)));
  }
}

TEST(MultiheadAttention, CrossCacheIsFilledOnceAndReused) {
  torch::manual_seed(4);
  auto mha = make_mha(8, 2);
  auto x = torch::randn({2, 3, 8}, kF64), memory = torch::randn({2, 5, 8}, kF64);
  auto expected = mha->forward_cross(x, memory);
  KVCache cache;
  auto first = mha->forward_cross(x, memory, {}, &cache);
  ASSERT_TRUE(cache.defined());
  EXPECT_EQ(cache.k().sizes(), (std::vector<int64_t>{2, 2, 5, 4}));
  auto second = mha->forward_cross(x, /*memory=*/{}, {}, &cache);  // memory no longer needed
  // Exact (0): the same products on the same numbers, cached or not.
  EXPECT_TRUE(expect_close(first, expected, 0, 0, "first"));
  EXPECT_TRUE(expect_close(second, expected, 0, 0, "second"));
}

TEST(MultiheadAttention, CacheReorderFollowsTheIndex) {
  torch::manual_seed(5);
  auto mha = make_mha(8, 2);
  auto x = torch::randn({3, 4, 8}, kF64);
  auto index = torch::tensor({2, 0, 0}, torch::kInt64);
  KVCache cache;
  mha->forward_self(x.narrow(1, 0, 3), {}, true, &cache);
  cache.reorder(index);
  auto step = mha->forward_self(x.index_select(0, index).narrow(1, 3, 1), {}, true, &cache);  // [3, 1, C]
  auto expected = mha->forward_self(x.index_select(0, index), {}, true).narrow(1, 3, 1);
  EXPECT_TRUE(expect_close(step, expected, 1e-12, 0, "reordered step"));  // as above
}

// A self-attention cache appended to past its first capacity (16 steps) and reordered on the way
// holds exactly the keys and values fed to it, in the reordered rows.
TEST(MultiheadAttention, CacheGrowsAndReordersExactly) {
  torch::manual_seed(7);
  auto k = torch::randn({3, 2, 21, 4}, kF64), v = torch::randn({3, 2, 21, 5}, kF64);  // [B, H, T, D]
  const auto index = torch::tensor({2, 2, 0}, torch::kInt64);
  KVCache cache;
  for (int64_t t = 0; t < 10; ++t) cache.append(k.narrow(2, t, 1), v.narrow(2, t, 1));
  cache.reorder(index);
  cache.append(k.index_select(0, index).narrow(2, 10, 9), v.index_select(0, index).narrow(2, 10, 9));
  cache.reorder(torch::tensor({1, 2}, torch::kInt64));
  const auto rows = torch::tensor({2, 0}, torch::kInt64);  // the original rows now held
  for (int64_t t = 19; t < 21; ++t)
    cache.append(k.index_select(0, rows).narrow(2, t, 1), v.index_select(0, rows).narrow(2, t, 1));
  // Exact (0): copies only.
  EXPECT_TRUE(expect_close(cache.k(), k.index_select(0, rows), 0, 0, "keys"));
  EXPECT_TRUE(expect_close(cache.v(), v.index_select(0, rows), 0, 0, "values"));
}

// G = 3 query rows per memory row (beam search's hypotheses of one sentence) give what the memory
// repeated for every row gives, with and without the cache.
TEST(MultiheadAttention, CrossAttentionSharesTheMemoryOfAGroup) {
  torch::manual_seed(8);
  auto mha = make_mha(8, 2);
  auto x = torch::randn({6, 2, 8}, kF64), memory = torch::randn({2, 5, 8}, kF64);  // G = 3, B = 2
  auto mask = torch::zeros({2, 5}, torch::kBool);
  mask[1].slice(0, 3).fill_(true);
  const auto expected =
      mha->forward_cross(x, memory.repeat_interleave(3, 0), mask.repeat_interleave(3, 0));  // [6, 2, C]
  KVCache cache;
  const auto first = mha->forward_cross(x, memory, mask, &cache);
  EXPECT_EQ(cache.k().sizes(), (std::vector<int64_t>{2, 2, 5, 4}));  // one row per memory row
  const auto second = mha->forward_cross(x, /*memory=*/{}, mask, &cache);
  // 1e-12: float64; the projection of the memory runs over 2 rather than 6 rows (the products' row
  // count may change the order of their sums), the attention itself is the same.
  EXPECT_TRUE(expect_close(first, expected, 1e-12, 0, "first"));
  EXPECT_TRUE(expect_close(second, expected, 1e-12, 0, "second"));
  EXPECT_THROW(mha->forward_cross(x.narrow(0, 0, 5), memory, mask), c10::Error);  // 5 rows for 2
}

TEST(MultiheadAttention, RecordsPerHeadProbabilities) {
  torch::manual_seed(6);
  auto mha = make_mha(8, 4);
  auto x = torch::randn({2, 3, 8}, kF64), memory = torch::randn({2, 5, 8}, kF64);
  auto mask = torch::zeros({2, 5}, torch::kBool);
  mask[1].slice(0, 3).fill_(true);
  EXPECT_FALSE(mha->last_attention().defined());
  mha->set_record_attention(true);
  mha->forward_cross(x, memory, mask);
  const auto& p = mha->last_attention();  // [B, H, T, S]
  ASSERT_EQ(p.sizes(), (std::vector<int64_t>{2, 4, 3, 5}));
  // 1e-12: float64 softmax rows of five, normalised by their sum.
  EXPECT_TRUE(expect_close(p.sum(-1), torch::ones({2, 4, 3}, kF64), 1e-12, 0, "row sums"));
  EXPECT_EQ(p[1].slice(2, 3).abs().max().item<double>(), 0.0);  // padding gets no attention
  mha->forward_self(x, {}, /*causal=*/true);
  EXPECT_EQ(mha->last_attention()[0][0][0][1].item<double>(), 0.0);  // nor does the future
}

TEST(MultiheadAttention, DropoutOnlyWhileTraining) {
  torch::manual_seed(7);
  MultiheadAttentionOptions o;
  o.d_model = 8;
  o.heads = 2;
  o.dropout = 0.5;
  MultiheadAttention mha(o);
  auto x = torch::randn({2, 4, 8});
  mha->eval();
  EXPECT_TRUE(torch::equal(mha->forward_self(x), mha->forward_self(x)));
  mha->train();
  EXPECT_FALSE(torch::equal(mha->forward_self(x), mha->forward_self(x)));
}

TEST(MultiheadAttention, OptionContracts) {
  MultiheadAttentionOptions o;
  o.d_model = 10;
  o.heads = 4;
  EXPECT_THROW(MultiheadAttention{o}, c10::Error);  // 4 does not divide 10 ...
  o.d_k = 3;
  o.d_v = 2;
  o.bias = false;
  MultiheadAttention mha(o);  // ... unless the head widths are given
  EXPECT_EQ(mha->options().d_k, 3);
  EXPECT_FALSE(mha->in_proj_bias.defined());
  EXPECT_EQ(mha->parameters().size(), 2u);  // in_proj_weight, out_proj.weight
  EXPECT_EQ(mha->forward_self(torch::randn({1, 2, 10})).sizes(), (std::vector<int64_t>{1, 2, 10}));
  EXPECT_THROW(mha->forward_self(torch::randn({1, 2, 9})), c10::Error);
}

}  // namespace
}  // namespace qkv
