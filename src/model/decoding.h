// Decoding (Vaswani et al. 2017, §6.1): greedy and beam search over the incremental caches, with the
// GNMT length penalty lp(Y) = ((5 + |Y|) / 6)^α and a maximum output length a·|x| + b.
//
// Conventions:
// - |x| counts the source's non-padding tokens; |Y| counts the output tokens plus the closing </s>.
// - An output holds at most floor(a·|x| + b) tokens, and at most model.max_len - 1 (the positional
//   table's size): at that length </s> is forced (its log-probability is still the model's).
// - <pad> and <s> are never produced; <unk> may be.
// - Sources longer than model.max_len are truncated to model.max_len tokens, with one warning on stderr
//   per call. (Unknown words are the vocabulary's business: they arrive here as <unk>.)
// - Beam search keeps, per sentence, the `beam` best live prefixes by log-probability, taking the best
//   2·beam candidates per step as fairseq does: a candidate ending in </s> among the first `beam`
//   finishes a hypothesis (scored with the length penalty), the others fill the beam. A sentence stops
//   when it has `beam` finished hypotheses or nothing is left alive (early stop); finished sentences
//   leave the batch.
#pragma once

#include <vector>

#include "model/transformer.h"

namespace qkv {

struct SearchOptions {
  int64_t beam = 4;        // 1 = greedy
  double alpha = 0.6;      // length penalty exponent; 0 = none
  double max_len_a = 1.0;  // maximum output length = a * |source| + b
  int64_t max_len_b = 50;
  int64_t nbest = 1;        // hypotheses returned per sentence, best first; at most `beam`
  int64_t min_len = 0;      // </s> is not allowed before this many tokens (benchmarks force lengths)
  bool incremental = true;  // false recomputes the whole prefix at every step (tests, benchmarks)
};

struct Hypothesis {
  std::vector<int64_t> tokens;  // without <s> and </s>
  double score = 0.0;           // log-probability / lp(|Y|), the quantity beams are ranked by
  double log_prob = 0.0;        // sum of token log-probabilities, </s> included
};

// src [B, S] (kPadId padded) -> for each sentence, its n-best list sorted by score (best first).
// Runs in evaluation mode without gradients.
std::vector<std::vector<Hypothesis>> beam_search(Transformer& model, const torch::Tensor& src,
                                                 const SearchOptions& options);
// Greedy search (the argmax at every step; options.beam, alpha and nbest are ignored): for each
// sentence, its tokens without <s> and </s>.
std::vector<std::vector<int64_t>> greedy_search(Transformer& model, const torch::Tensor& src,
                                                const SearchOptions& options);

// lp(Y) = ((5 + length) / 6)^alpha, length = |Y| (tokens + </s>).
double length_penalty(int64_t length, double alpha);

}  // namespace qkv
