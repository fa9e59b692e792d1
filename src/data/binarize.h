// Text to binarized corpus (binarized.h) and back to examples: binarize_split reads both sides with
// the robust reader (text_clean.h), encodes with the split's codecs on all intra-op threads and
// writes the ids in order; BinarizedPairs serves a binarized split's training pairs to the batching
// code straight from the map, and all_examples copies a (small) split into examples.
//
// Every line pair is kept, blank ones included, so that pair i of the file is line i of the text (as
// fairseq-preprocess keeps them); training drops pairs with an empty or over-long side when it reads
// the file.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/batching.h"
#include "data/binarized.h"
#include "data/codec.h"
#include "data/corpus.h"
#include "data/text_clean.h"

namespace qkv {

struct BinarizeReport {
  std::string out_path;
  int64_t pairs = 0;
  int64_t src_tokens = 0, tgt_tokens = 0;
  int64_t src_unknown = 0, tgt_unknown = 0;  // ids equal to <unk>
  int64_t empty_pairs = 0;                   // pairs with an empty side (kept; training skips them)
  TextStats src_text, tgt_text;
  double seconds = 0;
  uint64_t file_bytes = 0;

  // A few "[data] ..." lines for the log.
  std::string summary() const;
};

BinarizeReport binarize_split(const SplitPaths& text, const std::string& out_path, const TextCodec& src,
                              const TextCodec& tgt);

// The pairs training uses: those with no empty side and no side longer than max_len ids (codec
// tokens, e.g. subwords), as filter_pairs does for text; `stats` counts what was dropped. It owns
// the corpus and reads ids through its map: the heap holds only the file index of each kept pair
// (8 bytes), however large the corpus.
class BinarizedPairs final : public PairSource {
 public:
  BinarizedPairs(BinarizedCorpus corpus, int64_t max_len, FilterStats& stats);

  int64_t count() const override { return static_cast<int64_t>(kept_.size()); }
  int64_t src_length(int64_t i) const override { return corpus_.src_length(file_index(i)); }
  int64_t tgt_length(int64_t i) const override { return corpus_.tgt_length(file_index(i)); }
  void copy_src(int64_t i, int64_t* out) const override { corpus_.src(file_index(i)).copy_to(out); }
  void copy_tgt(int64_t i, int64_t* out) const override { corpus_.tgt(file_index(i)).copy_to(out); }

  // The pair of the file (= line of the text) that training pair i is.
  int64_t file_index(int64_t i) const { return kept_[static_cast<size_t>(i)]; }
  const BinarizedCorpus& corpus() const { return corpus_; }

 private:
  BinarizedCorpus corpus_;
  std::vector<int64_t> kept_;
};

// Every pair, in file order (pair i is line i of the text), each side cut to at most `truncate_to`
// ids (0 = no cut): for scoring dev and test sets against their text.
std::vector<Example> all_examples(const BinarizedCorpus& corpus, int64_t truncate_to);

}  // namespace qkv
