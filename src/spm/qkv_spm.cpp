// libqkv_spm.so: SentencePiece behind the plain C interface of qkv_spm.h.
//
// This is the only translation unit that includes SentencePiece's headers. Every entry point catches
// all exceptions (none may cross a C boundary) and reports failures through qkv_spm_last_error().
#include "qkv_spm.h"

#include <cstring>
#include <exception>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

struct qkv_spm_model {
  sentencepiece::SentencePieceProcessor processor;
};

namespace {

thread_local std::string last_error;

int fail(const std::string& message) {
  last_error = message;
  return -1;
}

// Copies `text` into the caller's buffer when it fits (NUL-terminated); returns the length needed.
int64_t copy_out(const std::string& text, char* out, size_t capacity) {
  if (out != nullptr && text.size() < capacity) {
    std::memcpy(out, text.data(), text.size());
    out[text.size()] = '\0';
  }
  return static_cast<int64_t>(text.size());
}

// Feeds SentencePiece's trainer from the caller's callback, one sentence at a time.
class CallbackIterator : public sentencepiece::SentenceIterator {
 public:
  CallbackIterator(qkv_spm_next_line next_line, void* context) : next_line_(next_line), context_(context) {
    Next();
  }
  bool done() const override { return done_; }
  void Next() override {
    size_t length = 0;
    const char* line = next_line_(context_, &length);
    done_ = line == nullptr;
    failed_ = done_ && length == QKV_SPM_INPUT_FAILED;
    if (!done_) value_.assign(line, length);
  }
  const std::string& value() const override { return value_; }
  sentencepiece::util::Status status() const override {
    if (!failed_) return {};
    return {sentencepiece::util::StatusCode::kDataLoss, "reading the training sentences failed"};
  }

 private:
  qkv_spm_next_line next_line_;
  void* context_;
  std::string value_;
  bool done_ = false;
  bool failed_ = false;
};

// Splits "a b c" (pieces joined by single spaces) into views.
std::vector<absl::string_view> split_pieces(const char* pieces, size_t length) {
  std::vector<absl::string_view> out;
  size_t start = 0;
  for (size_t i = 0; i <= length; ++i) {
    if (i == length || pieces[i] == ' ') {
      if (i > start) out.emplace_back(pieces + start, i - start);
      start = i + 1;
    }
  }
  return out;
}

}  // namespace

extern "C" {

int qkv_spm_abi_version(void) {
  return QKV_SPM_ABI_VERSION;
}

const char* qkv_spm_last_error(void) {
  return last_error.c_str();
}

int qkv_spm_train(const char* const* keys, const char* const* values, size_t count,
                  qkv_spm_next_line next_line, void* context) {
  try {
    std::unordered_map<std::string, std::string> kwargs;
    for (size_t i = 0; i < count; ++i) kwargs[keys[i]] = values[i];
    CallbackIterator sentences(next_line, context);
    const auto status = sentencepiece::SentencePieceTrainer::Train(kwargs, &sentences);
    if (!status.ok()) return fail(status.ToString());
    return 0;
  } catch (const std::exception& e) {
    return fail(e.what());
  }
}

qkv_spm_model* qkv_spm_load(const char* path) {
  try {
    auto model = std::make_unique<qkv_spm_model>();
    const auto status = model->processor.Load(path);
    if (!status.ok()) {
      fail(status.ToString());
      return nullptr;
    }
    return model.release();
  } catch (const std::exception& e) {
    fail(e.what());
    return nullptr;
  }
}

void qkv_spm_free(qkv_spm_model* model) {
  delete model;
}

int64_t qkv_spm_encode_ids(const qkv_spm_model* model, const char* text, size_t length, int32_t* ids,
                           size_t capacity) {
  try {
    std::vector<int> encoded;
    const auto status = model->processor.Encode(absl::string_view(text, length), &encoded);
    if (!status.ok()) return fail(status.ToString());
    if (ids != nullptr && encoded.size() <= capacity) {
      for (size_t i = 0; i < encoded.size(); ++i) ids[i] = encoded[i];
    }
    return static_cast<int64_t>(encoded.size());
  } catch (const std::exception& e) {
    return fail(e.what());
  }
}

int64_t qkv_spm_encode_pieces(const qkv_spm_model* model, const char* text, size_t length, char* out,
                              size_t capacity) {
  try {
    std::vector<std::string> pieces;
    const auto status = model->processor.Encode(absl::string_view(text, length), &pieces);
    if (!status.ok()) return fail(status.ToString());
    std::string joined;
    for (const auto& piece : pieces) {
      if (!joined.empty()) joined += ' ';
      joined += piece;
    }
    return copy_out(joined, out, capacity);
  } catch (const std::exception& e) {
    return fail(e.what());
  }
}

int64_t qkv_spm_decode_ids(const qkv_spm_model* model, const int32_t* ids, size_t count, char* out,
                           size_t capacity) {
  try {
    const std::vector<int> input(ids, ids + count);
    std::string text;
    const auto status = model->processor.Decode(input, &text);
    if (!status.ok()) return fail(status.ToString());
    return copy_out(text, out, capacity);
  } catch (const std::exception& e) {
    return fail(e.what());
  }
}

int64_t qkv_spm_decode_pieces(const qkv_spm_model* model, const char* pieces, size_t length, char* out,
                              size_t capacity) {
  try {
    std::string text;
    const auto status = model->processor.Decode(split_pieces(pieces, length), &text);
    if (!status.ok()) return fail(status.ToString());
    return copy_out(text, out, capacity);
  } catch (const std::exception& e) {
    return fail(e.what());
  }
}

int32_t qkv_spm_vocab_size(const qkv_spm_model* model) {
  return model->processor.GetPieceSize();
}

int64_t qkv_spm_id_to_piece(const qkv_spm_model* model, int32_t id, char* out, size_t capacity) {
  if (id < 0 || id >= model->processor.GetPieceSize()) {
    return fail("id " + std::to_string(id) + " is outside the vocabulary");
  }
  return copy_out(model->processor.IdToPiece(id), out, capacity);
}

int32_t qkv_spm_piece_to_id(const qkv_spm_model* model, const char* piece, size_t length) {
  return model->processor.PieceToId(absl::string_view(piece, length));
}

}  // extern "C"
