// SentencePiece subwords (Kudo & Richardson 2018): training a joint model and using it.
//
// SentencePiece itself lives in libqkv_spm.so, loaded at run time (see src/spm/qkv_spm.h for why);
// this is its C++ face. Models trained here put qkv's special tokens at qkv's ids (special_tokens.h:
// <pad>=0 <s>=1 </s>=2 <unk>=3), so SentencePiece ids are model ids with no mapping; loading a model
// with another layout is refused.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

struct qkv_spm_model;

namespace qkv {

enum class SpmModelType { Bpe, Unigram };  // "bpe" | "unigram"

SpmModelType spm_model_type_from_string(const std::string& name);  // throws ConfigError
std::string to_string(SpmModelType v);

struct SpmTrainOptions {
  int64_t vocab_size = 8000;
  SpmModelType model_type = SpmModelType::Bpe;
  double character_coverage = 1.0;     // 1.0 for alphabetic scripts; 0.9995 is usual for CJK
  int64_t input_sentence_size = 0;     // train on a random sample of this many sentences; 0 = all
  int64_t max_sentence_length = 4192;  // bytes; longer sentences are left out of training
  int64_t threads = 0;                 // 0 = all cores
  bool verbose = false;                // SentencePiece's own progress log on stderr
};

// Trains one joint model on the cleaned lines (text_clean.h) of all `inputs` and writes
// `{model_prefix}.model` and `{model_prefix}.vocab`. Throws DataError (bad input) or
// std::runtime_error (SentencePiece refused, e.g. a vocabulary larger than the data allows).
void train_sentencepiece(const std::vector<std::string>& inputs, const std::string& model_prefix,
                         const SpmTrainOptions& options);

// A loaded model. Encoding and decoding are const and safe to call from several threads.
class SentencePiece {
 public:
  explicit SentencePiece(std::string model_path);  // throws DataError
  ~SentencePiece();
  SentencePiece(SentencePiece&&) noexcept;
  SentencePiece& operator=(SentencePiece&&) noexcept;
  SentencePiece(const SentencePiece&) = delete;
  SentencePiece& operator=(const SentencePiece&) = delete;

  std::vector<int64_t> encode(std::string_view line) const;  // no <s> or </s> added
  std::vector<std::string> encode_pieces(std::string_view line) const;
  std::string decode(const std::vector<int64_t>& ids) const;  // detokenized; specials dropped
  std::string decode_pieces(const std::vector<std::string>& pieces) const;

  int64_t size() const;
  std::string id_to_piece(int64_t id) const;
  int64_t piece_to_id(std::string_view piece) const;  // kUnkId when absent
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  qkv_spm_model* model_ = nullptr;
};

// Where libqkv_spm.so was found (loading it if needed); throws std::runtime_error when it cannot be.
std::string sentencepiece_library_path();

}  // namespace qkv
