// The Annotated Transformer's sanity tasks: copy a random sequence of symbols, or reverse it. Copy
// needs nothing but attention to the same position; reverse needs attention to a position that
// moves. Symbols are the words "0" .. "N-1", drawn uniformly; lengths are uniform in a range.
//
// Also the one entry point the trainer needs for built-in data: write_generated_corpus(data)
// writes whichever task DataConfig names (toy, copy or reverse) into data.dir.
#pragma once

#include <cstdint>
#include <string>

#include "base/config.h"
#include "data/corpus.h"

namespace qkv {

enum class SequenceTask { Copy, Reverse };

struct SequenceOptions {
  int64_t train = 20000;
  int64_t dev = 500;
  int64_t test = 500;
  uint64_t seed = 1;
  int64_t symbols = 20;  // vocabulary: "0" .. "symbols-1"
  int64_t min_len = 4;
  int64_t max_len = 16;
};

struct SequenceCorpus {
  SplitText train, dev, test;
};

// Throws ConfigError for sizes < 0, symbols < 1 or an empty length range.
SequenceCorpus generate_sequence_corpus(SequenceTask task, const SequenceOptions& options);

// Writes the three splits where `layout` says.
void write_sequence_corpus(SequenceTask task, const CorpusLayout& layout, const SequenceOptions& options);

// Generates data.task (toy, copy or reverse) with data.train_size, dev_size, test_size and seed into
// data.dir, overwriting what is there. Generation is deterministic and takes well under a second.
// Throws ConfigError for task "files", which has nothing to generate.
void write_generated_corpus(const DataConfig& data);

}  // namespace qkv
