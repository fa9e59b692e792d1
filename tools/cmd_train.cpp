// qkv train: train a model from a config (src/train/trainer.h), in one process or several.
//
//   qkv train --config configs/toy.json                       # into runs/toy
//   qkv train --config configs/toy.json --set train.steps=500 --out runs/short
//   qkv train --out runs/toy --resume                         # continue the newest checkpoint
//   qkv train --config configs/toy.json --overwrite           # start runs/toy afresh
//   qkv train --config configs/toy.json --nproc 2             # two worker processes (docs/distributed.md)
//   torchrun --nproc_per_node 2 --no-python qkv train --config configs/toy.json --auto-resume
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <ATen/Parallel.h>
#include <fmt/format.h>

#include "base/error.h"
#include "checkpoint/checkpoint.h"
#include "checkpoint/meta.h"
#include "cli.h"
#include "config/load.h"
#include "dist/launch.h"
#include "dist/local_launcher.h"
#include "dist/world.h"
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
  bool auto_resume = false;
  bool overwrite = false;
  int64_t samples = 5;
  bool no_final_eval = false;
  int nproc = 1;
};

Config resumed_config(const TrainArgs& args, const RunPaths& paths) {
  const auto path = latest_checkpoint(paths);
  const CheckpointMeta saved = CheckpointMeta::read(LoadedCheckpoint(*path));
  std::optional<std::string> file;
  if (!args.config.empty()) file = args.config;
  return resolve_resumed_config(saved.config, file, args.sets);
}

RunPaths run_paths(const TrainArgs& args) {
  if (args.config.empty() && ((!args.resume && !args.auto_resume) || args.out.empty()))
    throw ConfigError("qkv train needs --config FILE (or --out DIR --resume to continue a run)");
  return RunPaths(args.out.empty() ? default_run_dir(args.config) : args.out);
}

// --resume always; --auto-resume when the run directory holds a checkpoint (one command line for the
// first start and every restart of a job).
bool resuming(const TrainArgs& args, const RunPaths& paths) {
  if (args.auto_resume && (args.resume || args.overwrite))
    throw ConfigError("--auto-resume decides by itself whether to resume: drop --resume / --overwrite");
  return args.resume || (args.auto_resume && latest_checkpoint(paths).has_value());
}

// The parent of `--nproc N`: the same command line without --nproc, N times.
void launch_workers(const TrainArgs& args) {
  if (dist::LaunchInfo::from_environment().distributed())
    throw ConfigError("--nproc starts its own workers: do not combine it with torchrun or srun");
  const RunPaths paths = run_paths(args);
  std::vector<std::string> argv;
  const auto& all = invocation();
  for (size_t i = 0; i < all.size(); ++i) {
    if (all[i] == "--nproc") {
      ++i;  // and its value
      continue;
    }
    if (all[i].rfind("--nproc=", 0) == 0) continue;
    argv.push_back(all[i]);
  }
  dist::LocalLaunch launch;
  launch.workers = args.nproc;
  launch.argv = argv;
  launch.log_dir = (std::filesystem::path(paths.dir) / "logs").string();
  // Enough for the others to notice a failure by themselves (train.dist_timeout_s), then a margin.
  const bool resume = resuming(args, paths);
  const Config config = resume ? resumed_config(args, paths) : resolve_fresh_config(args.config, args.sets);
  launch.grace = std::chrono::seconds(config.train.dist_timeout_s + 60);
  set_exit_status(dist::run_local_workers(launch));
}

void train(const TrainArgs& args) {
  const StopOnSignal stop;  // before the set-up, so that Ctrl-C during it is a clean stop too
  const RunPaths paths = run_paths(args);
  const bool resume = resuming(args, paths);
  const Config config = resume ? resumed_config(args, paths) : resolve_fresh_config(args.config, args.sets);
  const auto launch = dist::LaunchInfo::from_environment();
  const auto world =
      dist::World::join(launch, config.train.dist_backend, std::chrono::seconds(config.train.dist_timeout_s));
  if (world->size() > 1)
    fmt::print("[dist] rank {} of {} (local {} of {}), backend {}, master {}:{}, {} threads per worker\n",
               world->rank(), world->size(), world->local_rank(), world->local_size(), world->backend(),
               launch.master_addr, launch.master_port, at::get_num_threads());
  try {
    if (world->is_writer()) prepare_run_dir(paths, resume, args.overwrite);
    world->barrier();  // the others start once the run directory is ready
    TrainOptions options;
    options.out_dir = paths.dir;
    // Named in config errors as resolve_config() names it.
    options.config_source = args.config.empty() ? latest_checkpoint(paths).value_or(paths.dir)
                            : args.sets.empty() ? args.config
                                                : args.config + " with --set overrides";
    options.resume = resume;
    options.live_progress = stdout_is_terminal();
    options.samples = args.samples;
    options.final_evaluation = !args.no_final_eval;
    options.world = world.get();
    Trainer trainer(config, options);
    const TrainSummary summary = trainer.run();
    if (summary.reason == StopReason::Interrupted && world->is_writer())
      fmt::print("[train] interrupted at step {}; continue with: qkv train --out {} --resume\n", summary.step,
                 paths.dir);
  } catch (const dist::DistributedError&) {
    throw;  // another rank failed: it reported that itself
  } catch (const c10::Error& e) {
    world->report_failure(e.what_without_backtrace());
    throw;
  } catch (const std::exception& e) {
    world->report_failure(e.what());
    throw;
  }
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
  cmd->add_flag("--auto-resume", args->auto_resume,
                "Resume when the run directory holds a checkpoint, start afresh when it does not (for "
                "launchers that restart failed jobs)");
  cmd->add_flag("--overwrite", args->overwrite,
                "Delete an existing run in the run directory and start afresh");
  cmd->add_option("--samples", args->samples, "Sample translations printed at the end")
      ->check(CLI::NonNegativeNumber);
  cmd->add_flag("--no-final-eval", args->no_final_eval, "Skip the final dev/test evaluation");
  cmd->add_option("--nproc", args->nproc,
                  "Train with N worker processes on this machine (data parallel; logs in OUT/logs/)")
      ->check(CLI::Range(1, 1024));
  cmd->callback([args] {
    if (args->nproc > 1)
      launch_workers(*args);
    else
      train(*args);
  });
}

RegisterCommand reg{"train", 30, setup_train};

}  // namespace
}  // namespace qkv::cli
