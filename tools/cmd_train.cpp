// qkv train: train a model from a config (src/train/trainer.h).
//
//   qkv train --config configs/toy.json                       # into runs/toy
//   qkv train --config configs/toy.json --set train.steps=500 --out runs/short
//   qkv train --out runs/toy --resume                         # continue the newest checkpoint
//   qkv train --config configs/toy.json --overwrite           # start runs/toy afresh
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "base/error.h"
#include "checkpoint/checkpoint.h"
#include "checkpoint/meta.h"
#include "cli.h"
#include "runtime/signals.h"
#include "train/run_setup.h"
#include "train/trainer.h"

namespace qkv::cli {
namespace {

struct TrainArgs {
  std::string config;
  std::vector<std::string> sets;
  std::string out;
  bool resume = false;
  bool overwrite = false;
  int64_t samples = 5;
  bool no_final_eval = false;
};

Config resumed_config(const TrainArgs& args, const RunPaths& paths) {
  const auto path = latest_checkpoint(paths);
  const CheckpointMeta saved = CheckpointMeta::read(LoadedCheckpoint(*path));
  std::optional<std::string> file;
  if (!args.config.empty()) file = args.config;
  return resolve_resumed_config(saved.config, file, args.sets);
}

void run_train(const TrainArgs& args) {
  const StopOnSignal stop;  // before the set-up, so that Ctrl-C during it is a clean stop too
  if (args.config.empty() && (!args.resume || args.out.empty()))
    throw ConfigError("qkv train needs --config FILE (or --out DIR --resume to continue a run)");
  const RunPaths paths(args.out.empty() ? default_run_dir(args.config) : args.out);
  prepare_run_dir(paths, args.resume, args.overwrite);
  const Config config =
      args.resume ? resumed_config(args, paths) : resolve_fresh_config(args.config, args.sets);

  TrainOptions options;
  options.out_dir = paths.dir;
  // Named in config errors as resolve_config() names it.
  options.config_source = args.config.empty() ? latest_checkpoint(paths).value_or(paths.dir)
                          : args.sets.empty() ? args.config
                                              : args.config + " with --set overrides";
  options.resume = args.resume;
  options.live_progress = stdout_is_terminal();
  options.samples = args.samples;
  options.final_evaluation = !args.no_final_eval;
  Trainer trainer(config, options);
  const TrainSummary summary = trainer.run();
  if (summary.reason == StopReason::Interrupted)
    fmt::print("[train] interrupted at step {}; continue with: qkv train --out {} --resume\n", summary.step,
               paths.dir);
}

void setup_train(CLI::App& app) {
  auto args = std::make_shared<TrainArgs>();
  auto* cmd =
      app.add_subcommand("train", "Train a model: qkv train --config FILE [--set KEY=VALUE]... [--out DIR]");
  cmd->add_option("--config", args->config, "Config file (JSON), e.g. configs/toy.json")
      ->check(CLI::ExistingFile);
  add_set_option(*cmd, args->sets);
  cmd->add_option("--out", args->out, "Run directory (default: runs/<config name>)");
  cmd->add_flag("--resume", args->resume, "Continue from the newest checkpoint in the run directory");
  cmd->add_flag("--overwrite", args->overwrite,
                "Delete an existing run in the run directory and start afresh");
  cmd->add_option("--samples", args->samples, "Sample translations printed at the end")
      ->check(CLI::NonNegativeNumber);
  cmd->add_flag("--no-final-eval", args->no_final_eval, "Skip the final dev/test evaluation");
  cmd->callback([args] { run_train(*args); });
}

RegisterCommand reg{"train", 30, setup_train};

}  // namespace
}  // namespace qkv::cli
