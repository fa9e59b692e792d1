// Decoding (Vaswani et al. 2017, §6.1): greedy and beam search over the incremental caches, with the
// GNMT length penalty lp(Y) = ((5 + |Y|) / 6)^α and a maximum output length a·|x| + b.
#pragma once

#include <vector>

#include "model/transformer.h"

namespace qkv {

struct SearchOptions {
  int64_t beam = 4;         // 1 = greedy
  double alpha = 0.6;       // length penalty exponent; 0 = none
  double max_len_a = 1.0;   // maximum output length = a * |source| + b
  int64_t max_len_b = 50;
  int64_t nbest = 1;        // hypotheses returned per sentence, best first
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
std::vector<std::vector<int64_t>> greedy_search(Transformer& model, const torch::Tensor& src,
                                                const SearchOptions& options);

}  // namespace qkv
