// qkv data: prepares corpora. This file adds the `data` family and the built-in generators:
//   qkv data toy     --out DIR [--train N --dev N --test N --seed S] [--dictionary-baseline]
//   qkv data copy    --out DIR [--train N ... --symbols V --min-len L --max-len L]
//   qkv data reverse --out DIR [same options as copy]
// Each writes DIR/{train,dev,test}.{src,tgt}, one sentence per line; the same options give
// byte-identical files. Other files add their own `data` subcommands via app.get_subcommand("data").
#include <algorithm>
#include <cstdint>
#include <iostream>
#include <memory>
#include <set>

#include <fmt/format.h>

#include "cli.h"
#include "data/synthetic.h"
#include "data/toy.h"
#include "data/utf8.h"

namespace {

// Lengths and vocabulary of one side of a split, for the summary line.
std::string describe_side(const std::vector<std::string>& lines) {
  std::set<std::string> words;
  size_t shortest = SIZE_MAX, longest = 0, total = 0;
  for (const auto& line : lines) {
    const auto tokens = qkv::utf8::split_words(line);
    words.insert(tokens.begin(), tokens.end());
    shortest = std::min(shortest, tokens.size());
    longest = std::max(longest, tokens.size());
    total += tokens.size();
  }
  if (lines.empty()) return "empty";
  return fmt::format("{}..{} words (mean {:.1f}), {} distinct", shortest, longest,
                     static_cast<double>(total) / static_cast<double>(lines.size()), words.size());
}

// Validators with plain messages (CLI11's numeric ranges print the limits of a double).
CLI::Validator at_least(int64_t minimum) {
  return CLI::Validator(
      [minimum](std::string& value) -> std::string {
        try {
          if (std::stoll(value) >= minimum) return "";
        } catch (const std::exception&) {
          return "";  // not a number: CLI11's own conversion error says so
        }
        return fmt::format("must be at least {}, got {}", minimum, value);
      },
      fmt::format(">= {}", minimum));
}

struct ToyArgs {
  std::string out;
  qkv::ToyOptions options;
  bool dictionary_baseline = false;
};

void run_toy(const ToyArgs& args) {
  const qkv::ToyCorpus corpus = qkv::generate_toy_corpus(args.options);
  const qkv::CorpusLayout layout{args.out};
  const std::pair<const char*, const std::vector<qkv::toy::ToyPair>*> splits[] = {
      {"train", &corpus.train}, {"dev", &corpus.dev}, {"test", &corpus.test}};
  for (const auto& [prefix, pairs] : splits) {
    const qkv::SplitText text = qkv::to_text(*pairs);
    qkv::write_split(layout.split(prefix), text);
    std::cout << fmt::format("[data] {}/{}.src|tgt: {} pairs; src {}; tgt {}\n", args.out, prefix,
                             pairs->size(), describe_side(text.src), describe_side(text.tgt));
  }
  if (!args.dictionary_baseline) return;
  const qkv::DictionaryBaseline baseline(corpus.train);
  for (const auto& [prefix, pairs] : {splits[1], splits[2]}) {
    const std::string path = fmt::format("{}/{}.dict", args.out, prefix);
    qkv::write_lines(path, baseline.translate_lines(qkv::to_text(*pairs).src));
    std::cout << fmt::format("[data] {}: word-by-word dictionary translation of {}/{}.src\n", path, args.out,
                             prefix);
  }
}

void add_toy(CLI::App& data) {
  auto args = std::make_shared<ToyArgs>();
  auto* cmd = data.add_subcommand("toy", "Write the toy translation task (see docs/toy-task.md)");
  cmd->add_option("--out", args->out, "Output directory")->required();
  cmd->add_option("--train", args->options.train, "Training pairs")
      ->check(at_least(0))
      ->capture_default_str();
  cmd->add_option("--dev", args->options.dev, "Dev pairs (none of them in train)")
      ->check(at_least(0))
      ->capture_default_str();
  cmd->add_option("--test", args->options.test, "Test pairs (none of them in train or dev)")
      ->check(at_least(0))
      ->capture_default_str();
  cmd->add_option("--seed", args->options.seed, "Random seed (the language itself never changes)")
      ->capture_default_str();
  cmd->add_flag("--dictionary-baseline", args->dictionary_baseline,
                "Also write dev.dict and test.dict: word-by-word translations without reordering");
  cmd->callback([args] { run_toy(*args); });
}

struct SequenceArgs {
  std::string out;
  qkv::SequenceOptions options;
};

void add_sequence_task(CLI::App& data, const std::string& name, qkv::SequenceTask task,
                       const std::string& help) {
  auto args = std::make_shared<SequenceArgs>();
  auto* cmd = data.add_subcommand(name, help);
  cmd->add_option("--out", args->out, "Output directory")->required();
  cmd->add_option("--train", args->options.train, "Training pairs")
      ->check(at_least(0))
      ->capture_default_str();
  cmd->add_option("--dev", args->options.dev, "Dev pairs")->check(at_least(0))->capture_default_str();
  cmd->add_option("--test", args->options.test, "Test pairs")->check(at_least(0))->capture_default_str();
  cmd->add_option("--seed", args->options.seed, "Random seed")->capture_default_str();
  cmd->add_option("--symbols", args->options.symbols, "Distinct symbols, written 0 .. N-1")
      ->check(at_least(1))
      ->capture_default_str();
  cmd->add_option("--min-len", args->options.min_len, "Shortest sequence")
      ->check(at_least(1))
      ->capture_default_str();
  cmd->add_option("--max-len", args->options.max_len, "Longest sequence")
      ->check(at_least(1))
      ->capture_default_str();
  cmd->callback([args, task, name] {
    qkv::write_sequence_corpus(task, qkv::CorpusLayout{args->out}, args->options);
    std::cout << fmt::format("[data] {}: {} task, {}/{}/{} pairs of {}..{} symbols from {}\n", args->out,
                             name, args->options.train, args->options.dev, args->options.test,
                             args->options.min_len, args->options.max_len, args->options.symbols);
  });
}

void setup_data(CLI::App& app) {
  auto* data = app.add_subcommand("data", "Generate or prepare corpora");
  data->require_subcommand(1);
  add_toy(*data);
  add_sequence_task(*data, "copy", qkv::SequenceTask::Copy,
                    "Write the copy task: the target repeats the source");
  add_sequence_task(*data, "reverse", qkv::SequenceTask::Reverse,
                    "Write the reverse task: the target is the source backwards");
}

qkv::cli::RegisterCommand reg{"data", 20, setup_data};

}  // namespace
