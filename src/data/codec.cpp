// The word-level and SentencePiece codecs behind one interface (see codec.h).
#include "data/codec.h"

#include <fmt/format.h>

#include "base/error.h"
#include "base/special_tokens.h"

namespace qkv {
namespace {

// The ids up to the first </s>, without <pad> and <s>: what the model meant to say.
std::vector<int64_t> strip_specials(const std::vector<int64_t>& ids) {
  std::vector<int64_t> kept;
  kept.reserve(ids.size());
  for (const int64_t id : ids) {
    if (id == kEosId) break;
    if (id != kPadId && id != kBosId) kept.push_back(id);
  }
  return kept;
}

}  // namespace

uint64_t TextCodec::fingerprint() const {
  uint64_t hash = 14695981039346656037ull;  // FNV-1a, 64-bit
  const auto mix = [&](unsigned char byte) {
    hash ^= byte;
    hash *= 1099511628211ull;
  };
  for (int64_t id = 0; id < size(); ++id) {
    for (const char c : piece(id)) mix(static_cast<unsigned char>(c));
    mix('\n');
  }
  return hash;
}

std::vector<int64_t> WordCodec::encode(std::string_view line) const {
  return vocab_.encode(std::string(line));
}

std::string WordCodec::decode(const std::vector<int64_t>& ids) const {
  return vocab_.decode(strip_specials(ids));
}

std::string WordCodec::name() const {
  return fmt::format("word ({} types)", vocab_.size());
}

std::string SentencePieceCodec::decode(const std::vector<int64_t>& ids) const {
  return model_.decode(strip_specials(ids));
}

std::string SentencePieceCodec::name() const {
  return fmt::format("sentencepiece {} ({} pieces)", model_.path(), model_.size());
}

CodecPair make_sentencepiece_codecs(const DataConfig& data) {
  if (data.spm_model.empty())
    throw std::invalid_argument("make_sentencepiece_codecs: no SentencePiece model file given");
  auto shared = std::make_shared<const SentencePieceCodec>(SentencePiece(data.spm_model));
  return {shared, shared};
}

CodecPair make_word_codecs(Vocab shared_vocab) {
  auto both = std::make_shared<const WordCodec>(std::move(shared_vocab));
  return {both, both};
}

CodecPair make_word_codecs(Vocab src_vocab, Vocab tgt_vocab) {
  return {std::make_shared<const WordCodec>(std::move(src_vocab)),
          std::make_shared<const WordCodec>(std::move(tgt_vocab))};
}

}  // namespace qkv
