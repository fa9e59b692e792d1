// The binarized corpus format: writer and memory-mapped reader (see binarized.h for the layout).
#include "data/binarized.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <utility>

#include <fmt/format.h>

#include "base/error.h"
#include "data/codec.h"

namespace qkv {
namespace {

namespace fs = std::filesystem;

constexpr char kMagic[8] = {'Q', 'K', 'V', 'B', 'I', 'N', '\r', '\n'};
constexpr uint64_t kSignatureBytes = 64 * 1024;

uint64_t round_up8(uint64_t n) {
  return (n + 7) / 8 * 8;
}

void write_all(std::FILE* file, const void* data, size_t bytes, const std::string& path) {
  if (bytes > 0 && std::fwrite(data, 1, bytes, file) != bytes) {
    throw DataError(fmt::format("{}: write failed ({})", path, std::strerror(errno)));
  }
}

uint64_t fnv1a(const char* data, size_t size, uint64_t hash) {
  for (size_t i = 0; i < size; ++i) {
    hash ^= static_cast<unsigned char>(data[i]);
    hash *= 1099511628211ull;
  }
  return hash;
}

}  // namespace

std::string binarized_path(const std::string& dir, const std::string& prefix, const std::string& src_lang,
                           const std::string& tgt_lang) {
  return (fs::path(dir) / fmt::format("{}.{}-{}.bin", prefix, src_lang, tgt_lang)).string();
}

uint64_t text_signature(const std::string& path) {
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) throw DataError(fmt::format("cannot open {}: {}", path, std::strerror(errno)));
  std::vector<char> buffer(kSignatureBytes);
  uint64_t hash = 14695981039346656037ull;
  hash = fnv1a(buffer.data(), std::fread(buffer.data(), 1, buffer.size(), file), hash);
  if (std::fseek(file, 0, SEEK_END) == 0 && std::ftell(file) > static_cast<long>(kSignatureBytes)) {
    std::fseek(file, -static_cast<long>(kSignatureBytes), SEEK_END);
    hash = fnv1a(buffer.data(), std::fread(buffer.data(), 1, buffer.size(), file), hash);
  }
  std::fclose(file);
  return hash;
}

void TokenView::copy_to(int64_t* out) const {
  for (int64_t i = 0; i < size_; ++i) out[i] = (*this)[i];
}

std::vector<int64_t> TokenView::to_vector() const {
  std::vector<int64_t> ids(static_cast<size_t>(size_));
  copy_to(ids.data());
  return ids;
}

// --- writer ---------------------------------------------------------------------------------------

BinarizedWriter::BinarizedWriter(std::string path, const TextCodec& src, const TextCodec& tgt)
    : path_(std::move(path)), tmp_path_(path_ + ".tmp") {
  std::memcpy(header_.magic, kMagic, sizeof kMagic);
  header_.version = kBinarizedVersion;
  header_.src.vocab_size = static_cast<uint64_t>(src.size());
  header_.tgt.vocab_size = static_cast<uint64_t>(tgt.size());
  header_.src.codec_fingerprint = src.fingerprint();
  header_.tgt.codec_fingerprint = &src == &tgt ? header_.src.codec_fingerprint : tgt.fingerprint();
  header_.token_bytes = std::max(src.size(), tgt.size()) <= 65536 ? 2 : 4;
  const fs::path parent = fs::path(path_).parent_path();
  if (!parent.empty()) fs::create_directories(parent);
  file_ = std::fopen(tmp_path_.c_str(), "wb");
  if (file_ == nullptr) throw DataError(fmt::format("cannot write {}: {}", tmp_path_, std::strerror(errno)));
  write_all(file_, &header_, sizeof header_, tmp_path_);  // rewritten by finish()
}

BinarizedWriter::~BinarizedWriter() {
  if (file_ != nullptr) {
    std::fclose(file_);
    std::remove(tmp_path_.c_str());
  }
}

void BinarizedWriter::write_ids(const std::vector<int64_t>& ids, uint64_t vocab_size, const char* side) {
  offsets_.push_back(header_.tokens);
  scratch_.resize(ids.size() * header_.token_bytes);
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || static_cast<uint64_t>(ids[i]) >= vocab_size) {
      throw std::out_of_range(fmt::format("{}: {} id {} of pair {} is outside the vocabulary of {}", path_,
                                          side, ids[i], pairs(), vocab_size));
    }
    if (header_.token_bytes == 2) {
      const auto id = static_cast<uint16_t>(ids[i]);
      std::memcpy(scratch_.data() + 2 * i, &id, 2);
    } else {
      const auto id = static_cast<int32_t>(ids[i]);
      std::memcpy(scratch_.data() + 4 * i, &id, 4);
    }
  }
  write_all(file_, scratch_.data(), scratch_.size(), tmp_path_);
  header_.tokens += ids.size();
}

void BinarizedWriter::add(const std::vector<int64_t>& src, const std::vector<int64_t>& tgt) {
  write_ids(src, header_.src.vocab_size, "source");
  write_ids(tgt, header_.tgt.vocab_size, "target");
}

void BinarizedWriter::finish(const SplitPaths& text) {
  header_.pairs = offsets_.size() / 2;
  offsets_.push_back(header_.tokens);
  const uint64_t token_end = sizeof header_ + header_.tokens * header_.token_bytes;
  header_.offsets_at = round_up8(token_end);
  const char zeros[8] = {};
  write_all(file_, zeros, header_.offsets_at - token_end, tmp_path_);
  write_all(file_, offsets_.data(), offsets_.size() * sizeof(uint64_t), tmp_path_);
  header_.src.text_bytes = fs::file_size(text.src);
  header_.tgt.text_bytes = fs::file_size(text.tgt);
  header_.src.text_signature = text_signature(text.src);
  header_.tgt.text_signature = text_signature(text.tgt);
  if (std::fseek(file_, 0, SEEK_SET) != 0) throw DataError(fmt::format("{}: seek failed", tmp_path_));
  write_all(file_, &header_, sizeof header_, tmp_path_);
  const bool closed = std::fclose(file_) == 0;
  file_ = nullptr;
  if (!closed) {
    std::remove(tmp_path_.c_str());
    throw DataError(fmt::format("{}: write failed ({})", tmp_path_, std::strerror(errno)));
  }
  fs::rename(tmp_path_, path_);
}

// --- reader ---------------------------------------------------------------------------------------

BinarizedCorpus::BinarizedCorpus(std::string path) : path_(std::move(path)) {
  const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    throw DataError(
        fmt::format("cannot open {}: {}; create it with `qkv data binarize`", path_, std::strerror(errno)));
  }
  struct stat info {};
  if (::fstat(fd, &info) != 0 || static_cast<uint64_t>(info.st_size) < sizeof(BinarizedHeader)) {
    ::close(fd);
    throw DataError(fmt::format("{}: too short to be a binarized corpus", path_));
  }
  bytes_ = static_cast<uint64_t>(info.st_size);
  map_ = ::mmap(nullptr, bytes_, PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);  // the mapping keeps the file
  if (map_ == MAP_FAILED) {
    map_ = nullptr;
    throw DataError(fmt::format("{}: mmap failed ({})", path_, std::strerror(errno)));
  }
  header_ = static_cast<const BinarizedHeader*>(map_);
  try {
    validate();
  } catch (...) {
    unmap();
    throw;
  }
  tokens_ = static_cast<const char*>(map_) + sizeof(BinarizedHeader);
  offsets_ = reinterpret_cast<const uint64_t*>(static_cast<const char*>(map_) + header_->offsets_at);
}

void BinarizedCorpus::validate() const {
  const auto bad = [&](const std::string& what) {
    return DataError(fmt::format(
        "{}: not a valid qkv binarized corpus ({}); recreate it with `qkv data binarize`", path_, what));
  };
  if (std::memcmp(header_->magic, kMagic, sizeof kMagic) != 0) throw bad("wrong magic bytes");
  if (header_->version != kBinarizedVersion) {
    throw bad(fmt::format("format version {}, this qkv reads {}", header_->version, kBinarizedVersion));
  }
  if (header_->token_bytes != 2 && header_->token_bytes != 4) throw bad("token width is not 2 or 4 bytes");
  // The counts come from the file: bound them by its size before multiplying, so that crafted counts
  // cannot wrap the arithmetic below around into a size that matches.
  if (header_->tokens > bytes_ / header_->token_bytes || header_->pairs > bytes_ / (2 * sizeof(uint64_t)))
    throw bad(
        fmt::format("{} bytes cannot hold {} pairs of {} tokens", bytes_, header_->pairs, header_->tokens));
  const uint64_t token_end = sizeof(BinarizedHeader) + header_->tokens * header_->token_bytes;
  if (header_->offsets_at != round_up8(token_end) ||
      bytes_ != header_->offsets_at + (2 * header_->pairs + 1) * sizeof(uint64_t)) {
    throw bad(fmt::format("{} bytes do not hold {} pairs of {} tokens; truncated?", bytes_, header_->pairs,
                          header_->tokens));
  }
  const auto* offsets =
      reinterpret_cast<const uint64_t*>(static_cast<const char*>(map_) + header_->offsets_at);
  if (offsets[0] != 0 || offsets[2 * header_->pairs] != header_->tokens)
    throw bad("offsets do not span the tokens");
  for (uint64_t k = 0; k < 2 * header_->pairs; ++k) {
    if (offsets[k + 1] < offsets[k]) throw bad(fmt::format("offsets decrease at pair {}", k / 2));
  }
}

BinarizedCorpus::~BinarizedCorpus() {
  unmap();
}

void BinarizedCorpus::unmap() {
  if (map_ != nullptr) ::munmap(map_, bytes_);
  map_ = nullptr;
}

BinarizedCorpus::BinarizedCorpus(BinarizedCorpus&& other) noexcept {
  *this = std::move(other);
}

BinarizedCorpus& BinarizedCorpus::operator=(BinarizedCorpus&& other) noexcept {
  std::swap(path_, other.path_);
  std::swap(map_, other.map_);
  std::swap(bytes_, other.bytes_);
  std::swap(header_, other.header_);
  std::swap(tokens_, other.tokens_);
  std::swap(offsets_, other.offsets_);
  return *this;
}

void BinarizedCorpus::check_codecs(const TextCodec& src, const TextCodec& tgt) const {
  const auto check = [&](const BinarizedSide& side, const TextCodec& codec, const char* name) {
    if (side.vocab_size != static_cast<uint64_t>(codec.size()) ||
        side.codec_fingerprint != codec.fingerprint()) {
      throw DataError(fmt::format(
          "{}: the {} side was binarized with another vocabulary ({} entries) than the one in use ({}); "
          "rerun `qkv data binarize` with this config",
          path_, name, side.vocab_size, codec.name()));
    }
  };
  check(header_->src, src, "source");
  check(header_->tgt, tgt, "target");
}

void BinarizedCorpus::check_text(const SplitPaths& text) const {
  const auto check = [&](const BinarizedSide& side, const std::string& path) {
    std::error_code ec;
    if (!fs::exists(path, ec)) return;
    if (fs::file_size(path) != side.text_bytes || text_signature(path) != side.text_signature) {
      throw DataError(fmt::format(
          "{} is out of date: {} changed since it was binarized; rerun `qkv data binarize`", path_, path));
    }
  };
  check(header_->src, text.src);
  check(header_->tgt, text.tgt);
}

}  // namespace qkv
