// Text to binarized corpus (binarized.h): read both sides with the robust reader (text_clean.h),
// encode with the split's codecs on all intra-op threads, write the ids in order.
//
// Every line pair is kept, blank ones included, so that pair i of the file is line i of the text (as
// fairseq-preprocess keeps them); training drops pairs with an empty or over-long side when it reads
// the file.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

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

}  // namespace qkv
