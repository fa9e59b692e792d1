// BLEU against hand-computed values and sacreBLEU's own outputs (the expected strings below are what
// sacreBLEU 2.x's corpus_bleu prints for the same input; NLTK's corpus_bleu on the same 13a tokens
// agrees wherever no smoothing is involved, e.g. 61.15 in PoolsStatisticsOverTheCorpus).
#include <cmath>
#include <stdexcept>

#include <gtest/gtest.h>

#include "eval/bleu.h"

namespace qkv {
namespace {

BleuScore one(const std::string& hyp, const std::string& ref) {
  return corpus_bleu({hyp}, {ref});
}

// BLEU is computed in double from small integer counts, so it is exact but for rounding (~1e-14 on
// its 0-100 scale): 1e-9 (1e-12 for the brevity penalty, on a 0-1 scale) says "equal", not "close".
constexpr double kRounding = 1e-9;

TEST(Bleu, PerfectMatchIs100) {
  const BleuScore s =
      corpus_bleu({"the cat sat on the mat .", "a dog barked"}, {"the cat sat on the mat .", "a dog barked"});
  EXPECT_NEAR(s.score, 100.0, kRounding);
  EXPECT_EQ(s.format(),
            "BLEU = 100.00 100.0/100.0/100.0/100.0 (BP = 1.000 ratio = 1.000 hyp_len = 10 ref_len = 10)");
}

TEST(Bleu, HandComputedSentence) {
  // hyp "the cat sat on the mat", ref "the cat is on the mat":
  //   1-grams 5/6 (the ×2, cat, on, mat), 2-grams 3/5 (the cat, on the, the mat),
  //   3-grams 1/4 (on the mat), 4-grams 0/3 -> 'exp' smoothing: 1 / (2 · 3).
  //   BLEU = (5/6 · 3/5 · 1/4 · 1/6)^(1/4) = 0.3799, BP = 1.
  const BleuScore s = one("the cat sat on the mat", "the cat is on the mat");
  EXPECT_NEAR(s.precisions[0], 100.0 * 5 / 6, kRounding);
  EXPECT_NEAR(s.precisions[1], 100.0 * 3 / 5, kRounding);
  EXPECT_NEAR(s.precisions[2], 100.0 * 1 / 4, kRounding);
  EXPECT_NEAR(s.precisions[3], 100.0 / 6, kRounding);
  EXPECT_NEAR(s.score, 100.0 * std::pow(5.0 / 6 * 3.0 / 5 * 1.0 / 4 * 1.0 / 6, 0.25), kRounding);
  EXPECT_EQ(s.format(),
            "BLEU = 37.99 83.3/60.0/25.0/16.7 (BP = 1.000 ratio = 1.000 hyp_len = 6 ref_len = 6)");
}

TEST(Bleu, BrevityPenalty) {
  // All precisions 1, c = 4, r = 6: BP = exp(1 - 6/4).
  const BleuScore s = one("the cat sat on", "the cat sat on the mat");
  EXPECT_NEAR(s.bp, std::exp(-0.5), 1e-12);  // kRounding on BP's 0-1 scale
  EXPECT_NEAR(s.score, 100.0 * std::exp(-0.5), kRounding);
  EXPECT_EQ(s.format(),
            "BLEU = 60.65 100.0/100.0/100.0/100.0 (BP = 0.607 ratio = 0.667 hyp_len = 4 ref_len = 6)");
}

TEST(Bleu, EmptyHypothesisScoresZero) {
  const BleuScore s = one("", "the cat");
  EXPECT_EQ(s.score, 0.0);
  EXPECT_EQ(s.format(), "BLEU = 0.00 0.0/0.0/0.0/0.0 (BP = 0.000 ratio = 0.000 hyp_len = 0 ref_len = 2)");
}

TEST(Bleu, HypothesisShorterThanFourTokensScoresZero) {
  // No 4-grams at all: sacreBLEU leaves p4 at 0 (no smoothing applies), so BLEU is 0 even for an
  // exact match.
  const BleuScore s = one("the cat sat", "the cat sat");
  EXPECT_EQ(s.score, 0.0);
  EXPECT_EQ(s.format(),
            "BLEU = 0.00 100.0/100.0/100.0/0.0 (BP = 1.000 ratio = 1.000 hyp_len = 3 ref_len = 3)");
}

TEST(Bleu, NoMatchScoresZero) {
  const BleuScore s = one("a b c d", "e f g h");
  EXPECT_EQ(s.score, 0.0);
  EXPECT_EQ(s.format(), "BLEU = 0.00 0.0/0.0/0.0/0.0 (BP = 1.000 ratio = 1.000 hyp_len = 4 ref_len = 4)");
}

TEST(Bleu, PoolsStatisticsOverTheCorpus) {
  const BleuScore s = corpus_bleu({"the cat sat on the mat today", "a dog barked at the cat"},
                                  {"the cat sat on the mat", "the dog barked at a cat"});
  EXPECT_EQ(s.format(),
            "BLEU = 61.15 92.3/63.6/55.6/42.9 (BP = 1.000 ratio = 1.083 hyp_len = 13 ref_len = 12)");
  // The pooled score is not the mean of the sentence scores.
  const double mean = (one("the cat sat on the mat today", "the cat sat on the mat").score +
                       one("a dog barked at the cat", "the dog barked at a cat").score) /
                      2;
  EXPECT_GT(std::abs(s.score - mean), 1.0);  // a whole BLEU point: far beyond rounding
  // Statistics add up: scoring in pieces gives the same result.
  BleuStats stats = sentence_stats("the cat sat on the mat today", "the cat sat on the mat");
  stats += sentence_stats("a dog barked at the cat", "the dog barked at a cat");
  EXPECT_EQ(bleu_from_stats(stats).format(), s.format());
}

TEST(Bleu, ClipsRepeatedWords) {
  // Papineni et al.'s example: "the the the the" against "the cat": unigram precision 1/4, not 4/4.
  const BleuScore s = one("the the the the", "the cat");
  EXPECT_NEAR(s.precisions[0], 25.0, kRounding);
}

TEST(Bleu, ScoresDetokenizedTextWith13a) {
  const BleuScore s = one("Hello, world! It costs $3.50.", "Hello world! It costs $3.50 .");
  EXPECT_EQ(s.format(),
            "BLEU = 75.06 88.9/75.0/71.4/66.7 (BP = 1.000 ratio = 1.125 hyp_len = 9 ref_len = 8)");
}

TEST(Tokenize13a, MatchesSacreBleu) {
  EXPECT_EQ(tokenize_13a("Hello, world!"), "Hello , world !");
  EXPECT_EQ(tokenize_13a("3.14 and 1,000"), "3.14 and 1,000");  // no split next to digits
  EXPECT_EQ(tokenize_13a("x-ray 1-2"), "x-ray 1 - 2");          // dash split only after a digit
  EXPECT_EQ(tokenize_13a("&quot;hi&quot; &amp; &lt;b&gt;"), "\" hi \" & < b >");
  EXPECT_EQ(tokenize_13a("don't stop."), "don't stop .");
  EXPECT_EQ(tokenize_13a("a.b,c"), "a . b , c");
  EXPECT_EQ(tokenize_13a("(see: [1])"), "( see : [ 1 ] )");
  EXPECT_EQ(tokenize_13a("skip<skipped>ped"), "skipped");
  EXPECT_EQ(tokenize_13a("x\u00a0y\u3000z"), "x y z");  // Unicode spaces separate tokens, as in Python
  EXPECT_EQ(tokenize_13a("  "), "");
}

TEST(Bleu, MismatchedLengthsAreAnError) {
  EXPECT_THROW(corpus_bleu({"a", "b"}, {"a"}), std::invalid_argument);
}

}  // namespace
}  // namespace qkv
