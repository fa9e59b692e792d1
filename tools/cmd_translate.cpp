// qkv translate and qkv evaluate: use a trained checkpoint (src/eval/translate.h, evaluate.h).
//
//   qkv translate --checkpoint runs/toy/checkpoints/best.pt < input.txt > output.txt
//   qkv translate --checkpoint C --beam 1 --input F --output G
//   qkv evaluate --checkpoint runs/toy/checkpoints/best.pt --split test --precision bf16
// A checkpoint carries its config and vocabulary, so nothing else is needed to translate; evaluate
// reads the split from the data directory the checkpoint was trained on. Checkpoints hold fp32
// weights whatever precision trained them; --precision picks the decoding's (ops/precision.h).
#include <fstream>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include <unistd.h>

#include <fmt/format.h>

#include "base/error.h"
#include "cli.h"
#include "config/resources.h"
#include "data/corpus.h"
#include "data/dataset.h"
#include "eval/evaluate.h"
#include "eval/translate.h"
#include "ops/precision.h"
#include "train/metrics.h"

namespace qkv::cli {
namespace {

// Options both commands share: the checkpoint and the search.
struct SearchArgs {
  std::string checkpoint;
  std::optional<int64_t> beam;
  std::optional<double> alpha;
  std::optional<int64_t> batch_size;
  std::string precision = "fp32";
};

void add_search_options(CLI::App& cmd, SearchArgs& args) {
  cmd.add_option("--checkpoint", args.checkpoint, "Checkpoint file (e.g. runs/toy/checkpoints/best.pt)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd.add_option("--beam", args.beam, "Beam size; 1 = greedy (default: the checkpoint's decode.beam)")
      ->check(CLI::PositiveNumber);
  cmd.add_option("--alpha", args.alpha, "Length penalty exponent (default: the checkpoint's decode.alpha)")
      ->check(CLI::NonNegativeNumber);
  cmd.add_option("--batch-size", args.batch_size, "Sentences decoded together (default: decode.batch_size)")
      ->check(CLI::PositiveNumber);
  cmd.add_option("--precision", args.precision,
                 "Precision of the matrix products: fp32, bf16, or fp16 (CUDA only)")
      ->check(CLI::IsMember(enum_names<Precision>()))
      ->capture_default_str();
}

// --precision, refused where it cannot run.
Precision decoding_precision(const SearchArgs& args) {
  const auto precision = enum_from_string<Precision>(args.precision, "--precision");
  if (precision == Precision::Fp16 && !default_device().is_cuda())
    throw ConfigError("--precision fp16 needs a CUDA device, and this machine has none; use bf16 or fp32");
  const auto warning = precision_warning(precision, default_device());
  if (!warning.empty()) std::cerr << "[decode] warning: " << warning << "\n";
  return precision;
}

InferenceModel load_with_overrides(const SearchArgs& args) {
  InferenceModel loaded = load_inference_model(args.checkpoint, default_device());
  if (args.beam) loaded.config.decode.beam = *args.beam;
  if (args.alpha) loaded.config.decode.alpha = *args.alpha;
  if (args.batch_size) loaded.config.decode.batch_size = *args.batch_size;
  const bool overridden = args.beam || args.batch_size;
  check_fits_in_memory(loaded.config, loaded.codecs.src->size(), loaded.codecs.tgt->size(),
                       /*training=*/false,
                       overridden ? args.checkpoint + " with --beam/--batch-size" : args.checkpoint);
  return loaded;
}

struct TranslateArgs {
  SearchArgs search;
  std::string input;
  std::string output;
};

void run_translate(const TranslateArgs& args) {
  const PrecisionScope precision(decoding_precision(args.search));
  InferenceModel loaded = load_with_overrides(args.search);
  const SearchOptions options = search_options(loaded.config.decode);
  std::ofstream file;
  if (!args.output.empty()) {
    file.open(args.output);
    if (!file) throw std::runtime_error(fmt::format("{}: cannot open for writing", args.output));
  }
  std::ostream& out = args.output.empty() ? std::cout : file;
  // A person typing at a terminal gets each line translated as it is entered; files and pipes are
  // read whole and translated in length-sorted batches.
  if (args.input.empty() && stdout_is_terminal() && ::isatty(STDIN_FILENO)) {
    for (std::string line; std::getline(std::cin, line);)
      out << translate_lines(loaded.model, loaded.codecs, {line}, options, 1).front() << std::endl;
    return;
  }
  const std::vector<std::string> lines =
      args.input.empty() ? read_lines(stdin, "<stdin>") : read_lines(args.input);
  for (const auto& text :
       translate_lines(loaded.model, loaded.codecs, lines, options, loaded.config.decode.batch_size))
    out << text << '\n';
  out.flush();
  if (!out)
    throw std::runtime_error(fmt::format("{}: write failed", args.output.empty() ? "stdout" : args.output));
}

struct EvaluateArgs {
  SearchArgs search;
  std::string split = "test";
  int64_t max_sentences = 0;
  std::string hypotheses;
};

void run_evaluate(const EvaluateArgs& args) {
  const PrecisionScope precision(decoding_precision(args.search));
  InferenceModel loaded = load_with_overrides(args.search);
  const Config& config = loaded.config;
  const Split split = load_split(config.data, args.split, loaded.codecs, config.model.max_len - 1, std::cerr);
  const EvalResult result = evaluate_split(loaded.model, split, loaded.codecs, config, args.max_sentences);
  fmt::print("{} (step {}) on {} [{}]: BLEU over {} sentences, beam {}, alpha {}, {}\n",
             args.search.checkpoint, loaded.step, args.split,
             split_paths(config.data, split_prefix(config.data, args.split)).src, result.bleu_sentences,
             config.decode.beam, config.decode.alpha, args.search.precision);
  fmt::print("{}\n", result.bleu->format());
  fmt::print("nll {:.4f} | ppl {:.3f} (teacher-forced over all {} sentences, {} target tokens; {})\n",
             result.nll, result.ppl(), split.examples.size(), result.tokens, format_duration(result.seconds));
  if (!args.hypotheses.empty()) write_lines(args.hypotheses, result.hypotheses);
}

void setup_translate(CLI::App& app) {
  auto targs = std::make_shared<TranslateArgs>();
  auto* translate =
      app.add_subcommand("translate", "Translate text with a checkpoint (stdin to stdout by default)");
  add_search_options(*translate, targs->search);
  translate->add_option("--input", targs->input, "Source file, one sentence per line (default: stdin)")
      ->check(CLI::ExistingFile);
  translate->add_option("--output", targs->output, "Where translations go (default: stdout)");
  translate->callback([targs] { run_translate(*targs); });

  auto eargs = std::make_shared<EvaluateArgs>();
  auto* evaluate = app.add_subcommand(
      "evaluate", "BLEU (sacreBLEU layout) and perplexity of a checkpoint on a dev or test split");
  add_search_options(*evaluate, eargs->search);
  evaluate->add_option("--split", eargs->split, "Which split (default: test)")
      ->check(CLI::IsMember({"dev", "test"}));
  evaluate->add_option("--max-sentences", eargs->max_sentences, "Score only the first N sentences (0 = all)")
      ->check(CLI::NonNegativeNumber);
  evaluate->add_option("--hypotheses", eargs->hypotheses, "Also write the translations to this file");
  evaluate->callback([eargs] { run_evaluate(*eargs); });
}

RegisterCommand reg{"translate", 40, setup_translate};

}  // namespace
}  // namespace qkv::cli
