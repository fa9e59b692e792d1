// The toy grammar: draws one sentence pair at a time, building the source (English-like, SVO) and
// its translation (verb-final, noun-initial phrases, agreement) together, phrase by phrase. Each
// phrase lists its source words in source order and its target words in target order, with an
// alignment from every target word to the source word it translates; combining phrases reorders
// them. The translation therefore is a function of the sentence's structure, and the grammar keeps
// that structure readable from the source words alone (see toy.h for the rules that ensure it).
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace qkv::toy {

struct ToyPair {
  std::vector<std::string> src;
  std::vector<std::string> tgt;
  std::vector<int> align;  // align[j]: index of the source word that tgt[j] translates; -1 if none
};

class ToyGenerator {
 public:
  explicit ToyGenerator(uint64_t seed) : rng_(seed) {}

  // One sentence pair of 4 to kMaxLen words on each side.
  ToyPair sample();

  static constexpr size_t kMaxLen = 40;

 private:
  struct NounPhrase;
  ToyPair sentence();
  ToyPair clause(int depth, bool question);
  ToyPair verb_phrase(int subject_class, bool finite, bool negated, int depth);
  NounPhrase noun_phrase(bool animate, int max_adjectives, bool allow_modifier);
  ToyPair prepositional_phrase();
  ToyPair relative_clause(int head_class, bool head_animate);

  bool chance(int percent) { return static_cast<int>(rng_() % 100) < percent; }
  int pick(size_t n) { return static_cast<int>(rng_() % n); }

  std::mt19937_64 rng_;  // fully specified by the C++ standard, so files are identical everywhere
};

}  // namespace qkv::toy
