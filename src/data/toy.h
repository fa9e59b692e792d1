// The toy translation task: a seeded, deterministic generator of a synthetic language pair built to
// need what attention is for (docs/toy-task.md has examples):
//   - long-distance reordering: the target is verb-final (objects and complement clauses precede
//     their verb), adverbial clauses move to the front of the sentence, nouns come first in their
//     phrase with adjectives mirrored after them, prepositions become postpositions, "not" and the
//     question marker move to the end of their clause, and a particle verb ("turns the lamp off")
//     becomes a single target verb chosen by a particle that may come after the object;
//   - agreement: determiners, adjectives and relative pronouns agree in gender and number with
//     their noun; verbs agree with their subject, which can be many words away (across the object,
//     an embedded clause, or from a relative clause back to its head noun);
//   - sentences of 4 to 40 words a side, most of 8 to 20; 253 source and 437 target word types.
// The target is a function of the source sentence: the grammar never lets two structures share a
// source string (modifiers attach to the nearest noun and cannot nest; adverbial clauses attach
// only to the main clause; "that" only opens complement clauses, "who"/"which" relative ones).
//
// Dev and test sentences never occur in the training split (nor test in dev), so their scores
// measure generalisation. The same options give the same corpus, byte for byte.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "data/corpus.h"
#include "data/toy_grammar.h"

namespace qkv {

struct ToyOptions {
  int64_t train = 20000;
  int64_t dev = 500;
  int64_t test = 500;
  uint64_t seed = 1;
};

struct ToyCorpus {
  std::vector<toy::ToyPair> train, dev, test;
};

ToyCorpus generate_toy_corpus(const ToyOptions& options);

// Sentences as lines of space-separated words.
SplitText to_text(const std::vector<toy::ToyPair>& pairs);

// Writes the three splits where `layout` says ({dir}/train.src, {dir}/train.tgt, ... by default).
void write_toy_corpus(const CorpusLayout& layout, const ToyOptions& options);

// The word-by-word baseline: every source word becomes the target word it is most often aligned to
// in the training pairs (or nothing, if it is most often untranslated, as "do" and particles are),
// in source order. It shows what a model gains by reordering and agreement.
class DictionaryBaseline {
 public:
  explicit DictionaryBaseline(const std::vector<toy::ToyPair>& train);
  std::vector<std::string> translate(const std::vector<std::string>& src) const;
  std::vector<std::string> translate_lines(const std::vector<std::string>& src_lines) const;

 private:
  std::map<std::string, std::string> dictionary_;  // "" = drop the word
};

}  // namespace qkv
