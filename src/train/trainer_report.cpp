// The training loop's reports: the start-up summary, validation with best-checkpoint tracking, and
// the final evaluation (dev and test BLEU, sample translations). See trainer.h.
#include <filesystem>

#include <fmt/format.h>
#include <torch/torch.h>

#include "checkpoint/checkpoint.h"
#include "ops/precision.h"
#include "runtime/heap.h"
#include "runtime/threads.h"
#include "train/schedule.h"
#include "train/trainer.h"

namespace qkv {
namespace {

std::string with_commas(int64_t n) {
  std::string digits = std::to_string(n);
  for (int i = static_cast<int>(digits.size()) - 3; i > 0; i -= 3) digits.insert(static_cast<size_t>(i), ",");
  return digits;
}

}  // namespace

void Trainer::log_start() const {
  log_ << fmt::format("[train] run directory: {}{}\n", paths_.dir, options_.resume ? " (resumed)" : "");
  const auto resolved = config_to_json(config_);
  for (const auto& section : {"model", "data", "train", "decode"})
    log_ << fmt::format("[train] config {}: {}\n", section, resolved.at(section).dump());
  int64_t registered = 0;
  for (const auto& p : model_->parameters()) registered += p.numel();
  log_ << fmt::format("[train] parameters: {} (source vocabulary {}, target vocabulary {})\n",
                      with_commas(registered), codecs_.src->size(), codecs_.tgt->size());
  log_ << fmt::format("[train] {}; device: {}; precision: {}{}; {}\n", describe_threads(), device_.str(),
                      to_string(config_.train.precision),
                      scaler_ ? fmt::format(" (loss scale {:g})", scaler_->scale()) : "",
                      describe(heap_policy()));
  const auto warning = precision_warning(config_.train.precision, device_);
  if (!warning.empty()) log_ << fmt::format("[train] warning: {}\n", warning);
  const int64_t peak_step = config_.train.lr_schedule == LrSchedule::Constant ? 1 : config_.train.warmup;
  const std::string processes =
      world_->size() > 1 ? fmt::format(" x {} processes", world_->size()) : std::string();
  log_ << fmt::format(
      "[train] steps {} -> {}; {} tokens per batch x {} batches per update{} (at most {} tokens per update); "
      "{} schedule, peak lr {:.2e} at step {}\n",
      step_, config_.train.steps, config_.train.max_tokens, config_.train.update_freq, processes,
      config_.train.max_tokens * config_.train.update_freq * world_->size(),
      to_string(config_.train.lr_schedule), learning_rate(config_, std::max<int64_t>(peak_step, 1)),
      peak_step);
}

void Trainer::validate_and_track() {
  const PrecisionScope precision(config_.train.precision);  // validation decodes as training computes
  EvalResult result = evaluate_split(model_, dev_, codecs_, config_, config_.train.eval_bleu_max_sentences);
  console_.line(fmt::format("{} | step {}", result.summary(), step_));
  nlohmann::json record = result.to_json();
  record["step"] = step_;
  metrics_.write(record);
  const double bleu = result.bleu ? result.bleu->score : 0.0;
  const bool improved = !best_ || bleu > best_->bleu || (bleu == best_->bleu && result.nll < best_->nll);
  last_dev_ = std::move(result);
  last_dev_step_ = step_;
  if (!improved) {
    ++evals_without_improvement_;
    return;
  }
  best_ = BestScore{step_, bleu, last_dev_->nll};
  evals_without_improvement_ = 0;
  const std::string path = save("new best on dev");
  CheckpointFiles::mark_best(paths_.checkpoints, path);
}

void Trainer::final_report(TrainSummary& summary) {
  if (!options_.final_evaluation) return;
  const PrecisionScope precision(config_.train.precision);
  int64_t evaluated_step = step_;
  if (best_ && best_->step != step_) {
    LoadedCheckpoint best(CheckpointFiles::best_path(paths_.checkpoints), device_);
    best.load_model(*model_);
    evaluated_step = best_->step;
    console_.line(fmt::format("[eval] evaluating the best checkpoint (step {}, dev BLEU {:.2f})", best_->step,
                              best_->bleu));
  }
  const bool reuse_dev = last_dev_ && last_dev_step_ == evaluated_step &&
                         last_dev_->bleu_sentences == static_cast<int64_t>(dev_.examples.size());
  summary.dev = reuse_dev ? *last_dev_ : evaluate_split(model_, dev_, codecs_, config_, 0);
  const Split test = load_split(config_.data, "test", codecs_, config_.model.max_len - 1, log_);
  summary.test = evaluate_split(model_, test, codecs_, config_, 0);
  for (const auto* result : {&*summary.dev, &*summary.test}) {
    nlohmann::json record = result->to_json();
    record["step"] = evaluated_step;
    record["final"] = true;
    metrics_.write(record);
  }
  console_.line(
      fmt::format("[result] dev  {} | ppl {:.3f}", summary.dev->bleu->format(), summary.dev->ppl()));
  console_.line(
      fmt::format("[result] test {} | ppl {:.3f}", summary.test->bleu->format(), summary.test->ppl()));
  const size_t samples =
      std::min(static_cast<size_t>(std::max<int64_t>(options_.samples, 0)), test.src_text.size());
  for (size_t i = 0; i < samples; ++i) {
    console_.line(fmt::format("[sample {}] src: {}", i + 1, test.src_text[i]));
    console_.line(fmt::format("[sample {}] ref: {}", i + 1, test.ref_text[i]));
    console_.line(fmt::format("[sample {}] hyp: {}", i + 1, summary.test->hypotheses[i]));
  }
}

}  // namespace qkv
