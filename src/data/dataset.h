// From a config's data section to what training and evaluation consume: the corpus files (generated
// once for the built-in tasks), the text codecs (a vocabulary built from the training split, or a
// SentencePiece model), and each split as encoded examples plus its raw text for BLEU and samples.
//
// Built-in tasks (data.task = toy, copy, reverse) are generated into data.dir on first use; a stamp
// file there (.qkv-generated.json) records the generator version, task, sizes and seed, so a config that asks
// for different data regenerates it and an unchanged one reuses it.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/config.h"
#include "data/batching.h"
#include "data/codec.h"

namespace qkv {

// One split, encoded, with its text. src_text[i] / ref_text[i] belong to examples[i]. The examples
// are in memory, except for a binarized training split, read through its memory map.
struct Split {
  std::string name;  // "train", "dev", "test"
  Pairs examples;
  std::vector<std::string> src_text;  // source lines as read (blank-separated words)
  std::vector<std::string> ref_text;  // reference lines, the form BLEU compares against
};

// Generates the built-in task's corpus into data.dir unless the stamp says it is there already.
// Returns true when it generated. Throws ConfigError for task "files" with missing files.
bool ensure_corpus(const DataConfig& data, std::ostream& log);

// Builds the codecs for a fresh run: word vocabularies from the training split (shared or one per
// side, data.min_freq), or the SentencePiece model of data.spm_model.
CodecPair build_codecs(const DataConfig& data, std::ostream& log);

// Reads and encodes one split ({dir}/{prefix}.{lang}). Training pairs with an empty side or more than
// data.max_len words on a side are dropped (and counted in the log); dev and test are kept whole, but
// their examples are cut to `max_tokens` ids per side (the model's positional table) for scoring.
Split load_split(const DataConfig& data, const std::string& name, const CodecPair& codecs, int64_t max_tokens,
                 std::ostream& log);

// The prefix of a split name: "train" -> data.train_prefix, "dev" -> data.dev_prefix, ...
// Throws ConfigError for another name.
std::string split_prefix(const DataConfig& data, const std::string& name);

}  // namespace qkv
