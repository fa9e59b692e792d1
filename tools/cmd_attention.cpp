// qkv attention: the paper's attention pictures (Vaswani et al. 2017, Figures 3-5) for one sentence.
//
//   qkv attention --checkpoint runs/toy/checkpoints/best.pt --sentence "the boy sees the cow ." --out att.png
//   qkv attention --checkpoint C --sentence "..." --layer 2 --head 5 --out att.svg
//
// Translates the sentence, records the encoder self-attention, decoder self-attention and
// cross-attention of one layer (default: the last), and draws every head (or one) as heatmaps with
// the tokens on the axes, through tools/plot_attention.py (/usr/bin/python3 with matplotlib).
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>

#include <unistd.h>

#include <fmt/format.h>

#include "base/error.h"
#include "cli.h"
#include "eval/attention_map.h"
#include "eval/translate.h"
#include "reproduce/plot_script.h"

namespace qkv::cli {
namespace {

namespace fs = std::filesystem;

struct AttentionArgs {
  std::string checkpoint;
  std::string sentence;
  std::optional<int64_t> layer;
  std::optional<int64_t> head;
  std::string out;
  std::string save_json;
};

void run_attention(const AttentionArgs& args) {
  const std::string ext = fs::path(args.out).extension().string();
  if (ext != ".png" && ext != ".svg")
    throw ConfigError(fmt::format("--out {}: the picture must be a .png or .svg file", args.out));
  InferenceModel loaded = load_inference_model(args.checkpoint, default_device());
  const AttentionPicture picture = collect_attention(loaded, args.sentence);
  const int64_t layer =
      args.layer.value_or(std::min(loaded.config.model.encoder_layers, loaded.config.model.decoder_layers));
  const nlohmann::json maps = attention_json(picture, layer, args.head);
  fmt::print("[attention] {} -> {}\n", args.sentence, picture.translation);

  const std::string json_path =
      !args.save_json.empty()
          ? args.save_json
          : (fs::temp_directory_path() / fmt::format("qkv_attention_{}.json", ::getpid())).string();
  std::ofstream(json_path) << maps.dump() << "\n";
  if (!args.out.empty() && fs::path(args.out).has_parent_path())
    fs::create_directories(fs::path(args.out).parent_path());
  try {
    run_python_script(find_tool_script("plot_attention.py"), {json_path, args.out});
  } catch (...) {
    if (args.save_json.empty()) fs::remove(json_path);
    throw;
  }
  if (args.save_json.empty()) fs::remove(json_path);
}

void setup_attention(CLI::App& app) {
  auto args = std::make_shared<AttentionArgs>();
  auto* cmd = app.add_subcommand(
      "attention",
      "Draw a checkpoint's attention for one sentence: encoder self, decoder self, cross (all heads)");
  cmd->add_option("--checkpoint", args->checkpoint, "Checkpoint file")->required()->check(CLI::ExistingFile);
  cmd->add_option("--sentence", args->sentence, "Source sentence to translate and draw")->required();
  cmd->add_option("--layer", args->layer, "Layer of each stack, from 1 (default: the last)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--head", args->head, "One head, from 1 (default: every head, as a grid)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--out", args->out, "Picture to write: F.png or F.svg")->required();
  cmd->add_option("--save-json", args->save_json, "Also keep the probabilities as JSON in this file");
  cmd->callback([args] { run_attention(*args); });
}

RegisterCommand reg{"attention", 85, setup_attention};

}  // namespace
}  // namespace qkv::cli
