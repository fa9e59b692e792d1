// The training loop: set-up, the step loop, interruption and checkpoints. Validation and the final
// report are in trainer_report.cpp. See trainer.h.
#include "train/trainer.h"

#include <filesystem>

#include <fmt/format.h>
#include <torch/torch.h>

#include "base/error.h"
#include "base/special_tokens.h"
#include "config/resources.h"
#include "eval/translate.h"
#include "runtime/signals.h"
#include "train/flops.h"
#include "train/fused_adam.h"
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

// The seed of one update's random draws (dropout): a function of the run's seed, the step and the
// rank, so that resuming, and resuming with another number of processes, draws what an unbroken run
// draws, and the processes of one update draw different masks. SplitMix64's finaliser mixes them.
uint64_t update_seed(int64_t seed, int64_t step, int rank) {
  uint64_t z = static_cast<uint64_t>(seed) * 0x9E3779B97F4A7C15ull +
               static_cast<uint64_t>(step) * 0xBF58476D1CE4E5B9ull +
               static_cast<uint64_t>(rank) * 0x94D049BB133111EBull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Makes every process start from rank 0's parameters (they agree already when seeded alike; this
// also covers a resume, and any difference in how a device initialised them).
void broadcast_parameters(dist::World& world, Transformer& model) {
  if (world.size() == 1) return;
  torch::NoGradGuard no_grad;
  auto parameters = model->parameters();
  std::vector<torch::Tensor> flat;
  for (const auto& p : parameters) flat.push_back(p.reshape({-1}));
  auto all = torch::cat(flat);  // [total]
  world.broadcast(all, 0);
  int64_t offset = 0;
  for (auto& p : parameters) {
    p.copy_(all.narrow(0, offset, p.numel()).view(p.sizes()));
    offset += p.numel();
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
      device_(torch::kCPU),
      own_world_(options.world ? nullptr : std::make_unique<dist::World>()),
      world_(options.world ? options.world : own_world_.get()) {
  device_ = world_->device();
  validate_device(config_, device_.is_cuda());
  if (config_.train.precision == Precision::Fp16) scaler_.emplace();
  // Sizes this machine cannot hold are refused before anything is built or written (the vocabulary's
  // size is not known yet: the special tokens give a lower bound; checked again below).
  check_fits_in_memory(config_, kUnkId + 1, kUnkId + 1, /*training=*/true, options_.config_source);
  const bool writer = world_->is_writer();
  if (writer) fs::create_directories(paths_.checkpoints);
  if (const int64_t stale = writer ? CheckpointFiles::remove_stale_temporaries(paths_.checkpoints) : 0)
    log_ << fmt::format("[ckpt] removed {} temporary file(s) of saves that were killed\n", stale);
  torch::manual_seed(static_cast<uint64_t>(config_.train.seed));
  // Set-up can take a while on a large corpus: a stop requested meanwhile ends it between phases.
  StopOnSignal::check("set-up, before the corpus was ready");
  if (writer) ensure_corpus(config_.data, log_);  // a built-in task is generated once, by rank 0 ...
  world_->barrier();                              // ... and the others wait for it
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
    codecs_ = build_codecs(config_.data, log_);  // the same on every rank: built from the same data
    if (writer) save_vocabularies(codecs_, paths_.dir);
  }
  const int64_t max_tokens = config_.model.max_len - 1;  // room for <s> or </s>
  StopOnSignal::check("set-up, before the training data was read");
  Split train = load_split(config_.data, "train", codecs_, max_tokens, log_);
  if (writer) dev_ = load_split(config_.data, "dev", codecs_, max_tokens, log_);  // rank 0 validates
  StopOnSignal::check("set-up, before the model was built");
  log_ << fmt::format("[data] {} training pairs, {} dev pairs\n", train.examples.size(),
                      dev_.examples.size());

  check_fits_in_memory(config_, codecs_.src->size(), codecs_.tgt->size(), /*training=*/true,
                       options_.config_source);
  model_ = Transformer(config_.model, codecs_.src->size(), codecs_.tgt->size());
  model_->to(device_);
  optimizer_ = std::make_unique<FusedAdam>(model_->parameters(), adam_options(config_.train));
  batches_ = std::make_unique<BatchIterator>(std::move(train.examples), config_.train.max_tokens,
                                             static_cast<uint64_t>(config_.train.seed));
  if (checkpoint) restore(*checkpoint, *meta);
  broadcast_parameters(*world_, model_);
  reducer_ = std::make_unique<dist::GradientReducer>(*world_, model_->parameters());
  if (!writer) return;
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
  if (saved_step_ == step_ || !world_->is_writer()) return last_checkpoint_;
  const std::string path = CheckpointFiles::step_path(paths_.checkpoints, step_);
  try {
    save_checkpoint(path, *model_, optimizer_.get(), checkpoint_meta().to_json());
  } catch (const CheckpointError& e) {  // e.g. a full disk: say what is still there to resume from
    throw CheckpointError(fmt::format(
        "{}; {}", e.what(),
        last_checkpoint_.empty()
            ? "no earlier checkpoint of this run exists"
            : "the previous checkpoint " + last_checkpoint_ + " is intact and --resume continues from it"));
  }
  CheckpointFiles::prune(paths_.checkpoints, config_.train.keep_checkpoints);
  saved_step_ = step_;
  last_checkpoint_ = path;
  console_.line(fmt::format("[ckpt] saved {} ({})", path, why));
  return path;
}

// Rank 0 validates, so whether to stop early is its decision, which every process follows.
bool Trainer::agree_on_early_stop() {
  const bool stop = world_->is_writer() && evals_without_improvement_ >= config_.train.patience;
  auto flag = torch::tensor({stop ? 1.0 : 0.0}, torch::kDouble);  // [1]
  world_->broadcast(flag, 0);
  return flag.item<double>() > 0;
}

double Trainer::elapsed() const {
  return seconds_before_ +
         std::chrono::duration<double>(std::chrono::steady_clock::now() - run_start_).count();
}

// This process's share of the next update: of its W·update_freq batches, those whose index modulo W
// is this rank.
std::vector<Batch> Trainer::next_batches() {
  std::vector<Batch> batches =
      batches_->next_share(config_.train.update_freq, world_->size(), world_->rank());
  for (auto& batch : batches) batch = batch.to(device_);
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
                           {"tokens_per_update", interval_.tokens_per_update()},
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
    const double lr = learning_rate(config_, step_ + 1);
    StepOptions step_options;
    step_options.label_smoothing = config_.train.label_smoothing;
    step_options.clip_norm = config_.train.clip_norm;
    step_options.lr = lr;
    step_options.precision = config_.train.precision;
    step_options.loss_scale = scaler_ ? scaler_->scale() : 1.0;
    step_options.world = world_;
    step_options.reducer = reducer_.get();
    step_options.stop_requested = StopOnSignal::requested();
    torch::manual_seed(update_seed(config_.train.seed, step_, world_->rank()));
    const StepResult result = train_step(model_, *optimizer_, next_batches(), step_options);
    if (result.stop) {  // every process stops after the same step; its update is kept (below)
      console_.line(fmt::format("[train] {} at step {}: saving and stopping",
                                StopOnSignal::requested()
                                    ? fmt::format("{} received", StopOnSignal::signal_name())
                                    : std::string("another process was asked to stop"),
                                step_ + (result.finite ? 1 : 0)));
      summary.reason = StopReason::Interrupted;
    }
    if (absorb_overflow(result)) {
      if (result.stop) break;
      continue;
    }
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
      if (result.stop) break;
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
    if (result.stop) break;
    if (config_.train.eval_every > 0 && step_ % config_.train.eval_every == 0) {
      const auto eval_start = std::chrono::steady_clock::now();
      if (world_->is_writer()) validate_and_track();
      validation_seconds_ +=
          std::chrono::duration<double>(std::chrono::steady_clock::now() - eval_start).count();
      interval_start += std::chrono::steady_clock::now() - eval_start;  // validation is not training time
      if (config_.train.patience > 0 && agree_on_early_stop()) {
        console_.line(
            world_->is_writer()
                ? fmt::format("[train] early stop: no improvement in {} validations (best: step {})",
                              evals_without_improvement_, best_->step)
                : std::string("[train] early stop (rank 0 validates and decided)"));
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
