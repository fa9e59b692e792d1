// Run directories and the configs of fresh and resumed runs: see run_setup.h.
#include "train/run_setup.h"

#include <filesystem>

#include <fmt/format.h>

#include "base/error.h"
#include "checkpoint/checkpoint.h"

namespace qkv {
namespace fs = std::filesystem;
namespace {

// The first key whose value differs between two model sections, as "model.key", or "".
std::string first_model_difference(const Config& a, const Config& b) {
  const auto ja = config_to_json(a).at("model");
  const auto jb = config_to_json(b).at("model");
  for (const auto& [key, value] : ja.items())
    if (!jb.contains(key) || jb.at(key) != value) return "model." + key;
  return "";
}

nlohmann::json model_value(const Config& c, const std::string& dotted) {
  return config_to_json(c).at("model").at(dotted.substr(dotted.find('.') + 1));
}

}  // namespace

RunPaths::RunPaths(const std::string& d)
    : dir(d),
      config((fs::path(d) / "config.json").string()),
      metrics((fs::path(d) / "metrics.jsonl").string()),
      checkpoints((fs::path(d) / "checkpoints").string()) {}

std::string default_run_dir(const std::string& config_path) {
  return (fs::path("runs") / fs::path(config_path).stem()).string();
}

std::optional<std::string> latest_checkpoint(const RunPaths& paths) {
  const auto files = CheckpointFiles::list(paths.checkpoints);
  if (files.empty()) return std::nullopt;
  return files.back().second;
}

void prepare_run_dir(const RunPaths& paths, bool resume, bool overwrite) {
  if (resume && overwrite) throw ConfigError("--resume and --overwrite contradict each other: choose one");
  const bool has_run = fs::exists(paths.config) || fs::exists(paths.metrics) || fs::exists(paths.checkpoints);
  if (resume) {
    if (!latest_checkpoint(paths))
      throw ConfigError(fmt::format("--resume: {} holds no checkpoint to resume (expected {}/step-<N>.pt)",
                                    paths.dir, paths.checkpoints));
    return;
  }
  if (has_run && !overwrite)
    throw ConfigError(
        fmt::format("{} already holds a training run: pass --resume to continue it, --overwrite to "
                    "start afresh, or --out to choose another directory",
                    paths.dir));
  if (overwrite) {
    for (const auto& name : {"config.json", "metrics.jsonl", "vocab.txt", "vocab.src.txt", "vocab.tgt.txt"})
      fs::remove(fs::path(paths.dir) / name);
    fs::remove_all(paths.checkpoints);
  }
}

Config resolve_fresh_config(const std::string& config_path, const std::vector<std::string>& sets) {
  return resolve_config(config_path, sets);
}

Config resolve_resumed_config(const Config& checkpoint_config, const std::optional<std::string>& config_path,
                              const std::vector<std::string>& sets) {
  // What the command line asks for (the file, then --set, as for a fresh run), compared with the
  // checkpoint as a whole: so the command that started a run resumes it unchanged.
  Config requested = config_path ? load_config(*config_path) : checkpoint_config;
  Config config = checkpoint_config;
  if (config_path) {
    config.train = requested.train;
    config.decode = requested.decode;
  }
  for (const auto& assignment : sets) {
    apply_override(requested, assignment);
    apply_override(config, assignment);
  }
  const std::string differs = first_model_difference(requested, checkpoint_config);
  if (!differs.empty()) {
    const std::string source =
        config_path ? *config_path + (sets.empty() ? "" : " with --set overrides") : "--set";
    throw ConfigError(
        fmt::format("{}: {} = {} conflicts with the checkpoint's {} = {}; a resumed run keeps the "
                    "checkpoint's architecture",
                    source, differs, model_value(requested, differs).dump(), differs,
                    model_value(checkpoint_config, differs).dump()));
  }
  validate(config, "resumed config");
  return config;
}

}  // namespace qkv
