// Corpus BLEU (Papineni et al. 2002) as sacreBLEU computes it by default, so that the numbers qkv
// reports are the numbers the field reports:
//   - each line is right-stripped and tokenized with mteval-v13a's rules ("13a");
//   - modified n-gram precisions p_n (n = 1..4) are pooled over the corpus: matches clipped by the
//     reference counts, summed, divided by the hypothesis n-gram totals;
//   - BLEU = BP · exp(¼ Σ log p_n), BP = exp(1 - r/c) when c < r (c, r: hypothesis and reference
//     token totals), else 1;
//   - smoothing 'exp' (NIST): the k-th order with zero matches gets p_n = 1 / (2^k · total_n); an order
//     with no hypothesis n-grams at all makes BLEU 0, and so does a corpus without a single match.
// One reference per sentence. Unlike sacreBLEU, an empty reference line is accepted (length 0).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace qkv {

// sacreBLEU's default tokenizer, "13a": splits punctuation and symbols off words, periods and
// commas unless next to a digit, and dashes after a digit; returns the tokens joined by one space.
std::string tokenize_13a(std::string_view line);

// Sufficient statistics: sums over sentences, so corpora can be scored in pieces and added up.
struct BleuStats {
  std::array<int64_t, 4> matches{};  // clipped n-gram matches, n = 1..4
  std::array<int64_t, 4> totals{};   // hypothesis n-grams, n = 1..4
  int64_t hyp_len = 0;
  int64_t ref_len = 0;
  BleuStats& operator+=(const BleuStats& other);
};

// Statistics of one sentence pair (both tokenized with 13a inside).
BleuStats sentence_stats(std::string_view hyp, std::string_view ref);

struct BleuScore {
  double score = 0.0;                  // 0..100
  std::array<double, 4> precisions{};  // percent, after smoothing
  double bp = 0.0;
  double ratio = 0.0;  // hyp_len / ref_len (0 when ref_len is 0)
  int64_t hyp_len = 0;
  int64_t ref_len = 0;
  // sacreBLEU's layout:
  // "BLEU = 34.21 65.3/40.1/27.5/19.2 (BP = 1.000 ratio = 1.012 hyp_len = 1234 ref_len = 1219)"
  std::string format() const;
};

BleuScore bleu_from_stats(const BleuStats& stats);

// Throws std::invalid_argument when the two lists differ in length.
BleuScore corpus_bleu(const std::vector<std::string>& hyps, const std::vector<std::string>& refs);

}  // namespace qkv
