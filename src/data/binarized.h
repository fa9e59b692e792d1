// A compact binary form of a tokenized parallel corpus, read through a memory map.
//
// fairseq-preprocess turns text into token ids once, so that training starts in seconds and holds
// only the ids; this is qkv's version. One file per split and language pair,
// {dir}/{prefix}.{src}-{tgt}.bin, little-endian:
//
//   header   128 bytes (BinarizedHeader below)
//   tokens   uint16 (vocabularies up to 65536) or int32, pair by pair: src_0 tgt_0 src_1 tgt_1 ...
//            (no <s> or </s>: the trainer adds them)
//   offsets  uint64[2 * pairs + 1], 8-byte aligned: src(i) = tokens[off[2i], off[2i+1]),
//            tgt(i) = tokens[off[2i+1], off[2i+2])
//
// Offsets come last so that the writer streams tokens to disk in one pass. Opening maps the file
// and checks its structure (sizes, monotone offsets); the ids themselves are paged in by the kernel
// as training touches them, so memory is proportional to the corpus (2 bytes a token) and shared
// between processes reading the same file.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "data/corpus.h"

namespace qkv {

class TextCodec;

// What one side was encoded with, and the text it came from.
struct BinarizedSide {
  uint64_t vocab_size = 0;
  uint64_t codec_fingerprint = 0;  // TextCodec::fingerprint()
  uint64_t text_bytes = 0;         // size of the source text file
  uint64_t text_signature = 0;     // hash of its first and last 64 KiB (see text_signature())
};

struct BinarizedHeader {
  char magic[8];         // "QKVBIN\r\n": a text-mode transfer that rewrites line ends breaks it visibly
  uint32_t version;      // kBinarizedVersion
  uint32_t token_bytes;  // 2 or 4
  uint64_t pairs;
  uint64_t tokens;      // both sides together
  uint64_t offsets_at;  // byte position of the offsets table
  BinarizedSide src;
  BinarizedSide tgt;
  uint64_t reserved[3];
};
static_assert(sizeof(BinarizedHeader) == 128, "the header is part of the file format");

constexpr uint32_t kBinarizedVersion = 1;

// {dir}/{prefix}.{src_lang}-{tgt_lang}.bin
std::string binarized_path(const std::string& dir, const std::string& prefix, const std::string& src_lang,
                           const std::string& tgt_lang);

// Size and a hash of the first and last 64 KiB of a file: cheap, and changes when the text is
// replaced or edited at either end. Copying the file keeps it (unlike a modification time).
uint64_t text_signature(const std::string& path);

// The ids of one sentence inside the map; valid as long as the corpus is.
class TokenView {
 public:
  TokenView(const void* data, int64_t size, uint32_t token_bytes)
      : data_(data), size_(size), token_bytes_(token_bytes) {}
  int64_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  int64_t operator[](int64_t i) const {
    return token_bytes_ == 2 ? static_cast<const uint16_t*>(data_)[i] : static_cast<const int32_t*>(data_)[i];
  }
  void copy_to(int64_t* out) const;
  std::vector<int64_t> to_vector() const;

 private:
  const void* data_;
  int64_t size_;
  uint32_t token_bytes_;
};

// Writes a .bin file: add() pairs in order, then finish(). The file appears (renamed from
// path + ".tmp") only when finish() succeeds; an abandoned writer leaves nothing behind.
class BinarizedWriter {
 public:
  BinarizedWriter(std::string path, const TextCodec& src, const TextCodec& tgt);
  ~BinarizedWriter();
  BinarizedWriter(const BinarizedWriter&) = delete;
  BinarizedWriter& operator=(const BinarizedWriter&) = delete;

  // Throws std::out_of_range for an id outside the side's vocabulary.
  void add(const std::vector<int64_t>& src, const std::vector<int64_t>& tgt);
  // Records the text files the pairs came from (so that readers can detect stale binaries).
  void finish(const SplitPaths& text);

  int64_t pairs() const { return static_cast<int64_t>(offsets_.size() / 2); }

 private:
  void write_ids(const std::vector<int64_t>& ids, uint64_t vocab_size, const char* side);

  std::string path_, tmp_path_;
  std::FILE* file_ = nullptr;
  BinarizedHeader header_{};
  std::vector<uint64_t> offsets_;  // starts of src_0, tgt_0, src_1, ...; the end is added by finish()
  std::vector<char> scratch_;
};

// A .bin file, memory-mapped read-only. Move-only.
class BinarizedCorpus {
 public:
  explicit BinarizedCorpus(std::string path);  // throws DataError naming the file and the problem
  ~BinarizedCorpus();
  BinarizedCorpus(BinarizedCorpus&& other) noexcept;
  BinarizedCorpus& operator=(BinarizedCorpus&& other) noexcept;
  BinarizedCorpus(const BinarizedCorpus&) = delete;
  BinarizedCorpus& operator=(const BinarizedCorpus&) = delete;

  int64_t size() const { return static_cast<int64_t>(header_->pairs); }
  TokenView src(int64_t i) const { return view(2 * i); }
  TokenView tgt(int64_t i) const { return view(2 * i + 1); }
  int64_t src_length(int64_t i) const { return static_cast<int64_t>(offsets_[2 * i + 1] - offsets_[2 * i]); }
  int64_t tgt_length(int64_t i) const {
    return static_cast<int64_t>(offsets_[2 * i + 2] - offsets_[2 * i + 1]);
  }

  const BinarizedHeader& header() const { return *header_; }
  const std::string& path() const { return path_; }
  uint64_t file_bytes() const { return bytes_; }

  // Throws DataError when the codecs differ from the ones the file was written with.
  void check_codecs(const TextCodec& src, const TextCodec& tgt) const;
  // Throws DataError when the text files exist and differ from the ones the file was made from.
  void check_text(const SplitPaths& text) const;

 private:
  TokenView view(int64_t k) const {
    return {tokens_ + offsets_[k] * header_->token_bytes, static_cast<int64_t>(offsets_[k + 1] - offsets_[k]),
            header_->token_bytes};
  }
  void validate() const;
  void unmap();

  std::string path_;
  void* map_ = nullptr;
  uint64_t bytes_ = 0;
  const BinarizedHeader* header_ = nullptr;
  const char* tokens_ = nullptr;
  const uint64_t* offsets_ = nullptr;
};

}  // namespace qkv
