// Parallel text: one sentence per line, UTF-8, the i-th line of the source file translating the i-th
// line of the target file. Reading goes through the one line reader (text_clean.h), which cleans
// each line and refuses what it cannot read; here we add the checks on the pair of files (unequal
// line counts, an empty corpus). Every DataError names the file, and the line where there is one.
// Filtering drops the pairs training cannot use and says how many.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "base/config.h"

namespace qkv {

using Tokens = std::vector<std::string>;

// Where a split lives: {dir}/{prefix}.{src_lang} and {dir}/{prefix}.{tgt_lang}.
struct SplitPaths {
  std::string src;
  std::string tgt;
};
SplitPaths split_paths(const std::string& dir, const std::string& prefix, const std::string& src_lang,
                       const std::string& tgt_lang);
SplitPaths split_paths(const DataConfig& data, const std::string& prefix);

// Where a corpus's three splits live: {dir}/{prefix}.{src_lang|tgt_lang}, the layout of DataConfig.
struct CorpusLayout {
  std::string dir;
  std::string src_lang = "src";
  std::string tgt_lang = "tgt";
  std::string train_prefix = "train";
  std::string dev_prefix = "dev";
  std::string test_prefix = "test";

  static CorpusLayout of(const DataConfig& data);
  SplitPaths split(const std::string& prefix) const { return split_paths(dir, prefix, src_lang, tgt_lang); }
};

// The lines of a UTF-8 text file, read and cleaned by LineReader (text_clean.h: "\n", "\r\n" and a
// lone "\r" end a line, a BOM is dropped, whitespace normalized, control characters removed). A last
// line without a terminator counts. Throws DataError for a missing, unreadable or binary file and for
// invalid UTF-8 ("path:line: ...").
std::vector<std::string> read_lines(const std::string& path);
// The same for an open stream such as stdin (read to its end, left open); `name` is used in errors.
std::vector<std::string> read_lines(std::FILE* stream, const std::string& name);

// Writes one line per element, each ending in "\n", creating the parent directory if needed.
void write_lines(const std::string& path, const std::vector<std::string>& lines);

// The two sides of one split as lines, as the generators of built-in tasks make them.
struct SplitText {
  std::vector<std::string> src;
  std::vector<std::string> tgt;
};
void write_split(const SplitPaths& paths, const SplitText& text);

struct ParallelCorpus {
  std::string src_path;
  std::string tgt_path;
  std::vector<Tokens> src;  // src[i] translates into tgt[i]
  std::vector<Tokens> tgt;
  size_t size() const { return src.size(); }
};

// Reads (read_lines) and word-splits both sides. Throws DataError for anything read_lines refuses,
// for unequal line counts and for an empty corpus.
ParallelCorpus read_parallel(const std::string& src_path, const std::string& tgt_path);
ParallelCorpus read_parallel(const SplitPaths& paths);

struct FilterStats {
  int64_t max_len = 0;
  int64_t kept = 0;
  int64_t too_long = 0;  // a side had more than max_len tokens
  int64_t empty = 0;     // a side had no tokens
  std::string summary()
      const;  // "kept 19873 of 20000 pairs (120 longer than 100 tokens, 7 with an empty side)"
};

// Drops, in place, pairs with an empty side or a side longer than max_len tokens.
FilterStats filter_pairs(ParallelCorpus& corpus, int64_t max_len);

}  // namespace qkv
