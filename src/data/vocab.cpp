// Word-level vocabulary (see vocab.h).
#include "data/vocab.h"

#include <algorithm>
#include <stdexcept>

#include <fmt/format.h>

#include "base/error.h"
#include "base/special_tokens.h"
#include "data/corpus.h"
#include "data/utf8.h"

namespace qkv {

void TokenCounts::add(const std::vector<std::string>& tokens) {
  for (const auto& token : tokens) ++counts_[token];
}

void TokenCounts::add(const std::vector<std::vector<std::string>>& sentences) {
  for (const auto& sentence : sentences) add(sentence);
}

Vocab::Vocab() {
  for (const char* special : {kPadToken, kBosToken, kEosToken, kUnkToken}) append(special);
}

void Vocab::append(const std::string& token) {
  ids_.emplace(token, static_cast<int64_t>(tokens_.size()));
  tokens_.push_back(token);
}

Vocab Vocab::build(const TokenCounts& counts, int64_t min_freq) {
  std::vector<std::pair<std::string, int64_t>> entries;
  for (const auto& [token, count] : counts.counts()) {
    if (count >= min_freq) entries.emplace_back(token, count);
  }
  // Most frequent first; ties in byte order, so the ids never depend on hash-table order.
  std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) {
    return a.second != b.second ? a.second > b.second : a.first < b.first;
  });
  Vocab vocab;
  for (const auto& entry : entries) {
    if (!vocab.contains(entry.first)) vocab.append(entry.first);  // a special in the text keeps its id
  }
  return vocab;
}

Vocab Vocab::build(const std::vector<std::vector<std::string>>& sentences, int64_t min_freq) {
  TokenCounts counts;
  counts.add(sentences);
  return build(counts, min_freq);
}

Vocab Vocab::load(const std::string& path) {
  return from_tokens(read_lines(path), path);
}

Vocab Vocab::from_tokens(const std::vector<std::string>& lines, const std::string& path) {
  const Vocab specials;
  if (lines.size() < specials.tokens_.size()) {
    throw DataError(fmt::format("{}: a vocabulary needs at least the {} special tokens, found {} lines", path,
                                specials.tokens_.size(), lines.size()));
  }
  Vocab vocab;
  for (size_t i = 0; i < lines.size(); ++i) {
    const std::string& token = lines[i];
    if (i < specials.tokens_.size()) {
      if (token != specials.tokens_[i]) {
        throw DataError(fmt::format("{}:{}: expected the special token {} but found '{}'", path, i + 1,
                                    specials.tokens_[i], token));
      }
      continue;
    }
    const std::vector<std::string> words = utf8::split_words(token);
    if (words.size() != 1 || words[0] != token) {
      throw DataError(
          fmt::format("{}:{}: '{}' is not a token (empty or containing blanks)", path, i + 1, token));
    }
    if (vocab.contains(token)) {
      throw DataError(fmt::format("{}:{}: duplicate token '{}' (first at line {})", path, i + 1, token,
                                  vocab.id(token) + 1));
    }
    vocab.append(token);
  }
  return vocab;
}

void Vocab::save(const std::string& path) const {
  write_lines(path, tokens_);
}

int64_t Vocab::id(const std::string& token) const {
  const auto it = ids_.find(token);
  return it == ids_.end() ? kUnkId : it->second;
}

const std::string& Vocab::token(int64_t id) const {
  if (id < 0 || id >= size()) {
    throw std::out_of_range(fmt::format("token id {} outside the vocabulary of {} tokens", id, size()));
  }
  return tokens_[static_cast<size_t>(id)];
}

std::vector<int64_t> Vocab::encode(const std::string& line) const {
  return encode(utf8::split_words(line));
}

std::vector<int64_t> Vocab::encode(const std::vector<std::string>& tokens) const {
  std::vector<int64_t> ids;
  ids.reserve(tokens.size());
  for (const auto& token : tokens) ids.push_back(id(token));
  return ids;
}

std::string Vocab::decode(const std::vector<int64_t>& ids) const {
  std::string text;
  for (const int64_t id : ids) {
    if (id == kEosId) break;
    if (id == kPadId || id == kBosId) continue;
    if (!text.empty()) text += ' ';
    text += token(id);
  }
  return text;
}

}  // namespace qkv
