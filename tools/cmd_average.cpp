// qkv average: checkpoint averaging (Vaswani et al. 2017, §6.1: the base model averages the last 5
// checkpoints, the big model the last 20).
//
//   qkv average --out avg.pt runs/toy/checkpoints/step-1500.pt runs/toy/checkpoints/step-2000.pt
//   qkv average --out avg.pt --last 5 --dir runs/toy/checkpoints
// The result is a checkpoint without optimizer state: it translates and evaluates, but does not resume.
#include <string>
#include <vector>

#include <fmt/format.h>

#include "base/error.h"
#include "checkpoint/average.h"
#include "checkpoint/checkpoint.h"
#include "cli.h"
#include "eval/translate.h"

namespace qkv::cli {
namespace {

struct AverageArgs {
  std::string out;
  std::vector<std::string> inputs;
  int64_t last = 0;
  std::string dir;
};

std::vector<std::string> checkpoints_to_average(const AverageArgs& args) {
  if (!args.inputs.empty() && (args.last > 0 || !args.dir.empty()))
    throw ConfigError("qkv average: give checkpoint files or --last N --dir DIR, not both");
  if (!args.inputs.empty()) return args.inputs;
  if (args.last <= 0 || args.dir.empty())
    throw ConfigError("qkv average: give checkpoint files, or --last N with --dir DIR");
  const auto files = CheckpointFiles::list(args.dir);
  if (static_cast<int64_t>(files.size()) < args.last)
    throw ConfigError(fmt::format("qkv average: --last {} but {} holds {} step checkpoint(s)", args.last,
                                  args.dir, files.size()));
  std::vector<std::string> paths;
  for (size_t i = files.size() - static_cast<size_t>(args.last); i < files.size(); ++i)
    paths.push_back(files[i].second);
  return paths;
}

void run_average(const AverageArgs& args) {
  const auto paths = checkpoints_to_average(args);
  InferenceModel first = load_inference_model(paths.front(), torch::kCPU);
  const CheckpointMeta meta = average_checkpoints(*first.model, paths);
  save_checkpoint(args.out, *first.model, nullptr, meta.to_json());
  fmt::print("[ckpt] averaged {} checkpoints into {}:\n", paths.size(), args.out);
  for (const auto& path : paths) fmt::print("  {}\n", path);
}

void setup_average(CLI::App& app) {
  auto args = std::make_shared<AverageArgs>();
  auto* cmd = app.add_subcommand("average", "Average the parameters of several checkpoints (paper §6.1)");
  cmd->add_option("--out", args->out, "Where the averaged checkpoint goes")->required();
  cmd->add_option("checkpoints", args->inputs, "Checkpoint files to average")->check(CLI::ExistingFile);
  cmd->add_option("--last", args->last, "Average the newest N step checkpoints of --dir")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--dir", args->dir, "A run's checkpoint directory (with --last)")
      ->check(CLI::ExistingDirectory);
  cmd->callback([args] { run_average(*args); });
}

RegisterCommand reg{"average", 70, setup_average};

}  // namespace
}  // namespace qkv::cli
