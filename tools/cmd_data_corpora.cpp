// qkv data spm / qkv data binarize: preparing real parallel corpora (issue #7).
//
//   qkv data spm --input train.de,train.en --vocab-size 37000 --model-type bpe --out DIR [--name spm]
//       trains one joint SentencePiece model on the cleaned lines of all inputs and writes
//       DIR/{name}.model and DIR/{name}.vocab (qkv's special tokens at ids 0-3).
//   qkv data binarize --config CFG [--set KEY=VALUE ...] [--splits train,dev,test]
//       encodes each split of the config's corpus with its codecs (data.tokenizer) and writes
//       {data.dir}/{prefix}.{src_lang}-{tgt_lang}.bin next to the text, where training finds it.
//
// Both add to the `data` family that tools/cmd_data.cpp creates.
#include <chrono>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "base/error.h"
#include "cli.h"
#include "config/load.h"
#include "data/binarize.h"
#include "data/binarized.h"
#include "data/dataset.h"
#include "data/sentencepiece.h"

namespace qkv::cli {
namespace {

namespace fs = std::filesystem;

struct SpmArgs {
  std::vector<std::string> inputs;
  std::string out;
  std::string name = "spm";
  std::string model_type = "bpe";
  SpmTrainOptions options;
};

void run_spm(const SpmArgs& args) {
  for (const auto& input : args.inputs) {
    if (!fs::is_regular_file(input)) throw ConfigError(fmt::format("--input {}: no such file", input));
  }
  SpmTrainOptions options = args.options;
  options.model_type = spm_model_type_from_string(args.model_type);
  fs::create_directories(args.out);
  const std::string prefix = (fs::path(args.out) / args.name).string();
  std::cout << fmt::format("[data] training a joint SentencePiece {} model ({} pieces) on {}\n",
                           args.model_type, options.vocab_size, fmt::join(args.inputs, ", "))
            << std::flush;  // before SentencePiece's own messages on stderr
  const auto start = std::chrono::steady_clock::now();
  train_sentencepiece(args.inputs, prefix, options);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const SentencePiece model(prefix + ".model");
  std::cout << fmt::format("[data] {}.model: {} pieces, {:.1f} s\n", prefix, model.size(), seconds);
  std::cout << fmt::format(
      "[data] use it with --set data.tokenizer=sentencepiece --set data.spm_model={}.model\n", prefix);
}

void add_spm(CLI::App& data) {
  auto args = std::make_shared<SpmArgs>();
  auto* cmd = data.add_subcommand("spm", "Train a joint SentencePiece model on parallel text");
  cmd->add_option("--input", args->inputs, "Text files, comma-separated or repeated (all sides of train)")
      ->required()
      ->delimiter(',');
  cmd->add_option("--out", args->out, "Output directory")->required();
  cmd->add_option("--name", args->name, "Model file name: writes OUT/NAME.model and OUT/NAME.vocab")
      ->capture_default_str();
  cmd->add_option("--vocab-size", args->options.vocab_size, "Pieces in the vocabulary, specials included")
      ->check(CLI::Range(int64_t{8}, int64_t{1} << 30))
      ->capture_default_str();
  cmd->add_option("--model-type", args->model_type, "Subword algorithm")
      ->check(CLI::IsMember({"bpe", "unigram"}))
      ->capture_default_str();
  cmd->add_option("--character-coverage", args->options.character_coverage,
                  "Share of characters covered by the alphabet (0.9995 suits CJK)")
      ->check(CLI::Range(0.5, 1.0))
      ->capture_default_str();
  cmd->add_option("--input-sentence-size", args->options.input_sentence_size,
                  "Train on a random sample of this many sentences (0 = all; ~10M is plenty for WMT)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--max-sentence-length", args->options.max_sentence_length,
                  "Sentences longer than this many bytes are left out of training")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--threads", args->options.threads, "Training threads (0 = all cores)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_flag("--verbose", args->options.verbose, "Show SentencePiece's own progress log");
  cmd->callback([args] { run_spm(*args); });
}

struct BinarizeArgs {
  std::string config;
  std::vector<std::string> sets;
  std::vector<std::string> splits = {"train", "dev", "test"};
};

Config binarize_config(const BinarizeArgs& args) {
  if (!args.config.empty()) return resolve_config(args.config, args.sets);
  Config config;
  for (const auto& assignment : args.sets) apply_override(config, assignment);
  validate(config, "--set overrides");
  return config;
}

void run_binarize(const BinarizeArgs& args) {
  const Config config = binarize_config(args);
  const DataConfig& data = config.data;
  ensure_corpus(data, std::cout);
  const CodecPair codecs = build_codecs(data, std::cout);
  for (const auto& split : args.splits) {
    const std::string prefix = split_prefix(data, split);
    const SplitPaths text = split_paths(data, prefix);
    if (!fs::exists(text.src) && !fs::exists(text.tgt) && split != "train") {
      std::cout << fmt::format("[data] {}: no {} / {}, skipped\n", split, text.src, text.tgt);
      continue;
    }
    const std::string out = binarized_path(data.dir, prefix, data.src_lang, data.tgt_lang);
    std::cout << binarize_split(text, out, *codecs.src, *codecs.tgt).summary();
  }
}

void add_binarize(CLI::App& data) {
  auto args = std::make_shared<BinarizeArgs>();
  auto* cmd = data.add_subcommand(
      "binarize", "Encode a config's corpus into memory-mappable token ids ({dir}/{prefix}.{src}-{tgt}.bin)");
  cmd->add_option("--config", args->config, "Config file (its data section says what to read and how)");
  add_set_option(*cmd, args->sets);
  cmd->add_option("--splits", args->splits, "Splits to binarize (missing dev/test files are skipped)")
      ->delimiter(',')
      ->check(CLI::IsMember({"train", "dev", "test"}))
      ->capture_default_str();
  cmd->callback([args] { run_binarize(*args); });
}

void setup_corpora(CLI::App& app) {
  CLI::App* data = app.get_subcommand("data");
  add_spm(*data);
  add_binarize(*data);
}

RegisterCommand reg{"data-corpora", 21, setup_corpora};

}  // namespace
}  // namespace qkv::cli
