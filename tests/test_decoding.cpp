// Decoding (src/model/decoding.h): the incremental caches against a full recompute, beam 1 against
// greedy, beam search against exhaustive enumeration on a tiny model, n-best order, length limits,
// over-long sources and the model's mode.
//
// Dimensions: B = batch, S = source length, T = target length, V = vocabulary.
#include <algorithm>
#include <cmath>
#include <functional>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "base/error.h"
#include "base/special_tokens.h"
#include "model/decoding.h"
#include "support.h"

namespace qkv {
namespace {

Transformer make(int64_t vocab, int64_t seed, double noise = 0.3) {
  ModelConfig m;
  m.d_model = 16, m.d_ff = 24, m.heads = 2, m.encoder_layers = 2, m.decoder_layers = 2;
  m.dropout = 0.1, m.max_len = 32;  // dropout must be switched off by the search itself
  torch::manual_seed(seed);
  Transformer model(m, vocab, vocab);
  model->to(torch::kDouble);
  torch::NoGradGuard no_grad;
  // Sharper distributions than the initialisation's, so that </s> wins now and then.
  for (auto& p : model->parameters()) p.add_(torch::randn_like(p) * noise);
  return model;
}

// Three sources of lengths 5, 3 and 6, padded to [3, 6].
torch::Tensor sources(int64_t vocab) {
  auto src = torch::randint(kUnkId + 1, vocab, {3, 6});
  src[0].slice(0, 5).fill_(kPadId);
  src[1].slice(0, 3).fill_(kPadId);
  return src;
}

TEST(Decoding, LengthPenalty) {
  EXPECT_DOUBLE_EQ(length_penalty(7, 0.0), 1.0);
  EXPECT_DOUBLE_EQ(length_penalty(1, 0.6), 1.0);  // (5 + 1) / 6 = 1
  EXPECT_NEAR(length_penalty(10, 0.6), std::pow(2.5, 0.6), 1e-15);
}

// Seed 8 is one where some hypotheses end with </s> before their length limit and others reach it,
// so both ways of finishing (and sentences leaving the batch at different steps) are covered.
TEST(Decoding, IncrementalEqualsFullRecompute) {
  auto model = make(13, 8);
  auto src = sources(13);
  SearchOptions options;
  options.beam = 3, options.nbest = 3, options.max_len_a = 1.0, options.max_len_b = 4;
  auto cached = beam_search(model, src, options);
  options.incremental = false;
  auto recomputed = beam_search(model, src, options);
  ASSERT_EQ(cached.size(), 3u);
  const std::vector<size_t> limit{9, 7, 10};  // |x| + 4
  int64_t early = 0;
  for (size_t b = 0; b < cached.size(); ++b) {
    ASSERT_EQ(cached[b].size(), recomputed[b].size());
    for (size_t i = 0; i < cached[b].size(); ++i) {
      EXPECT_EQ(cached[b][i].tokens, recomputed[b][i].tokens) << "sentence " << b << " rank " << i;
      // 1e-9: float64 log-probabilities summed over <= 10 steps, the same up to summation order.
      EXPECT_NEAR(cached[b][i].log_prob, recomputed[b][i].log_prob, 1e-9);
      early += cached[b][i].tokens.size() < limit[b];
    }
  }
  EXPECT_GT(early, 0);
  EXPECT_LT(early, 9);
  options.incremental = true;
  auto greedy_cached = greedy_search(model, src, options);
  options.incremental = false;
  EXPECT_EQ(greedy_cached, greedy_search(model, src, options));
}

// The base model's depth (6 + 6 layers, narrow to stay fast) and long outputs: 60 tokens forced (</s>
// ruled out before, forced after), so every row runs 60 steps through the caches and beam search
// reorders them at every step. In float64 the two paths agree exactly on every choice; float32's
// rounding can tip near-ties either way at this size (`qkv bench decode` shows it), float64's cannot.
TEST(Decoding, IncrementalEqualsFullRecomputeAtDepthSixOverLongOutputs) {
  ModelConfig m;
  m.d_model = 32, m.d_ff = 64, m.heads = 4, m.encoder_layers = 6, m.decoder_layers = 6, m.max_len = 80;
  const int64_t vocab = 50, out_len = 60;
  torch::manual_seed(16);
  Transformer model(m, vocab, vocab);
  model->to(torch::kDouble);
  {
    torch::NoGradGuard no_grad;
    for (auto& p : model->parameters()) p.add_(torch::randn_like(p) * 0.3);  // sharper distributions
  }
  auto src = torch::randint(kUnkId + 1, vocab, {4, 12});  // [B, S]
  src[1].slice(0, 7).fill_(kPadId);
  SearchOptions options;
  options.nbest = 1, options.min_len = out_len, options.max_len_a = 0.0, options.max_len_b = out_len;
  for (int64_t beam : {1, 4}) {
    options.beam = beam;
    options.incremental = true;
    auto cached = beam_search(model, src, options);
    auto greedy_cached = greedy_search(model, src, options);
    options.incremental = false;
    auto recomputed = beam_search(model, src, options);
    EXPECT_EQ(greedy_cached, greedy_search(model, src, options)) << "greedy";
    for (size_t b = 0; b < cached.size(); ++b) {
      ASSERT_EQ(cached[b].front().tokens.size(), static_cast<size_t>(out_len));
      EXPECT_EQ(cached[b].front().tokens, recomputed[b].front().tokens)
          << "beam " << beam << " sentence " << b;
      // 1e-9: float64 log-probabilities summed over 61 steps, the same up to the order of operations.
      EXPECT_NEAR(cached[b].front().log_prob, recomputed[b].front().log_prob, 1e-9);
      if (beam == 1) {
        EXPECT_EQ(cached[b].front().tokens, greedy_cached[b]);
      }
    }
  }
}

TEST(Decoding, BeamOneEqualsGreedy) {
  for (int64_t seed : {2, 3, 4}) {
    auto model = make(13, seed);
    auto src = sources(13);
    SearchOptions options;
    options.beam = 1, options.nbest = 1, options.max_len_b = 8;
    auto greedy = greedy_search(model, src, options);
    auto beam = beam_search(model, src, options);
    for (size_t b = 0; b < greedy.size(); ++b) {
      ASSERT_EQ(beam[b].size(), 1u);
      EXPECT_EQ(beam[b][0].tokens, greedy[b]) << "seed " << seed << " sentence " << b;
    }
  }
}

// log P(y | x) of one complete output (</s> appended) from a teacher-forced pass.
double sequence_log_prob(Transformer& model, const torch::Tensor& src, const std::vector<int64_t>& y) {
  std::vector<int64_t> input{kBosId};
  input.insert(input.end(), y.begin(), y.end());
  auto lp = torch::log_softmax(model->forward(src, torch::tensor(input).unsqueeze(0))[0], -1);  // [T, V]
  double total = 0.0;
  for (size_t t = 0; t <= y.size(); ++t) total += lp[t][t < y.size() ? y[t] : kEosId].item<double>();
  return total;
}

// Vocabulary: the 4 specials + 4 words; outputs of at most 3 tokens over {<unk>, 4 words}: 1 + 5 +
// 25 + 125 = 156 sequences. A beam of 160 keeps every prefix (at most 25 · 6 = 150 candidates per
// step), so beam search must find exactly what enumerating all 156 finds. The seed is one where the
// best output has two tokens and neither greedy nor a beam of 2 finds it.
TEST(Decoding, WideBeamEqualsExhaustiveEnumeration) {
  auto model = make(8, 26, 0.5);
  model->eval();
  torch::NoGradGuard no_grad;
  auto src = torch::tensor({{4, 6, 5, 7}});
  std::vector<std::pair<double, std::vector<int64_t>>> all;  // (log P, y)
  std::function<void(std::vector<int64_t>&)> enumerate = [&](std::vector<int64_t>& y) {
    all.emplace_back(sequence_log_prob(model, src, y), y);
    if (y.size() == 3) return;
    for (int64_t token = kUnkId; token < 8; ++token) {
      y.push_back(token);
      enumerate(y);
      y.pop_back();
    }
  };
  std::vector<int64_t> empty;
  enumerate(empty);
  ASSERT_EQ(all.size(), 156u);

  for (double alpha : {0.0, 0.6}) {
    SCOPED_TRACE(alpha);
    std::vector<std::pair<double, std::vector<int64_t>>> scored;
    for (const auto& [lp, y] : all) scored.emplace_back(lp / length_penalty(y.size() + 1, alpha), y);
    std::stable_sort(scored.begin(), scored.end(),
                     [](const auto& a, const auto& b) { return a.first > b.first; });
    SearchOptions options;
    options.beam = 160, options.nbest = 10, options.alpha = alpha, options.max_len_a = 0,
    options.max_len_b = 3;
    auto best = beam_search(model, src, options)[0];
    ASSERT_EQ(best.size(), 10u);
    for (size_t i = 0; i < best.size(); ++i) {
      EXPECT_EQ(best[i].tokens, scored[i].second) << "alpha " << alpha << " rank " << i;
      // 1e-10: float64, the same per-step log-probabilities summed in the same order.
      EXPECT_NEAR(best[i].score, scored[i].first, 1e-10) << "alpha " << alpha << " rank " << i;
    }
    if (alpha == 0.0) {
      EXPECT_EQ(best[0].tokens.size(), 2u);
      options.beam = 2, options.nbest = 1;
      EXPECT_LT(beam_search(model, src, options)[0][0].score,
                best[0].score - 1e-3);  // a narrow beam misses it
    }
  }
}

TEST(Decoding, NBestSortedAndScoredWithTheLengthPenalty) {
  auto model = make(13, 6);
  SearchOptions options;
  options.beam = 5, options.nbest = 5, options.max_len_b = 6;
  for (const auto& list : beam_search(model, sources(13), options)) {
    ASSERT_FALSE(list.empty());
    for (size_t i = 0; i < list.size(); ++i) {
      const auto& h = list[i];
      EXPECT_NEAR(h.score, h.log_prob / length_penalty(h.tokens.size() + 1, 0.6), 1e-12);
      if (i > 0) {
        EXPECT_GE(list[i - 1].score, h.score);
      }
      for (auto token : h.tokens) EXPECT_TRUE(token != kPadId && token != kBosId && token != kEosId);
    }
  }
}

TEST(Decoding, LengthLimits) {
  auto model = make(13, 7);
  auto src = sources(13);  // lengths 5, 3, 6
  SearchOptions options;
  options.beam = 3, options.max_len_a = 0.5, options.max_len_b = 1;  // at most 3, 2, 4 tokens
  const std::vector<size_t> limit{3, 2, 4};
  auto beams = beam_search(model, src, options);
  auto greedy = greedy_search(model, src, options);
  for (size_t b = 0; b < 3; ++b) {
    EXPECT_LE(beams[b][0].tokens.size(), limit[b]);
    EXPECT_LE(greedy[b].size(), limit[b]);
  }
  options.max_len_a = 0, options.max_len_b = 5, options.min_len = 5;  // exactly 5 tokens
  for (const auto& list : beam_search(model, src, options)) EXPECT_EQ(list[0].tokens.size(), 5u);
  for (const auto& tokens : greedy_search(model, src, options)) EXPECT_EQ(tokens.size(), 5u);
  options.max_len_b = 100;  // capped at model.max_len - 1 = 31 positions
  for (const auto& tokens : greedy_search(model, src, options)) EXPECT_LE(tokens.size(), 31u);
}

TEST(Decoding, OverLongSourceIsTruncatedWithAWarning) {
  auto model = make(13, 8);  // max_len 32
  auto src = torch::randint(kUnkId + 1, 13, {2, 40});
  SearchOptions options;
  options.max_len_a = 0, options.max_len_b = 3;
  testing::internal::CaptureStderr();
  auto out = beam_search(model, src, options);
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("2 source sentence(s) longer than model.max_len = 32"), std::string::npos) << err;
  EXPECT_EQ(out.size(), 2u);
  // The same as decoding the first 32 tokens.
  EXPECT_EQ(out[0][0].tokens, beam_search(model, src.narrow(1, 0, 32), options)[0][0].tokens);
}

TEST(Decoding, RunsInEvaluationModeAndRestoresTheMode) {
  auto model = make(13, 9);
  model->train();
  auto src = sources(13);
  SearchOptions options;
  options.max_len_b = 5;
  auto first = beam_search(model, src, options);
  EXPECT_TRUE(model->is_training());
  auto second = beam_search(model, src, options);  // no dropout: deterministic
  for (size_t b = 0; b < first.size(); ++b) EXPECT_EQ(first[b][0].tokens, second[b][0].tokens);
  options.nbest = 5;
  EXPECT_THROW(beam_search(model, src, options), c10::Error);  // nbest > beam
}

}  // namespace
}  // namespace qkv
