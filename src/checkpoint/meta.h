// What a checkpoint says about itself: the typed record stored beside the tensors (checkpoint.h).
//
// The record is JSON inside the archive, written and read only through CheckpointMeta, so one struct
// lists every field and one place decides what a valid record is. Reading checks the format name and
// version (a newer format is refused with a message, never misread), puts the saved config through
// the same validate() as a config file, and names the checkpoint file in every error.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/config.h"
#include "data/batching.h"
#include "data/codec.h"

namespace qkv {

class LoadedCheckpoint;

// The best validation so far (highest dev BLEU, then lowest NLL).
struct BestScore {
  int64_t step = 0;
  double bleu = 0.0;
  double nll = 0.0;
};

// The float16 loss scaler's state (train/loss_scaler.h) in a run that has one.
struct LossScaleRecord {
  double scale = 0.0;
  int64_t clean_steps = 0;
  int64_t skipped_steps = 0;
};

struct CheckpointMeta {
  // Version 1: the fields below. A reader refuses a record whose version is newer than this.
  static constexpr int64_t kVersion = 1;

  Config config;                  // the resolved config of the run
  int64_t step = 0;               // optimizer updates done
  BatchPosition data_position;    // the next batch of the (global) epoch
  nlohmann::json codecs;          // the vocabularies (codecs_record below)
  std::optional<BestScore> best;  // none before the first validation
  int64_t evals_without_improvement = 0;
  double elapsed_s = 0.0;                     // wall time of the run so far, resumed parts included
  double flops = 0.0;                         // training FLOPs so far (train/flops.h)
  std::vector<std::string> averaged_from;     // the inputs of `qkv average`; empty for a training checkpoint
  std::optional<LossScaleRecord> loss_scale;  // train.precision "fp16" only

  nlohmann::json to_json() const;
  // Throws CheckpointError naming `path` for a record that is not a qkv checkpoint's, a newer
  // version, a missing or mistyped field, or a saved config that validate() refuses.
  static CheckpointMeta from_json(const nlohmann::json& j, const std::string& path);
  // from_json of a loaded checkpoint's record.
  static CheckpointMeta read(const LoadedCheckpoint& checkpoint);

  // The vocabularies as a record (the word lists in full, so that a checkpoint alone can translate),
  // and the codecs rebuilt from `codecs`; errors name the checkpoint `path`.
  static nlohmann::json codecs_record(const DataConfig& data, const CodecPair& codecs);
  CodecPair make_codecs(const std::string& path) const;
};

}  // namespace qkv
