// SentencePiece through libqkv_spm.so, loaded with dlopen at first use.
//
// RTLD_DEEPBIND makes the shim resolve its symbols inside its own dependencies first, so that
// libsentencepiece's embedded protobuf does not meet libtorch's libprotobuf (without it, the
// version check in SentencePiece's generated code aborts). RTLD_LOCAL keeps its symbols out of
// ours. The library is looked up, in order: $QKV_SPM_LIBRARY, next to the library that holds this code
// (libqkv_core.so: the build puts the two side by side, and so does `cmake --install`), and next to
// the running executable (for a program that links this code statically).
#include "data/sentencepiece.h"

#include <dlfcn.h>
#include <unistd.h>

#include <algorithm>
#include <exception>
#include <filesystem>
#include <utility>

#include <fmt/format.h>

#include "base/error.h"
#include "base/special_tokens.h"
#include "data/text_clean.h"
#include "spm/qkv_spm.h"

namespace qkv {
namespace {

// The shim's entry points, resolved once for the life of the process (never unloaded).
struct SpmLibrary {
  std::string path;
  decltype(&qkv_spm_last_error) last_error;
  decltype(&qkv_spm_train) train;
  decltype(&qkv_spm_load) load;
  decltype(&qkv_spm_free) free;
  decltype(&qkv_spm_encode_ids) encode_ids;
  decltype(&qkv_spm_encode_pieces) encode_pieces;
  decltype(&qkv_spm_decode_ids) decode_ids;
  decltype(&qkv_spm_decode_pieces) decode_pieces;
  decltype(&qkv_spm_vocab_size) vocab_size;
  decltype(&qkv_spm_id_to_piece) id_to_piece;
  decltype(&qkv_spm_piece_to_id) piece_to_id;
};

std::vector<std::string> candidate_paths() {
  std::vector<std::string> paths;
  if (const char* env = std::getenv("QKV_SPM_LIBRARY"); env != nullptr && *env != '\0')
    paths.emplace_back(env);
#ifdef QKV_SPM_LIBRARY_NAME
  namespace fs = std::filesystem;
  Dl_info self{};
  if (dladdr(reinterpret_cast<const void*>(&candidate_paths), &self) != 0 && self.dli_fname != nullptr &&
      *self.dli_fname != '\0')
    paths.push_back((fs::path(self.dli_fname).parent_path() / QKV_SPM_LIBRARY_NAME).string());
  std::error_code ec;
  const auto exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const auto beside_exe = (exe.parent_path() / QKV_SPM_LIBRARY_NAME).string();
    if (std::find(paths.begin(), paths.end(), beside_exe) == paths.end()) paths.push_back(beside_exe);
  }
#endif
  return paths;
}

template <typename F>
void resolve(void* handle, const std::string& path, const char* name, F& out) {
  out = reinterpret_cast<F>(dlsym(handle, name));
  if (out == nullptr) throw std::runtime_error(fmt::format("{} lacks the symbol {}", path, name));
}

SpmLibrary open_library() {
  std::string tried;
  for (const auto& path : candidate_paths()) {
    if (!std::filesystem::exists(path)) {
      tried += fmt::format("\n  {} (absent)", path);
      continue;
    }
    void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
    if (handle == nullptr) {
      tried += fmt::format("\n  {} ({})", path, dlerror());
      continue;
    }
    decltype(&qkv_spm_abi_version) abi_version;
    resolve(handle, path, "qkv_spm_abi_version", abi_version);
    if (abi_version() != QKV_SPM_ABI_VERSION) {
      throw std::runtime_error(fmt::format("{} has interface version {}, this qkv needs {}; rebuild qkv",
                                           path, abi_version(), QKV_SPM_ABI_VERSION));
    }
    SpmLibrary lib;
    lib.path = path;
    resolve(handle, path, "qkv_spm_last_error", lib.last_error);
    resolve(handle, path, "qkv_spm_train", lib.train);
    resolve(handle, path, "qkv_spm_load", lib.load);
    resolve(handle, path, "qkv_spm_free", lib.free);
    resolve(handle, path, "qkv_spm_encode_ids", lib.encode_ids);
    resolve(handle, path, "qkv_spm_encode_pieces", lib.encode_pieces);
    resolve(handle, path, "qkv_spm_decode_ids", lib.decode_ids);
    resolve(handle, path, "qkv_spm_decode_pieces", lib.decode_pieces);
    resolve(handle, path, "qkv_spm_vocab_size", lib.vocab_size);
    resolve(handle, path, "qkv_spm_id_to_piece", lib.id_to_piece);
    resolve(handle, path, "qkv_spm_piece_to_id", lib.piece_to_id);
    return lib;
  }
  throw std::runtime_error(
      fmt::format("SentencePiece support (libqkv_spm.so) not found; it belongs beside libqkv_core.so: build "
                  "the qkv_spm target (it needs libsentencepiece-dev), install qkv again, or point "
                  "QKV_SPM_LIBRARY at it. Tried:{}",
                  tried));
}

// Loaded on first use; a failed attempt throws and is retried by the next call.
const SpmLibrary& library() {
  static const SpmLibrary lib = open_library();
  return lib;
}

// Calls `produce(buffer, capacity)` (which returns the size needed, or -1) until the result fits.
template <typename T, typename Produce>
std::vector<T> call_sized(size_t guess, Produce produce, const char* what) {
  std::vector<T> buffer(guess + 1);
  while (true) {
    const int64_t needed = produce(buffer.data(), buffer.size());
    if (needed < 0)
      throw std::runtime_error(fmt::format("SentencePiece {}: {}", what, library().last_error()));
    // Text needs room for its NUL; ids fit exactly.
    const size_t room =
        std::is_same_v<T, char> ? static_cast<size_t>(needed) + 1 : static_cast<size_t>(needed);
    if (room <= buffer.size()) {
      buffer.resize(static_cast<size_t>(needed));
      return buffer;
    }
    buffer.resize(room);
  }
}

std::string join_pieces(const std::vector<std::string>& pieces) {
  std::string joined;
  for (const auto& piece : pieces) {
    if (!joined.empty()) joined += ' ';
    joined += piece;
  }
  return joined;
}

// The lines of several files in turn, cleaned, for the shim's trainer callback. Exceptions must
// not cross the C interface: the first one is kept and rethrown once the shim returns.
struct TrainingLines {
  std::vector<std::string> paths;
  size_t file = 0;
  std::unique_ptr<LineReader> reader;
  std::string line;
  std::exception_ptr error;

  static const char* next(void* context, size_t* length) {
    auto& self = *static_cast<TrainingLines*>(context);
    try {
      while (self.file < self.paths.size()) {
        if (!self.reader) self.reader = std::make_unique<LineReader>(self.paths[self.file]);
        while (self.reader->next(self.line)) {
          if (self.line.empty()) continue;
          *length = self.line.size();
          return self.line.data();
        }
        self.reader.reset();
        ++self.file;
      }
    } catch (...) {
      self.error = std::current_exception();
      *length = QKV_SPM_INPUT_FAILED;
    }
    return nullptr;
  }
};

}  // namespace

SpmModelType spm_model_type_from_string(const std::string& name) {
  if (name == "bpe") return SpmModelType::Bpe;
  if (name == "unigram") return SpmModelType::Unigram;
  throw ConfigError(fmt::format("unknown SentencePiece model type '{}'; expected bpe or unigram", name));
}

std::string to_string(SpmModelType v) {
  return v == SpmModelType::Bpe ? "bpe" : "unigram";
}

void train_sentencepiece(const std::vector<std::string>& inputs, const std::string& model_prefix,
                         const SpmTrainOptions& options) {
  const int64_t threads =
      options.threads > 0 ? options.threads : std::max<long>(1, sysconf(_SC_NPROCESSORS_ONLN));
  const std::vector<std::pair<std::string, std::string>> flags = {
      {"model_prefix", model_prefix},
      {"vocab_size", std::to_string(options.vocab_size)},
      {"model_type", to_string(options.model_type)},
      {"character_coverage", fmt::format("{}", options.character_coverage)},
      {"input_sentence_size", std::to_string(options.input_sentence_size)},
      {"shuffle_input_sentence", "true"},
      {"max_sentence_length", std::to_string(options.max_sentence_length)},
      {"num_threads", std::to_string(threads)},
      {"pad_id", std::to_string(kPadId)},
      {"pad_piece", kPadToken},
      {"bos_id", std::to_string(kBosId)},
      {"bos_piece", kBosToken},
      {"eos_id", std::to_string(kEosId)},
      {"eos_piece", kEosToken},
      {"unk_id", std::to_string(kUnkId)},
      {"unk_piece", kUnkToken},
      {"minloglevel", options.verbose ? "0" : "1"},
  };
  std::vector<const char*> keys, values;
  for (const auto& [key, value] : flags) {
    keys.push_back(key.c_str());
    values.push_back(value.c_str());
  }
  TrainingLines lines;
  lines.paths = inputs;
  const auto& lib = library();
  const int status = lib.train(keys.data(), values.data(), keys.size(), &TrainingLines::next, &lines);
  if (lines.error) std::rethrow_exception(lines.error);
  if (status != 0)
    throw std::runtime_error(fmt::format("SentencePiece training failed: {}", lib.last_error()));
}

SentencePiece::SentencePiece(std::string model_path) : path_(std::move(model_path)) {
  if (!std::filesystem::exists(path_)) {
    throw DataError(fmt::format("SentencePiece model {} not found; train one with `qkv data spm`", path_));
  }
  model_ = library().load(path_.c_str());
  if (model_ == nullptr) {
    throw DataError(fmt::format("cannot load SentencePiece model {}: {}", path_, library().last_error()));
  }
  const std::pair<int64_t, const char*> specials[] = {
      {kPadId, kPadToken}, {kBosId, kBosToken}, {kEosId, kEosToken}, {kUnkId, kUnkToken}};
  for (const auto& [id, token] : specials) {
    const std::string piece = id < size() ? id_to_piece(id) : std::string("(none)");
    if (piece != token) {
      throw DataError(fmt::format(
          "{}: id {} is '{}' but qkv needs <pad>=0 <s>=1 </s>=2 <unk>=3; train the model with `qkv data spm`",
          path_, id, piece));
    }
  }
}

SentencePiece::~SentencePiece() {
  if (model_ != nullptr) library().free(model_);
}

SentencePiece::SentencePiece(SentencePiece&& other) noexcept
    : path_(std::move(other.path_)), model_(std::exchange(other.model_, nullptr)) {}

SentencePiece& SentencePiece::operator=(SentencePiece&& other) noexcept {
  std::swap(path_, other.path_);
  std::swap(model_, other.model_);
  return *this;
}

std::vector<int64_t> SentencePiece::encode(std::string_view line) const {
  const auto ids = call_sized<int32_t>(
      line.size() + 8,
      [&](int32_t* out, size_t capacity) {
        return library().encode_ids(model_, line.data(), line.size(), out, capacity);
      },
      "encode");
  return {ids.begin(), ids.end()};
}

std::vector<std::string> SentencePiece::encode_pieces(std::string_view line) const {
  const auto joined = call_sized<char>(
      2 * line.size() + 16,
      [&](char* out, size_t capacity) {
        return library().encode_pieces(model_, line.data(), line.size(), out, capacity);
      },
      "encode");
  std::vector<std::string> pieces;
  size_t start = 0;
  for (size_t i = 0; i <= joined.size(); ++i) {
    if (i == joined.size() || joined[i] == ' ') {
      if (i > start) pieces.emplace_back(joined.data() + start, i - start);
      start = i + 1;
    }
  }
  return pieces;
}

std::string SentencePiece::decode(const std::vector<int64_t>& ids) const {
  std::vector<int32_t> narrow;
  narrow.reserve(ids.size());
  for (const int64_t id : ids) {
    if (id < 0 || id >= size()) {
      throw std::out_of_range(fmt::format("id {} is outside the SentencePiece vocabulary of {}", id, size()));
    }
    narrow.push_back(static_cast<int32_t>(id));
  }
  const auto text = call_sized<char>(
      8 * ids.size() + 16,
      [&](char* out, size_t capacity) {
        return library().decode_ids(model_, narrow.data(), narrow.size(), out, capacity);
      },
      "decode");
  return {text.begin(), text.end()};
}

std::string SentencePiece::decode_pieces(const std::vector<std::string>& pieces) const {
  const std::string joined = join_pieces(pieces);
  const auto text = call_sized<char>(
      joined.size() + 16,
      [&](char* out, size_t capacity) {
        return library().decode_pieces(model_, joined.data(), joined.size(), out, capacity);
      },
      "decode");
  return {text.begin(), text.end()};
}

int64_t SentencePiece::size() const {
  return library().vocab_size(model_);
}

std::string SentencePiece::id_to_piece(int64_t id) const {
  const auto piece = call_sized<char>(
      32,
      [&](char* out, size_t capacity) {
        return library().id_to_piece(model_, static_cast<int32_t>(id), out, capacity);
      },
      "id_to_piece");
  return {piece.begin(), piece.end()};
}

int64_t SentencePiece::piece_to_id(std::string_view piece) const {
  return library().piece_to_id(model_, piece.data(), piece.size());
}

std::string sentencepiece_library_path() {
  return library().path;
}

}  // namespace qkv
