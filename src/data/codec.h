// Text <-> ids, whatever the segmentation: one interface (TextCodec) over the word-level vocabulary
// (vocab.h) and SentencePiece subwords (sentencepiece.h), chosen by data.tokenizer.
//
// encode() takes one cleaned line (text_clean.h) and returns ids without <s> or </s>; the trainer
// adds those. decode() returns detokenized text, the form BLEU is computed on (the sacreBLEU
// convention): it stops at the first </s> and drops <pad> and <s>. For the word level,
// "detokenized" means tokens joined by single spaces, since the corpus is tokenized already.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/config.h"
#include "data/sentencepiece.h"
#include "data/vocab.h"

namespace qkv {

class TextCodec {
 public:
  virtual ~TextCodec() = default;
  virtual std::vector<int64_t> encode(std::string_view line) const = 0;
  virtual std::string decode(const std::vector<int64_t>& ids) const = 0;
  virtual int64_t size() const = 0;                 // vocabulary size, specials included
  virtual std::string piece(int64_t id) const = 0;  // the vocabulary entry for an id
  virtual std::string name() const = 0;             // for logs: "word (8012 types)", ...

  // FNV-1a over every vocabulary entry in id order: equal fingerprints, same id assignment.
  // Binarized corpora record it so that data and tokenizer cannot be mixed up silently.
  uint64_t fingerprint() const;
};

class WordCodec : public TextCodec {
 public:
  explicit WordCodec(Vocab vocab) : vocab_(std::move(vocab)) {}
  std::vector<int64_t> encode(std::string_view line) const override;
  std::string decode(const std::vector<int64_t>& ids) const override;
  int64_t size() const override { return vocab_.size(); }
  std::string piece(int64_t id) const override { return vocab_.token(id); }
  std::string name() const override;
  const Vocab& vocab() const { return vocab_; }

 private:
  Vocab vocab_;
};

class SentencePieceCodec : public TextCodec {
 public:
  explicit SentencePieceCodec(SentencePiece model) : model_(std::move(model)) {}
  std::vector<int64_t> encode(std::string_view line) const override { return model_.encode(line); }
  std::string decode(const std::vector<int64_t>& ids) const override;
  int64_t size() const override { return model_.size(); }
  std::string piece(int64_t id) const override { return model_.id_to_piece(id); }
  std::string name() const override;
  const SentencePiece& model() const { return model_; }

 private:
  SentencePiece model_;
};

// The source and target codecs of a config. With data.tokenizer == sentencepiece both sides share
// the one model of data.spm_model (the vocabulary is joint); with "word" they wrap the given
// vocabularies. `src` and `tgt` point to the same object when the vocabulary is shared.
struct CodecPair {
  std::shared_ptr<const TextCodec> src;
  std::shared_ptr<const TextCodec> tgt;
};
CodecPair make_sentencepiece_codecs(const DataConfig& data);  // throws ConfigError / DataError
CodecPair make_word_codecs(Vocab shared_vocab);
CodecPair make_word_codecs(Vocab src_vocab, Vocab tgt_vocab);

}  // namespace qkv
