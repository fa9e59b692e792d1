// Copy and reverse tasks, and the dispatcher for generated data (see synthetic.h).
#include "data/synthetic.h"

#include <algorithm>
#include <random>

#include <fmt/format.h>

#include "base/enums.h"
#include "base/error.h"
#include "data/toy.h"

namespace qkv {

namespace {

std::string join(const std::vector<std::string>& words) {
  std::string line;
  for (const auto& w : words) line += (line.empty() ? "" : " ") + w;
  return line;
}

SplitText draw_split(SequenceTask task, const SequenceOptions& options, int64_t n, std::mt19937_64& rng) {
  SplitText text;
  const auto span = static_cast<uint64_t>(options.max_len - options.min_len + 1);
  for (int64_t i = 0; i < n; ++i) {
    const auto len = options.min_len + static_cast<int64_t>(rng() % span);
    std::vector<std::string> symbols;
    for (int64_t t = 0; t < len; ++t) {
      symbols.push_back(std::to_string(rng() % static_cast<uint64_t>(options.symbols)));
    }
    text.src.push_back(join(symbols));
    if (task == SequenceTask::Reverse) std::reverse(symbols.begin(), symbols.end());
    text.tgt.push_back(join(symbols));
  }
  return text;
}

}  // namespace

SequenceCorpus generate_sequence_corpus(SequenceTask task, const SequenceOptions& options) {
  if (options.train < 0 || options.dev < 0 || options.test < 0) {
    throw ConfigError(fmt::format("corpus sizes must not be negative (train {}, dev {}, test {})",
                                  options.train, options.dev, options.test));
  }
  if (options.symbols < 1)
    throw ConfigError(fmt::format("symbols must be at least 1, got {}", options.symbols));
  if (options.min_len < 1 || options.max_len < options.min_len) {
    throw ConfigError(fmt::format("lengths must satisfy 1 <= min_len <= max_len, got {}..{}", options.min_len,
                                  options.max_len));
  }
  std::mt19937_64 rng(options.seed);
  SequenceCorpus corpus;
  corpus.train = draw_split(task, options, options.train, rng);
  corpus.dev = draw_split(task, options, options.dev, rng);
  corpus.test = draw_split(task, options, options.test, rng);
  return corpus;
}

void write_sequence_corpus(SequenceTask task, const CorpusLayout& layout, const SequenceOptions& options) {
  const SequenceCorpus corpus = generate_sequence_corpus(task, options);
  write_split(layout.split(layout.train_prefix), corpus.train);
  write_split(layout.split(layout.dev_prefix), corpus.dev);
  write_split(layout.split(layout.test_prefix), corpus.test);
}

void write_generated_corpus(const DataConfig& data) {
  const auto seed = static_cast<uint64_t>(data.seed);
  switch (data.task) {
    case DataTask::Toy:
      write_toy_corpus(CorpusLayout::of(data),
                       ToyOptions{data.train_size, data.dev_size, data.test_size, seed});
      return;
    case DataTask::Copy:
    case DataTask::Reverse: {
      SequenceOptions options;
      options.train = data.train_size;
      options.dev = data.dev_size;
      options.test = data.test_size;
      options.seed = seed;
      write_sequence_corpus(data.task == DataTask::Copy ? SequenceTask::Copy : SequenceTask::Reverse,
                            CorpusLayout::of(data), options);
      return;
    }
    case DataTask::Files:
      break;
  }
  throw std::invalid_argument(fmt::format(
      "write_generated_corpus: task \"{}\" has nothing to generate; its corpus must already be in {}",
      to_string(data.task), data.dir));
}

}  // namespace qkv
