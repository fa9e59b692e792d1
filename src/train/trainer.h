// The training loop (Vaswani et al. 2017, §5): token-bucketed batches, Adam (FusedAdam, fused_adam.h)
// on the configured learning-rate schedule, gradient accumulation and clipping (train_step.h), a progress
// line and metrics.jsonl, validation (dev NLL, perplexity, BLEU) with best-checkpoint tracking and optional
// early stopping, periodic atomic checkpoints, exact resumption, a guard against non-finite steps,
// and a clean stop on SIGINT/SIGTERM. At the end: total training FLOPs, wall time, dev and test
// BLEU and a few sample translations next to their references.
//
// Determinism: for a given config (train.seed), number of processes and thread count, two runs
// produce the same parameters bit for bit, and a run resumed from a checkpoint continues exactly as if
// it had not stopped: the checkpoint holds the parameters, Adam's moments, the step and the batch
// iterator's position, and each update draws its dropout masks from a generator seeded with
// (train.seed, step, rank).
//
// Data-parallel training (dist/, docs/distributed.md): every process plans the same seeded epochs and
// takes batch i of an update when i mod W is its rank, so the union of the processes' batches is the
// single-process epoch and the data position in a checkpoint is global (a run saved with W processes
// resumes with any other number). Rank 0 alone writes files (checkpoints, metrics.jsonl, config.json,
// vocabularies) and validates; the others wait for it at the next collective.
#pragma once

#include <chrono>
#include <cstdint>
#include <iostream>
#include <memory>
#include <optional>
#include <string>

#include "checkpoint/checkpoint.h"
#include "checkpoint/meta.h"
#include "config/load.h"
#include "data/batching.h"
#include "data/codec.h"
#include "data/dataset.h"
#include "dist/reducer.h"
#include "dist/world.h"
#include "eval/evaluate.h"
#include "model/transformer.h"
#include "train/fused_adam.h"
#include "train/loss_scaler.h"
#include "train/metrics.h"
#include "train/run_setup.h"

namespace qkv {

struct StepResult;  // train_step.h

struct TrainOptions {
  std::string out_dir;
  std::string config_source = "config";  // names the config (its file) in errors
  bool resume = false;  // continue from out_dir's newest checkpoint (the caller resolved the config)
  std::ostream* log = &std::cout;
  bool live_progress = false;       // redraw a status line between log lines (on a terminal)
  bool final_evaluation = true;     // dev and test BLEU with sample translations at the end
  int64_t samples = 5;              // sample translations printed at the end
  int64_t max_nonfinite_steps = 5;  // skipped updates in a row before giving up
  dist::World* world = nullptr;     // the processes of a data-parallel run; null: this process alone
};

// Why training stopped.
enum class StopReason { Finished, EarlyStopped, Interrupted };

struct TrainSummary {
  int64_t step = 0;
  StopReason reason = StopReason::Finished;
  double seconds = 0.0;  // wall time of the whole run, resumed parts included
  double flops = 0.0;    // training FLOPs (flops.h), resumed parts included
  std::optional<EvalResult> dev;
  std::optional<EvalResult> test;
  std::string last_checkpoint;
  std::string best_checkpoint;  // empty when no validation ran
};

// Thrown when max_nonfinite_steps updates in a row had a non-finite loss or gradient.
struct TrainingDiverged : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class Trainer {
 public:
  // Prepares data, model and optimizer (and restores the newest checkpoint when resuming). The
  // run directory must have been prepared (run_setup.h).
  Trainer(const Config& config, const TrainOptions& options);
  ~Trainer();

  TrainSummary run();

  Transformer& model() { return model_; }
  const Config& config() const { return config_; }
  int64_t step() const { return step_; }

 private:
  void log_start() const;
  void restore(LoadedCheckpoint& checkpoint, const CheckpointMeta& meta);
  std::vector<Batch> next_batches();
  bool agree_on_early_stop();
  void report_interval(double lr, double last_grad_norm);
  std::string progress_line(double lr, double eta_seconds) const;
  bool absorb_overflow(const StepResult& result);
  void validate_and_track();
  std::string save(const char* why);
  CheckpointMeta checkpoint_meta() const;
  void final_report(TrainSummary& summary);

  Config config_;
  TrainOptions options_;
  RunPaths paths_;
  std::ostream& log_;
  Console console_;
  torch::Device device_;
  CodecPair codecs_;
  Split dev_;
  Transformer model_{nullptr};
  std::unique_ptr<FusedAdam> optimizer_;
  std::unique_ptr<BatchIterator> batches_;
  std::unique_ptr<dist::World> own_world_;  // a world of one, when none was given
  dist::World* world_;
  std::unique_ptr<dist::GradientReducer> reducer_;
  MetricsLog metrics_;
  std::optional<LossScaler> scaler_;  // train.precision "fp16" only (loss_scaler.h)

  int64_t step_ = 0;
  int64_t nonfinite_in_a_row_ = 0;
  int64_t evals_without_improvement_ = 0;
  std::optional<BestScore> best_;
  IntervalStats interval_;
  double seconds_before_ = 0.0;  // wall time of earlier (resumed) parts
  std::chrono::steady_clock::time_point run_start_;
  double elapsed() const;  // wall time so far, resumed parts included
  double validation_seconds_ = 0.0;
  double flops_ = 0.0;
  int64_t saved_step_ = -1;  // the step the newest checkpoint holds
  std::string last_checkpoint_;
  std::optional<EvalResult> last_dev_;  // the newest validation
  int64_t last_dev_step_ = -1;
};

}  // namespace qkv
