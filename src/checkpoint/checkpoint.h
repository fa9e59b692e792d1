// Checkpoints: the model, the optimizer state, the random-number generators' states and a JSON
// metadata record (resolved config, step, data-iterator position, vocabulary, best score) in one
// file, written atomically and verified on load.
//
// File layout: an 8-byte head, a libtorch archive (the zip torch::save writes), a 24-byte tail:
//   head   "QKVCKPT1"
//   body   the archive: "model/..." (parameters, buffers), "optimizer/..." (optional), "rng/<device>"
//          (generator states as uint8 tensors), "meta" (a JSON string)
//   tail   body size (little-endian uint64), checksum of the body (64-bit FNV-1a over 8-byte words),
//          "QKVCKEND"
// A file whose size, tail or checksum does not match is refused with a CheckpointError before libtorch
// reads a byte of it: truncation and corruption are reported, never crash.
//
// Writes go to a temporary file in the same directory (.<name>.tmp-<pid>), which is flushed (fsync)
// and then renamed over the target, so a crash or error during a save leaves the previous file
// intact. A failed save (a full disk, a quota) is a CheckpointError naming the file and the system's
// reason, and removes its temporary; a process killed mid-save leaves one, which the next run in
// that directory removes (remove_stale_temporaries).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>
#include <torch/serialize/input-archive.h>
#include <nlohmann/json.hpp>

namespace qkv {

// Writes a file atomically: `produce` writes the contents through the sink it is given (any number
// of calls); if it or a write throws, the target is left as it was and the temporary file is
// removed. A failed write, fsync, close or rename throws CheckpointError("PATH: cannot save (...)").
using ByteSink = std::function<void(const void* data, size_t size)>;
void write_file_atomically(const std::string& path, const std::function<void(const ByteSink&)>& produce);

// The bytes of a checkpoint file around an archive body: head, body, tail (size and checksum). For
// files built by hand (the fuzz target of the reader builds crafted archives with it).
std::string checkpoint_file_bytes(std::string_view body);

// Saves `model` (parameters and buffers), `optimizer` (when non-null), the default generators'
// states (CPU, and each CUDA device's when present) and `meta`.
void save_checkpoint(const std::string& path, const torch::nn::Module& model,
                     const torch::optim::Optimizer* optimizer, const nlohmann::json& meta);

// A verified checkpoint file, loaded.
class LoadedCheckpoint {
 public:
  // Reads and verifies `path`; tensors are mapped to `device` when given. Throws CheckpointError.
  explicit LoadedCheckpoint(const std::string& path, std::optional<torch::Device> device = std::nullopt);
  // Not copyable: libtorch's InputArchive copies only from a non-const reference, which clang refuses
  // inside std::optional<LoadedCheckpoint> unless the copy is declared deleted here.
  LoadedCheckpoint(const LoadedCheckpoint&) = delete;
  LoadedCheckpoint& operator=(const LoadedCheckpoint&) = delete;

  const std::string& path() const { return path_; }
  const nlohmann::json& meta_json() const {
    return meta_;
  }  // the raw record: read it through CheckpointMeta (meta.h)
  bool has_optimizer() const { return has_optimizer_; }

  // Copies the saved parameters and buffers into `model`, which must have the same structure
  // (a mismatch is a CheckpointError naming the file).
  void load_model(torch::nn::Module& model);
  void load_optimizer(torch::optim::Optimizer& optimizer);
  // Restores the default generators' states saved with the checkpoint.
  void restore_rng_states();

 private:
  std::string path_;
  torch::serialize::InputArchive archive_;
  nlohmann::json meta_;
  bool has_optimizer_ = false;
};

// The checkpoints of a run: DIR/step-<N>.pt and DIR/best.pt.
struct CheckpointFiles {
  static std::string step_path(const std::string& dir, int64_t step);
  static std::string best_path(const std::string& dir);
  // step-<N>.pt files in `dir`, sorted by N ascending (empty if the directory is missing).
  static std::vector<std::pair<int64_t, std::string>> list(const std::string& dir);
  // Deletes all but the newest `keep` step files; 0 keeps all (best.pt is a separate link and stays).
  static void prune(const std::string& dir, int64_t keep);
  // Points best.pt at an existing step file: a hard link (a copy where links fail), replaced atomically.
  static void mark_best(const std::string& dir, const std::string& step_file);
  // Deletes the temporary files (.<name>.tmp-<pid>) that saves of processes no longer running left
  // behind (killed mid-save); returns how many. A live process's save in progress is left alone.
  static int64_t remove_stale_temporaries(const std::string& dir);
};

}  // namespace qkv
