// Reading real parallel text robustly: one sentence per line, UTF-8, whatever the file's history.
//
// The policy follows what fairseq-preprocess does (it reads with Python's universal newlines and
// tokenizes with `" ".join(line.split())`), except where that silently corrupts data:
//   - line endings: "\n", "\r\n" and a lone "\r" all end a line, also mixed in one file (as fairseq);
//   - a UTF-8 byte-order mark at the start of the file is dropped (fairseq keeps it glued to the first
//     word; we read as Python's utf-8-sig would);
//   - whitespace: runs of ASCII and Unicode whitespace (tab, \v, \f, \x1c-\x1f, U+0085, U+00A0,
//     U+1680, U+2000-U+200A, U+2028, U+2029, U+202F, U+205F, U+3000; what Python's str.split splits
//     on) become one space, and lines are trimmed (as fairseq);
//   - other control characters (C0 except whitespace, DEL, C1) and U+FEFF (a BOM left inside a file
//     by concatenation) are removed, as Moses' remove-non-printing-char.perl does (fairseq would keep
//     them inside tokens);
//   - blank lines are kept as empty sentences so that line numbers stay aligned (as fairseq); the
//     trainer skips training pairs with an empty side;
//   - refused with file and line: a NUL byte (a binary file), invalid UTF-8 (fairseq fails with a
//     UnicodeDecodeError), a line longer than `max_line_bytes`, and parallel files whose line counts
//     differ (fairseq: "Source and target must contain the same number of examples").
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace qkv {

// What cleaning changed, for one file; `qkv data binarize` reports it.
struct TextStats {
  int64_t lines = 0;
  int64_t blank_lines = 0;   // empty after cleaning
  int64_t crlf_endings = 0;  // lines ended by "\r\n"
  int64_t cr_endings = 0;    // lines ended by a lone "\r"
  int64_t controls_removed = 0;
  int64_t longest_line_bytes = 0;
  bool bom = false;

  std::string summary() const;  // one line, e.g. "1000 lines, 2 blank, 1000 CRLF, BOM dropped"
};

struct TextPolicy {
  int64_t max_line_bytes = int64_t{1} << 20;  // 1 MiB: longer lines are refused (not a sentence file)
};

// Cleans one raw line (no line terminator) per the policy above. `path` and `line_number` only name
// the place in errors (DataError).
std::string clean_line(std::string_view raw, const std::string& path, int64_t line_number, TextStats& stats);

// Reads a text file line by line, cleaned: the one reader behind every text file qkv reads (corpora,
// vocabularies, SentencePiece training input, BLEU references and hypotheses, `qkv translate
// --input`). Throws DataError naming the file and line.
class LineReader {
 public:
  explicit LineReader(std::string path, TextPolicy policy = {});
  // Reads an open stream (e.g. stdin), which stays open; `name` stands for it in errors.
  LineReader(std::FILE* stream, std::string name, TextPolicy policy = {});
  ~LineReader();
  LineReader(const LineReader&) = delete;
  LineReader& operator=(const LineReader&) = delete;

  // Reads the next line into `line`; false at the end of the file.
  bool next(std::string& line);

  int64_t line_number() const { return stats_.lines; }  // of the line last returned (1-based)
  const TextStats& stats() const { return stats_; }
  const std::string& path() const { return path_; }

 private:
  bool fill();  // reads the next chunk; false at end of file

  std::string path_;
  TextPolicy policy_;
  std::FILE* file_ = nullptr;
  bool owns_file_ = true;
  std::vector<char> buffer_;
  size_t begin_ = 0, end_ = 0;  // unread bytes are buffer_[begin_, end_)
  bool eof_ = false;
  bool first_ = true;  // the BOM check is pending
  std::string raw_;
  TextStats stats_;
};

// Reads two parallel files in step; throws DataError when one ends before the other.
class ParallelReader {
 public:
  ParallelReader(const std::string& src_path, const std::string& tgt_path, TextPolicy policy = {});

  // Reads the next pair; false when both files end together.
  bool next(std::string& src, std::string& tgt);

  const LineReader& src() const { return src_; }
  const LineReader& tgt() const { return tgt_; }

 private:
  LineReader src_, tgt_;
};

}  // namespace qkv
