// Setting up a training run's directory and config (`qkv train`):
//
//   DIR/config.json      the resolved config (every key)
//   DIR/metrics.jsonl    one JSON object per logged step and per validation
//   DIR/vocab.txt        the shared vocabulary (vocab.src.txt and vocab.tgt.txt when not shared)
//   DIR/checkpoints/     step-<N>.pt (the last train.keep_checkpoints) and best.pt
//
// A fresh run refuses a directory that already holds a run, unless asked to overwrite it (which
// deletes exactly the files above) or to resume it. A resumed run takes its architecture and data
// from the checkpoint; a --config given with --resume contributes its train and decode sections
// (so a schedule can be extended), and --set overrides apply last. The model that the file and the
// overrides describe together must be the checkpoint's: the command line that started a run resumes
// it, and one that would change the architecture is refused (the parameters would not fit it).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "config/load.h"

namespace qkv {

struct RunPaths {
  std::string dir;
  std::string config;       // DIR/config.json
  std::string metrics;      // DIR/metrics.jsonl
  std::string checkpoints;  // DIR/checkpoints
  explicit RunPaths(const std::string& dir);
};

// runs/<config file name without .json>.
std::string default_run_dir(const std::string& config_path);

// The newest step checkpoint of a run directory, or nullopt.
std::optional<std::string> latest_checkpoint(const RunPaths& paths);

// Throws ConfigError when `dir` already holds a run and neither flag is given; with `overwrite`
// deletes the run's files; with `resume` requires a checkpoint to resume from.
void prepare_run_dir(const RunPaths& paths, bool resume, bool overwrite);

// A fresh run: resolve_config(config_path, sets). A resumed run: see above; `checkpoint_config` is
// the config saved in the checkpoint being resumed.
Config resolve_fresh_config(const std::string& config_path, const std::vector<std::string>& sets);
Config resolve_resumed_config(const Config& checkpoint_config, const std::optional<std::string>& config_path,
                              const std::vector<std::string>& sets);

}  // namespace qkv
