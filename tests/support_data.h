// Helpers shared by the data tests (test_binarized, test_corpus_robustness).
#pragma once

#include <string>
#include <vector>

#include "data/text_clean.h"
#include "data/utf8.h"
#include "data/vocab.h"

namespace qkv::test {

// A word vocabulary over the cleaned lines of `paths`, read as binarize reads them.
inline Vocab build_word_vocab(const std::vector<std::string>& paths) {
  TokenCounts counts;
  std::string line;
  for (const auto& path : paths) {
    LineReader reader(path);
    while (reader.next(line)) counts.add(utf8::split_words(line));
  }
  return Vocab::build(counts, 1);
}

}  // namespace qkv::test
