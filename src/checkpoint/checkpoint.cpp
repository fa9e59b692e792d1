// Checkpoint files: atomic writes, verification, and the archive layout described in checkpoint.h.
#include "checkpoint/checkpoint.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>

#include <ATen/Context.h>
#include <fmt/format.h>
#include <torch/cuda.h>
#include <torch/serialize/output-archive.h>

#include "base/error.h"
#include "checkpoint/archive_check.h"
#include "config/json_input.h"

namespace qkv {
namespace fs = std::filesystem;
namespace {

constexpr char kHead[] = "QKVCKPT1";  // 8 bytes + NUL
constexpr char kTail[] = "QKVCKEND";
constexpr size_t kMagicSize = 8;
constexpr size_t kTailSize = 24;        // size, checksum, magic
constexpr char kTempInfix[] = ".tmp-";  // a save's temporary file is .<name>.tmp-<pid>

// 64-bit FNV-1a over little-endian 8-byte words (the final partial word zero-padded), fed in chunks
// of any size. Eight bytes per multiply instead of one keeps it cheap on multi-GB checkpoints.
class Checksum {
 public:
  void update(const void* data, size_t size) {
    auto bytes = static_cast<const unsigned char*>(data);
    total_ += size;
    while (size > 0) {
      const size_t take = std::min(size, 8 - pending_);
      std::memcpy(word_ + pending_, bytes, take);
      pending_ += take, bytes += take, size -= take;
      if (pending_ == 8) mix();
    }
  }
  uint64_t finish() {
    if (pending_ > 0) {
      std::memset(word_ + pending_, 0, 8 - pending_);
      mix();
    }
    return hash_ ^ total_;
  }

 private:
  void mix() {
    uint64_t w = 0;
    for (int i = 7; i >= 0; --i) w = (w << 8) | word_[i];
    hash_ = (hash_ ^ w) * 0x100000001b3ULL;
    pending_ = 0;
  }
  uint64_t hash_ = 0xcbf29ce484222325ULL;
  uint64_t total_ = 0;
  unsigned char word_[8] = {};
  size_t pending_ = 0;
};

void put_u64(unsigned char* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out[i] = static_cast<unsigned char>(v >> (8 * i));
}
uint64_t get_u64(const unsigned char* in) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | in[i];
  return v;
}

// The tail after the body: its size, its checksum, the end marker.
std::array<unsigned char, kTailSize> make_tail(uint64_t size, uint64_t checksum) {
  std::array<unsigned char, kTailSize> tail{};
  put_u64(tail.data(), size);
  put_u64(tail.data() + 8, checksum);
  std::memcpy(tail.data() + 16, kTail, kMagicSize);
  return tail;
}

std::string errno_text() {
  return std::strerror(errno);
}

// Flushes a directory entry (the rename) to disk; failures are ignored where the file system does
// not support it.
void sync_directory(const fs::path& dir) {
  const int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

std::vector<at::Device> generator_devices() {
  std::vector<at::Device> devices{at::Device(at::kCPU)};
  for (size_t i = 0; i < torch::cuda::device_count(); ++i)
    devices.emplace_back(at::kCUDA, static_cast<c10::DeviceIndex>(i));
  return devices;
}

std::string generator_key(const at::Device& device) {
  return device.is_cpu() ? "cpu" : fmt::format("cuda{}", device.index());
}

std::string temporary_path(const fs::path& target) {
  return (target.parent_path() / fmt::format(".{}{}{}", target.filename().string(), kTempInfix, ::getpid()))
      .string();
}

// The process that owns a temporary file `.<name>.tmp-<pid>`, or 0 when `name` is not one.
pid_t temporary_owner(const std::string& name) {
  static const std::regex pattern(R"(\..+\.tmp-(\d{1,9}))");
  std::smatch m;
  if (!std::regex_match(name, m, pattern)) return 0;
  return static_cast<pid_t>(std::stol(m[1].str()));
}

}  // namespace

void write_file_atomically(const std::string& path, const std::function<void(const ByteSink&)>& produce) {
  const fs::path target(path);
  const std::string temp = temporary_path(target);
  // Errors name the file the user asked for; the temporary is an implementation detail.
  auto failed = [&](const char* doing, int error) {
    return CheckpointError(fmt::format("{}: cannot save ({} failed: {})", path, doing, std::strerror(error)));
  };
  const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw failed("creating a temporary file", errno);
  auto sink = [&](const void* data, size_t size) {
    auto bytes = static_cast<const char*>(data);
    while (size > 0) {
      const ssize_t n = ::write(fd, bytes, size);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) throw failed("write", errno);
      bytes += n, size -= static_cast<size_t>(n);
    }
  };
  try {
    produce(sink);
    if (::fsync(fd) != 0) throw failed("fsync", errno);
  } catch (...) {
    ::close(fd);
    ::unlink(temp.c_str());
    throw;
  }
  // close() reports deferred write errors on some file systems (NFS, quota).
  if (::close(fd) != 0) {
    const int error = errno;
    ::unlink(temp.c_str());
    throw failed("close", error);
  }
  if (::rename(temp.c_str(), target.c_str()) != 0) {
    const int error = errno;
    ::unlink(temp.c_str());
    throw failed("rename into place", error);
  }
  sync_directory(target.parent_path());
}

std::string checkpoint_file_bytes(std::string_view body) {
  Checksum checksum;
  checksum.update(body.data(), body.size());
  const auto tail = make_tail(body.size(), checksum.finish());
  std::string file(kHead, kMagicSize);
  file.append(body);
  file.append(reinterpret_cast<const char*>(tail.data()), tail.size());
  return file;
}

void save_checkpoint(const std::string& path, const torch::nn::Module& model,
                     const torch::optim::Optimizer* optimizer, const nlohmann::json& meta) {
  torch::serialize::OutputArchive archive;
  torch::serialize::OutputArchive model_archive;
  model.save(model_archive);
  archive.write("model", model_archive);
  if (optimizer != nullptr) {
    torch::serialize::OutputArchive optimizer_archive;
    optimizer->save(optimizer_archive);
    archive.write("optimizer", optimizer_archive);
  }
  torch::serialize::OutputArchive rng_archive;
  for (const auto& device : generator_devices()) {
    auto generator = at::globalContext().defaultGenerator(device);
    std::lock_guard<std::mutex> lock(generator.mutex());
    rng_archive.write(generator_key(device), generator.get_state());
  }
  archive.write("rng", rng_archive);
  archive.write("meta", c10::IValue(meta.dump()));

  write_file_atomically(path, [&](const ByteSink& sink) {
    sink(kHead, kMagicSize);
    Checksum checksum;
    uint64_t size = 0;
    // libtorch's zip writer must never see an exception or a short write: either unwinds through
    // its C code or ends in its destructor, which then writes again and aborts the program
    // ("unexpected pos", a full disk's old symptom). A failed write is latched here, the rest of the
    // archive is discarded, and the error is thrown once libtorch has finished cleanly.
    std::exception_ptr failure;
    archive.save_to([&](const void* data, size_t n) -> size_t {
      if (failure) return n;
      try {
        sink(data, n);
        checksum.update(data, n);
        size += n;
      } catch (...) {
        failure = std::current_exception();
      }
      return n;
    });
    if (failure) std::rethrow_exception(failure);
    const auto tail = make_tail(size, checksum.finish());
    sink(tail.data(), tail.size());
  });
}

LoadedCheckpoint::LoadedCheckpoint(const std::string& path, std::optional<torch::Device> device)
    : path_(path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw CheckpointError(fmt::format("{}: cannot open checkpoint ({})", path, errno_text()));
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto corrupt = [&](const std::string& why) {
    return CheckpointError(fmt::format("{}: truncated or corrupt checkpoint ({})", path, why));
  };
  if (bytes.size() < kMagicSize + kTailSize) throw corrupt(fmt::format("only {} bytes", bytes.size()));
  if (bytes.compare(0, kMagicSize, kHead) != 0) throw corrupt("not a qkv checkpoint: wrong header");
  auto tail = reinterpret_cast<const unsigned char*>(bytes.data() + bytes.size() - kTailSize);
  if (std::memcmp(tail + 16, kTail, kMagicSize) != 0)
    throw corrupt("end marker missing: the file was cut short");
  const uint64_t size = get_u64(tail);
  if (size != bytes.size() - kMagicSize - kTailSize)
    throw corrupt(
        fmt::format("body is {} bytes, the tail says {}", bytes.size() - kMagicSize - kTailSize, size));
  Checksum checksum;
  checksum.update(bytes.data() + kMagicSize, size);
  if (checksum.finish() != get_u64(tail + 8)) throw corrupt("checksum mismatch");

  try {
    // c10::optional is not std::optional in libtorch 1.x.
    const c10::optional<torch::Device> map_to = device ? c10::optional<torch::Device>(*device) : c10::nullopt;
    check_archive(bytes.data() + kMagicSize, size);  // libtorch's reader is not for hostile input
    archive_.load_from(bytes.data() + kMagicSize, size, map_to);
    c10::IValue meta;
    archive_.read("meta", meta);
    if (!meta.isString()) throw corrupt("its record is not a string");
    meta_ = parse_json_strictly(meta.toStringRef(), "record");
    torch::serialize::InputArchive probe;
    has_optimizer_ = archive_.try_read("optimizer", probe);
  } catch (const CheckpointError&) {
    throw;
  } catch (const c10::Error& e) {
    // what() would append libtorch's C++ backtrace ("Exception raised from ... frame #0").
    throw corrupt(fmt::format("unreadable archive: {}", one_line(e.what_without_backtrace(), 200)));
  } catch (const std::exception& e) {
    throw corrupt(fmt::format("unreadable archive: {}", one_line(e.what(), 200)));
  }
}

void LoadedCheckpoint::load_model(torch::nn::Module& model) {
  torch::serialize::InputArchive model_archive;
  try {
    archive_.read("model", model_archive);
    model.load(model_archive);
  } catch (const c10::Error& e) {
    throw CheckpointError(fmt::format("{}: the saved model does not match this model's structure ({})", path_,
                                      one_line(e.what_without_backtrace(), 300)));
  }
}

void LoadedCheckpoint::load_optimizer(torch::optim::Optimizer& optimizer) {
  if (!has_optimizer_)
    throw CheckpointError(fmt::format("{}: holds no optimizer state (an average?)", path_));
  torch::serialize::InputArchive optimizer_archive;
  try {
    archive_.read("optimizer", optimizer_archive);
    optimizer.load(optimizer_archive);
  } catch (const c10::Error& e) {
    throw CheckpointError(fmt::format("{}: cannot restore the optimizer ({})", path_,
                                      one_line(e.what_without_backtrace(), 300)));
  }
}

void LoadedCheckpoint::restore_rng_states() {
  torch::serialize::InputArchive rng_archive;
  if (!archive_.try_read("rng", rng_archive)) return;
  for (const auto& device : generator_devices()) {
    torch::Tensor state;
    if (!rng_archive.try_read(generator_key(device), state)) continue;
    auto generator = at::globalContext().defaultGenerator(device);
    std::lock_guard<std::mutex> lock(generator.mutex());
    try {
      generator.set_state(state.cpu());
    } catch (const c10::Error& e) {
      throw CheckpointError(fmt::format("{}: cannot restore the {} generator's state ({})", path_,
                                        generator_key(device), one_line(e.what_without_backtrace(), 300)));
    }
  }
}

std::string CheckpointFiles::step_path(const std::string& dir, int64_t step) {
  return (fs::path(dir) / fmt::format("step-{}.pt", step)).string();
}

std::string CheckpointFiles::best_path(const std::string& dir) {
  return (fs::path(dir) / "best.pt").string();
}

std::vector<std::pair<int64_t, std::string>> CheckpointFiles::list(const std::string& dir) {
  std::vector<std::pair<int64_t, std::string>> files;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return files;
  static const std::regex pattern(R"(step-(\d+)\.pt)");
  for (const auto& entry : fs::directory_iterator(dir)) {
    std::smatch m;
    const std::string name = entry.path().filename().string();
    if (std::regex_match(name, m, pattern)) files.emplace_back(std::stoll(m[1].str()), entry.path().string());
  }
  std::sort(files.begin(), files.end());
  return files;
}

void CheckpointFiles::prune(const std::string& dir, int64_t keep) {
  if (keep <= 0) return;  // train.keep_checkpoints = 0 keeps them all (configs/README.md)
  auto files = list(dir);
  const int64_t excess = static_cast<int64_t>(files.size()) - keep;
  for (int64_t i = 0; i < excess; ++i) fs::remove(files[static_cast<size_t>(i)].second);
}

void CheckpointFiles::mark_best(const std::string& dir, const std::string& step_file) {
  const fs::path temp = temporary_path(best_path(dir));
  std::error_code ec;
  fs::remove(temp, ec);
  fs::create_hard_link(step_file, temp, ec);
  if (ec) fs::copy_file(step_file, temp, fs::copy_options::overwrite_existing, ec);
  if (!ec) fs::rename(temp, best_path(dir), ec);
  if (ec) {
    fs::remove(temp);
    throw CheckpointError(
        fmt::format("{}: cannot point it at {} ({})", best_path(dir), step_file, ec.message()));
  }
  sync_directory(fs::path(dir));
}

int64_t CheckpointFiles::remove_stale_temporaries(const std::string& dir) {
  int64_t removed = 0;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const pid_t owner = temporary_owner(it->path().filename().string());
    if (owner <= 0 || owner == ::getpid()) continue;
    if (::kill(owner, 0) == 0 || errno != ESRCH) continue;  // alive (or not ours to judge)
    std::error_code remove_error;
    if (fs::remove(it->path(), remove_error)) ++removed;
  }
  return removed;
}

}  // namespace qkv
