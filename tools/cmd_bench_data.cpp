// qkv bench binarize: how fast a WMT14-sized binarized corpus loads, and how much memory it holds.
//
//   qkv bench binarize [--pairs 4500000] [--vocab 37000] [--dir DIR] [--keep] [--reuse]
//                      [--compare-examples] [--max-tokens 25000] [--batches 300]
//
// Writes a synthetic parallel corpus with realistic shape (WMT14 EN-DE after a 37K BPE: ~4.5M
// pairs, log-normal lengths around 28 tokens with a long tail capped at 250, target lengths
// correlated with the source, Zipf-distributed tokens), binarizes it through the real path (robust
// reader, word codec, parallel encoding, writer), evicts the file from the page cache, then opens
// it cold and reads every pair. Reports times and resident memory (anonymous = heap, file = mapped
// pages the kernel may drop and re-read). --compare-examples also materializes the corpus as the
// std::vector<Example> the text path builds, for comparison. Last, it builds the training batch
// iterator over the file the way `qkv train` does (load_split, then BatchIterator), draws --batches
// batches and reports the memory that costs. --reuse skips writing and binarizing when --dir holds
// the files of an earlier run with --keep.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "cli.h"
#include "data/batching.h"
#include "data/binarize.h"
#include "data/binarized.h"
#include "data/codec.h"
#include "data/dataset.h"

namespace qkv::cli {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Resident memory of this process, from /proc/self/status (MiB).
struct Resident {
  double total = 0, anon = 0, file = 0;
  static Resident now() {
    Resident r;
    std::ifstream status("/proc/self/status");
    std::string key;
    double kib = 0;
    while (status >> key) {
      if (key == "VmRSS:" && status >> kib) r.total = kib / 1024;
      if (key == "RssAnon:" && status >> kib) r.anon = kib / 1024;
      if (key == "RssFile:" && status >> kib) r.file = kib / 1024;
    }
    return r;
  }
  std::string str() const {
    return fmt::format("{:.0f} MiB (heap {:.0f}, mapped file {:.0f})", total, anon, file);
  }
};

// A pronounceable distinct word for each id: syllables in base 24, as real words are 5-8 bytes.
std::string make_word(int64_t id) {
  static const char* kSyllables[] = {"ka", "lo",  "min", "te",   "ra", "sun", "vi", "de",
                                     "an", "bor", "el",  "ut",   "ne", "sch", "ig", "wa",
                                     "ho", "er",  "fu",  "ling", "pa", "zo",  "en", "is"};
  std::string word;
  do {
    word += kSyllables[id % 24];
    id /= 24;
  } while (id > 0);
  return word.size() < 4 ? word + "t" : word;
}

struct SyntheticShape {
  int64_t pairs = 4500000;
  int64_t vocab = 37000;
  uint64_t seed = 1;
};

// The corpus's word types, by id.
std::vector<std::string> synthetic_words(const SyntheticShape& shape) {
  std::vector<std::string> words(static_cast<size_t>(shape.vocab));
  for (int64_t i = 0; i < shape.vocab; ++i) words[i] = make_word(i);
  return words;
}

// Writes DIR/train.src and DIR/train.tgt from the words of synthetic_words().
void write_synthetic_corpus(const SyntheticShape& shape, const std::vector<std::string>& words,
                            const fs::path& dir) {
  std::vector<double> cdf(words.size());  // Zipf, s = 1
  double total = 0;
  for (size_t i = 0; i < cdf.size(); ++i) cdf[i] = total += 1.0 / static_cast<double>(i + 1);
  for (auto& c : cdf) c /= total;

  std::mt19937_64 rng(shape.seed);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  std::normal_distribution<double> length_noise(std::log(28.0) - 0.18, 0.6), ratio_noise(0.05, 0.15);
  const auto sentence = [&](int64_t length, std::string& line) {
    line.clear();
    for (int64_t k = 0; k < length; ++k) {
      const size_t id = std::lower_bound(cdf.begin(), cdf.end(), uniform(rng)) - cdf.begin();
      if (k > 0) line += ' ';
      line += words[std::min(id, words.size() - 1)];
    }
    line += '\n';
  };
  std::ofstream src(dir / "train.src", std::ios::binary), tgt(dir / "train.tgt", std::ios::binary);
  std::string line;
  for (int64_t i = 0; i < shape.pairs; ++i) {
    const double s = std::clamp(std::round(std::exp(length_noise(rng))), 1.0, 250.0);
    const double t = std::clamp(std::round(s * std::exp(ratio_noise(rng))), 1.0, 250.0);
    sentence(static_cast<int64_t>(s), line);
    src << line;
    sentence(static_cast<int64_t>(t), line);
    tgt << line;
  }
  if (!src.flush() || !tgt.flush()) throw std::runtime_error(fmt::format("writing {} failed", dir.string()));
}

// Drops the file's pages from the page cache, so that the next read comes from disk.
void evict_from_page_cache(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return;
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  ::close(fd);
}

struct BenchArgs {
  SyntheticShape shape;
  std::string dir;
  bool keep = false;
  bool reuse = false;
  bool compare_examples = false;
  int64_t max_tokens = 25000;  // the paper's batches: ~25000 source and 25000 target tokens
  int64_t batches = 300;
};

void measure_load(const std::string& path, bool compare_examples) {
  evict_from_page_cache(path);
  const Resident before = Resident::now();
  auto start = Clock::now();
  const BinarizedCorpus corpus(path);
  const double open_s = seconds_since(start);
  const Resident opened = Resident::now();
  fmt::print("[bench] open (mmap + structure check): {:.3f} s; resident {}\n", open_s, opened.str());

  start = Clock::now();
  uint64_t checksum = 0, tokens = 0;
  for (int64_t i = 0; i < corpus.size(); ++i) {
    for (const TokenView view : {corpus.src(i), corpus.tgt(i)}) {
      for (int64_t k = 0; k < view.size(); ++k) checksum = checksum * 31 + static_cast<uint64_t>(view[k]);
      tokens += static_cast<uint64_t>(view.size());
    }
  }
  const double pass_s = seconds_since(start);
  const Resident touched = Resident::now();
  fmt::print(
      "[bench] first full pass over {} pairs / {} tokens (cold, from disk): {:.2f} s (checksum {:x})\n",
      corpus.size(), tokens, pass_s, checksum);
  fmt::print(
      "[bench] resident after the pass: {}; heap grew {:.0f} MiB; file {:.0f} MiB = {:.2f} bytes/token\n",
      touched.str(), touched.anon - before.anon, corpus.file_bytes() / 1048576.0,
      static_cast<double>(corpus.file_bytes()) / static_cast<double>(tokens));
  if (!compare_examples) return;

  start = Clock::now();
  std::vector<Example> examples;
  examples.reserve(static_cast<size_t>(corpus.size()));
  for (int64_t i = 0; i < corpus.size(); ++i)
    examples.push_back({corpus.src(i).to_vector(), corpus.tgt(i).to_vector()});
  const double build_s = seconds_since(start);
  const Resident held = Resident::now();
  double payload = static_cast<double>(examples.capacity() * sizeof(Example));
  for (const auto& e : examples)
    payload += static_cast<double>((e.src.capacity() + e.tgt.capacity()) * sizeof(int64_t));
  fmt::print(
      "[bench] for comparison, std::vector<Example> of the same pairs: {:.2f} s to build, {:.0f} MiB of ids "
      "and "
      "vector headers (heap +{:.0f} MiB measured, after reuse of freed blocks)\n",
      build_s, payload / 1048576.0, held.anon - touched.anon);
}

// The training side: the split as `qkv train` loads it (dataset.h), a batch iterator over it, and
// `batches` batches drawn. Reports the time and the resident memory each step adds.
void measure_training(const fs::path& dir, const CodecPair& codecs, const BenchArgs& args) {
  DataConfig data;
  data.dir = dir.string();
  data.train_prefix = "train";
  data.src_lang = "src";
  data.tgt_lang = "tgt";
  data.max_len = 250;  // the synthetic lengths are capped at 250: every pair is kept
  std::ostringstream log;
  const Resident before = Resident::now();
  auto start = Clock::now();
  Split train = load_split(data, "train", codecs, 255, log);
  BatchIterator batches(std::move(train.examples), args.max_tokens, 1);
  const double build_s = seconds_since(start);
  const Resident built = Resident::now();
  fmt::print(
      "[bench] training iterator (load_split + BatchIterator, max_tokens {}): {:.2f} s, {} batches "
      "in epoch 0; resident {}, heap +{:.0f} MiB\n",
      args.max_tokens, build_s, batches.batches_in_epoch(), built.str(), built.anon - before.anon);
  start = Clock::now();
  int64_t tokens = 0;
  for (int64_t b = 0; b < args.batches; ++b) tokens += batches.next().tgt_tokens;
  const double draw_s = seconds_since(start);
  const Resident drawn = Resident::now();
  fmt::print(
      "[bench] drew {} batches ({} target tokens) in {:.2f} s; resident {}, heap +{:.0f} MiB since "
      "before the split was loaded\n",
      args.batches, tokens, draw_s, drawn.str(), drawn.anon - before.anon);
}

void run_bench(const BenchArgs& args) {
  const bool temporary = args.dir.empty();
  const fs::path dir = temporary
                           ? fs::temp_directory_path() / fmt::format("qkv-bench-binarize-{}", ::getpid())
                           : fs::path(args.dir);
  fs::create_directories(dir);
  const std::vector<std::string> words = synthetic_words(args.shape);
  const SplitPaths text{(dir / "train.src").string(), (dir / "train.tgt").string()};
  const std::string path = (dir / "train.src-tgt.bin").string();
  TokenCounts counts;
  counts.add(words);
  const CodecPair codecs = make_word_codecs(Vocab::build(counts, 1));
  if (args.reuse && fs::exists(path) && fs::exists(text.src) && fs::exists(text.tgt)) {
    fmt::print("[bench] reusing {} (written by an earlier run; --pairs, --vocab and --seed must match it)\n",
               path);
  } else {
    fmt::print("[bench] synthetic corpus: {} pairs, {} word types, in {}\n", args.shape.pairs,
               args.shape.vocab, dir.string());
    auto start = Clock::now();
    write_synthetic_corpus(args.shape, words, dir);
    fmt::print("[bench] wrote text: {:.1f} + {:.1f} MB in {:.1f} s\n", fs::file_size(text.src) / 1e6,
               fs::file_size(text.tgt) / 1e6, seconds_since(start));
    const BinarizeReport report = binarize_split(text, path, *codecs.src, *codecs.tgt);
    fmt::print("[bench] binarized: {:.1f} s ({:.0f} pairs/s) -> {:.1f} MB\n", report.seconds,
               static_cast<double>(report.pairs) / report.seconds, report.file_bytes / 1e6);
    fmt::print("[bench] tokens: {} source + {} target, mean {:.1f} / {:.1f} per sentence\n",
               report.src_tokens, report.tgt_tokens,
               static_cast<double>(report.src_tokens) / static_cast<double>(report.pairs),
               static_cast<double>(report.tgt_tokens) / static_cast<double>(report.pairs));
  }
  measure_load(path, args.compare_examples);
  if (args.batches > 0) measure_training(dir, codecs, args);
  if (temporary && !args.keep) fs::remove_all(dir);
}

void setup_bench_data(CLI::App& app) {
  CLI::App* bench = nullptr;
  try {
    bench = app.get_subcommand("bench");
  } catch (const CLI::OptionNotFound&) {
    bench = app.add_subcommand("bench", "Benchmarks");
    bench->require_subcommand(1);
  }
  auto args = std::make_shared<BenchArgs>();
  auto* cmd =
      bench->add_subcommand("binarize", "Load time and resident memory of a WMT14-sized binarized corpus");
  cmd->add_option("--pairs", args->shape.pairs, "Sentence pairs (WMT14 EN-DE: 4.5M)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--vocab", args->shape.vocab, "Token types (a 37K BPE)")
      ->check(CLI::Range(int64_t{10}, int64_t{1000000}))
      ->capture_default_str();
  cmd->add_option("--seed", args->shape.seed, "Generator seed")->capture_default_str();
  cmd->add_option("--dir", args->dir, "Work directory (default: a temporary one, removed afterwards)");
  cmd->add_flag("--keep", args->keep, "Keep the temporary directory");
  cmd->add_flag("--reuse", args->reuse,
                "Reuse the corpus and .bin file that --dir holds from an earlier run");
  cmd->add_flag("--compare-examples", args->compare_examples,
                "Also build std::vector<Example> of the corpus and report its memory (~3 GB at 4.5M pairs)");
  cmd->add_option("--max-tokens", args->max_tokens, "Tokens per training batch and side")
      ->check(CLI::Range(int64_t{256}, int64_t{1} << 24))
      ->capture_default_str();
  cmd->add_option("--batches", args->batches, "Training batches to draw (0: skip the training measurement)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->callback([args] { run_bench(*args); });
}

RegisterCommand reg{"bench-binarize", 13, setup_bench_data};

}  // namespace
}  // namespace qkv::cli
