// A word-level vocabulary: token <-> id. Ids 0..3 are always the specials of special_tokens.h; the
// other tokens follow by descending training frequency (ties in byte order), so building twice from
// the same data gives the same ids. Tokens seen fewer than min_freq times map to <unk>.
//
// The file format (saved next to the model) is one token per line in id order, specials included.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace qkv {

// Token frequencies, accumulated sentence by sentence (one side, or both for a shared vocabulary).
class TokenCounts {
 public:
  void add(const std::vector<std::string>& tokens);
  void add(const std::vector<std::vector<std::string>>& sentences);
  const std::unordered_map<std::string, int64_t>& counts() const { return counts_; }

 private:
  std::unordered_map<std::string, int64_t> counts_;
};

class Vocab {
 public:
  Vocab();  // the four specials only

  static Vocab build(const TokenCounts& counts, int64_t min_freq = 1);
  static Vocab build(const std::vector<std::vector<std::string>>& sentences, int64_t min_freq = 1);
  // Throws DataError naming the file (and line) when it is missing, has an empty or duplicate line,
  // or does not start with the four specials in order.
  static Vocab load(const std::string& path);
  // The same checks on tokens held in memory (a checkpoint's record); `source` names them in errors.
  static Vocab from_tokens(const std::vector<std::string>& tokens, const std::string& source);
  void save(const std::string& path) const;
  const std::vector<std::string>& tokens() const { return tokens_; }  // in id order, specials first

  int64_t size() const { return static_cast<int64_t>(tokens_.size()); }
  int64_t id(const std::string& token) const;  // kUnkId when unknown
  const std::string& token(int64_t id) const;  // throws std::out_of_range for a bad id
  bool contains(const std::string& token) const { return ids_.count(token) > 0; }

  // Word-level encoding of a line (tokens separated by blanks); no <s> or </s> is added.
  std::vector<int64_t> encode(const std::string& line) const;
  std::vector<int64_t> encode(const std::vector<std::string>& tokens) const;
  // Joins tokens with single spaces, stopping at the first </s> and skipping <pad> and <s>. <unk>
  // stays visible as "<unk>": dropping it would hide a vocabulary problem.
  std::string decode(const std::vector<int64_t>& ids) const;

  bool operator==(const Vocab& other) const { return tokens_ == other.tokens_; }
  bool operator!=(const Vocab& other) const { return !(*this == other); }

 private:
  void append(const std::string& token);

  std::vector<std::string> tokens_;
  std::unordered_map<std::string, int64_t> ids_;
};

}  // namespace qkv
