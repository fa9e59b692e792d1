// The training loop: set-up, the step loop, interruption and checkpoints. Validation and the final
// report are in trainer_report.cpp. See trainer.h.
#include "train/trainer.h"

#include <filesystem>

#include <fmt/format.h>
#include <torch/torch.h>

#include "base/error.h"
#include "eval/translate.h"
#include "runtime/signals.h"
#include "train/flops.h"
#include "train/schedule.h"
#include "train/train_step.h"

namespace qkv {
namespace fs = std::filesystem;
namespace {

// Saves the word vocabularies next to the run (the checkpoint holds them too).
void save_vocabularies(const CodecPair& codecs, const std::string& dir) {
  auto src = dynamic_cast<const WordCodec*>(codecs.src.get());
  auto tgt = dynamic_cast<const WordCodec*>(codecs.tgt.get());
  if (src == nullptr || tgt == nullptr) return;  // SentencePiece: the model file is the vocabulary
  if (codecs.src == codecs.tgt) {
    src->vocab().save((fs::path(dir) / "vocab.txt").string());
  } else {
    src->vocab().save((fs::path(dir) / "vocab.src.txt").string());
    tgt->vocab().save((fs::path(dir) / "vocab.tgt.txt").string());
  }
}

torch::optim::AdamOptions adam_options(const TrainConfig& train) {
  return torch::optim::AdamOptions(train.lr)
      .betas(std::make_tuple(train.adam_betas[0], train.adam_betas[1]))
      .eps(train.adam_eps);
}

}  // namespace

Trainer::Trainer(const Config& config, const TrainOptions& options)
    : config_(config),
      options_(options),
      paths_(options.out_dir),
      log_(*options.log),
      console_(*options.log, options.live_progress),
      device_(default_device()) {
  validate_device(config_, device_.is_cuda());
  if (config_.train.precision == Precision::Fp16) scaler_.emplace();
  fs::create_directories(paths_.checkpoints);
  torch::manual_seed(static_cast<uint64_t>(config_.train.seed));
  // Set-up can take a while on a large corpus: a stop requested meanwhile ends it between phases.
  StopOnSignal::check("set-up, before the corpus was ready");
  ensure_corpus(config_.data, log_);
  StopOnSignal::check("set-up, before the vocabularies were ready");

  std::optional<LoadedCheckpoint> checkpoint;
  std::optional<CheckpointMeta> meta;
  if (options_.resume) {
    const auto path = latest_checkpoint(paths_);
    if (!path) throw ConfigError(fmt::format("--resume: {} holds no checkpoint", paths_.checkpoints));
    checkpoint.emplace(*path, device_);
    meta = CheckpointMeta::read(*checkpoint);
    codecs_ = meta->make_codecs(*path);
  } else {
    codecs_ = build_codecs(config_.data, log_);
    save_vocabularies(codecs_, paths_.dir);
  }
  const int64_t max_tokens = config_.model.max_len - 1;  // room for <s> or </s>
  StopOnSignal::check("set-up, before the training data was read");
  Split train = load_split(config_.data, "train", codecs_, max_tokens, log_);
  dev_ = load_split(config_.data, "dev", codecs_, max_tokens, log_);
  StopOnSignal::check("set-up, before the model was built");
  log_ << fmt::format("[data] {} training pairs, {} dev pairs\n", train.examples.size(),
                      dev_.examples.size());

  model_ = Transformer(config_.model, codecs_.src->size(), codecs_.tgt->size());
  model_->to(device_);
  optimizer_ = std::make_unique<torch::optim::Adam>(model_->parameters(), adam_options(config_.train));
  batches_ = std::make_unique<BatchIterator>(std::move(train.examples), config_.train.max_tokens,
                                             static_cast<uint64_t>(config_.train.seed));
  if (checkpoint) restore(*checkpoint, *meta);
  std::ofstream(paths_.config) << config_to_json(config_).dump(2) << '\n';
  metrics_ = MetricsLog(paths_.metrics);
}

Trainer::~Trainer() = default;

void Trainer::restore(LoadedCheckpoint& checkpoint, const CheckpointMeta& meta) {
  const std::string& checkpoint_path = checkpoint.path();
  checkpoint.load_model(*model_);
  checkpoint.load_optimizer(*optimizer_);
  checkpoint.restore_rng_states();
  step_ = meta.step;
  batches_->restore(meta.data_position);
  seconds_before_ = meta.elapsed_s;
  flops_ = meta.flops;
  evals_without_improvement_ = meta.evals_without_improvement;
  best_ = meta.best;
  if (scaler_ && meta.loss_scale)
    scaler_->restore({meta.loss_scale->scale, meta.loss_scale->clean_steps, meta.loss_scale->skipped_steps});
  saved_step_ = step_;
  last_checkpoint_ = checkpoint_path;
  log_ << fmt::format("[ckpt] resumed from {} at step {} (epoch {}, batch {})\n", checkpoint_path, step_,
                      batches_->position().epoch, batches_->position().index);
}

CheckpointMeta Trainer::checkpoint_meta() const {
  CheckpointMeta meta;
  meta.config = config_;
  meta.step = step_;
  meta.data_position = batches_->position();
  meta.codecs = CheckpointMeta::codecs_record(config_.data, codecs_);
  meta.best = best_;
  meta.evals_without_improvement = evals_without_improvement_;
  meta.elapsed_s = elapsed();
  meta.flops = flops_;
  if (scaler_) {
    const auto& s = scaler_->state();
    meta.loss_scale = LossScaleRecord{s.scale, s.clean_steps, s.skipped_steps};
  }
  return meta;
}

std::string Trainer::save(const char* why) {
  if (saved_step_ == step_) return last_checkpoint_;
  const std::string path = CheckpointFiles::step_path(paths_.checkpoints, step_);
  save_checkpoint(path, *model_, optimizer_.get(), checkpoint_meta().to_json());
  CheckpointFiles::prune(paths_.checkpoints, config_.train.keep_checkpoints);
  saved_step_ = step_;
  last_checkpoint_ = path;
  console_.line(fmt::format("[ckpt] saved {} ({})", path, why));
  return path;
}

double Trainer::elapsed() const {
  return seconds_before_ +
         std::chrono::duration<double>(std::chrono::steady_clock::now() - run_start_).count();
}

std::vector<Batch> Trainer::next_batches() {
  std::vector<Batch> batches;
  for (int64_t i = 0; i < config_.train.update_freq; ++i) batches.push_back(batches_->next().to(device_));
  return batches;
}

void Trainer::report_interval(double lr, double last_grad_norm) {
  const int64_t total = config_.train.steps;
  const int64_t steps_in_interval = std::max<int64_t>(1, config_.train.log_every);
  const double seconds_per_step = interval_.seconds / static_cast<double>(steps_in_interval);
  console_.line(progress_line(lr, seconds_per_step * static_cast<double>(total - step_)));
  nlohmann::json record = {{"step", step_},
                           {"split", "train"},
                           {"loss", interval_.loss()},
                           {"nll", interval_.nll()},
                           {"ppl", perplexity(interval_.nll())},
                           {"lr", lr},
                           {"tokens_per_s", interval_.tokens_per_second()},
                           {"tokens", interval_.tokens},
                           {"sentences", interval_.sentences},
                           {"grad_norm", last_grad_norm},
                           {"epoch", batches_->epoch()},
                           {"elapsed_s", elapsed()}};
  if (scaler_) {
    record["loss_scale"] = scaler_->scale();
    record["skipped_steps"] = scaler_->skipped_steps();
  }
  metrics_.write(record);
  interval_ = IntervalStats{};
}

// The progress line (metrics.h), with the loss scale and the overflowed steps so far under fp16.
std::string Trainer::progress_line(double lr, double eta_seconds) const {
  std::string line = format_progress(step_, config_.train.steps, interval_, lr, eta_seconds);
  if (scaler_)
    line += fmt::format(" | loss scale {:g} | skipped {}", scaler_->scale(), scaler_->skipped_steps());
  return line;
}

// A float16 overflow: the scaler backs off and the step is skipped without counting towards the
// divergence guard: the scaler has its own (a scale below its minimum is TrainingDiverged). False for
// any other step.
bool Trainer::absorb_overflow(const StepResult& result) {
  if (!scaler_ || !result.overflow) return false;
  const double was = scaler_->scale();
  try {
    scaler_->update(/*overflow=*/true);
  } catch (const LossScaleUnderflow& e) {
    throw TrainingDiverged(fmt::format("{} (at step {}); the last good checkpoint is {}", e.what(), step_ + 1,
                                       last_checkpoint_.empty() ? "none" : last_checkpoint_));
  }
  console_.line(
      fmt::format("[train] step {}: gradient overflow at loss scale {:g}; update skipped, loss "
                  "scale now {:g}",
                  step_ + 1, was, scaler_->scale()));
  return true;
}

TrainSummary Trainer::run() {
  log_start();
  run_start_ = std::chrono::steady_clock::now();
  StopOnSignal stop;
  TrainSummary summary;
  auto interval_start = std::chrono::steady_clock::now();
  while (step_ < config_.train.steps) {
    if (StopOnSignal::requested()) {
      console_.line(fmt::format("[train] {} received at step {}: saving and stopping",
                                StopOnSignal::signal_name(), step_));
      summary.reason = StopReason::Interrupted;
      break;
    }
    const double lr = learning_rate(config_, step_ + 1);
    const StepResult result = train_step(model_, *optimizer_, next_batches(),
                                         {config_.train.label_smoothing, config_.train.clip_norm, lr,
                                          config_.train.precision, scaler_ ? scaler_->scale() : 1.0});
    if (absorb_overflow(result)) continue;
    if (!result.finite) {
      ++nonfinite_in_a_row_;
      console_.line(fmt::format(
          "[train] step {}: non-finite loss ({}) or gradient norm ({}); update skipped ({} of "
          "{} allowed in a row)",
          step_ + 1, result.loss_sum, result.grad_norm, nonfinite_in_a_row_, options_.max_nonfinite_steps));
      if (nonfinite_in_a_row_ >= options_.max_nonfinite_steps)
        throw TrainingDiverged(fmt::format(
            "training diverged: {} steps in a row had a non-finite loss or gradient (at step {}); the last "
            "good "
            "checkpoint is {} (try a lower train.lr, a longer train.warmup or train.clip_norm > 0)",
            nonfinite_in_a_row_, step_ + 1, last_checkpoint_.empty() ? "none" : last_checkpoint_));
      continue;
    }
    nonfinite_in_a_row_ = 0;
    if (scaler_) scaler_->update(/*overflow=*/false);
    ++step_;
    flops_ += result.flops;
    interval_.add(result.loss_sum, result.nll_sum, result.tokens, result.sentences);
    const auto now = std::chrono::steady_clock::now();
    interval_.seconds = std::chrono::duration<double>(now - interval_start).count();
    if (step_ % config_.train.log_every == 0 || step_ == config_.train.steps) {
      report_interval(lr, result.grad_norm);
      interval_start = std::chrono::steady_clock::now();
    } else {
      console_.status(progress_line(lr, 0.0));
    }
    if (config_.train.eval_every > 0 && step_ % config_.train.eval_every == 0) {
      const auto eval_start = std::chrono::steady_clock::now();
      validate_and_track();
      validation_seconds_ +=
          std::chrono::duration<double>(std::chrono::steady_clock::now() - eval_start).count();
      interval_start += std::chrono::steady_clock::now() - eval_start;  // validation is not training time
      if (config_.train.patience > 0 && evals_without_improvement_ >= config_.train.patience) {
        console_.line(fmt::format("[train] early stop: no improvement in {} validations (best: step {})",
                                  evals_without_improvement_, best_->step));
        summary.reason = StopReason::EarlyStopped;
        break;
      }
    }
    if (config_.train.checkpoint_every > 0 && step_ % config_.train.checkpoint_every == 0) save("periodic");
  }
  summary.last_checkpoint =
      save(summary.reason == StopReason::Interrupted ? "interrupted" : "end of training");
  summary.step = step_;
  summary.seconds = elapsed();
  summary.flops = flops_;
  console_.line(
      fmt::format("[train] stopped at step {}: {} wall time ({} of it validation), {} training FLOPs "
                  "({:.1f} GFLOP/s)",
                  step_, format_duration(summary.seconds), format_duration(validation_seconds_),
                  format_flops(flops_), flops_ / std::max(summary.seconds, 1e-9) / 1e9));
  if (best_) summary.best_checkpoint = CheckpointFiles::best_path(paths_.checkpoints);
  if (summary.reason != StopReason::Interrupted) final_report(summary);
  return summary;
}

}  // namespace qkv
