// Config -> corpus, codecs and encoded splits: see dataset.h.
#include "data/dataset.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <memory>
#include <ostream>

#include <fmt/format.h>

#include "base/enums.h"
#include "base/error.h"
#include "data/binarize.h"
#include "data/binarized.h"
#include "data/corpus.h"
#include "data/synthetic.h"
#include "data/vocab.h"

namespace qkv {
namespace fs = std::filesystem;
namespace {

constexpr const char* kStampName = ".qkv-generated.json";

// The version of the built-in generators' output: raised whenever a generator changes what it
// writes for the same task, sizes and seed, so that corpora cached by an older qkv are regenerated.
// 2: "an" before a vowel in the toy task's English.
constexpr int kGeneratorVersion = 2;

// What determines a generated corpus: if any of it changes, the files are generated again.
nlohmann::json generation_stamp(const DataConfig& data) {
  return {{"generator", kGeneratorVersion},
          {"task", to_string(data.task)},
          {"train_size", data.train_size},
          {"dev_size", data.dev_size},
          {"test_size", data.test_size},
          {"seed", data.seed},
          {"src_lang", data.src_lang},
          {"tgt_lang", data.tgt_lang},
          {"prefixes", {data.train_prefix, data.dev_prefix, data.test_prefix}}};
}

bool corpus_files_exist(const DataConfig& data) {
  for (const auto& prefix : {data.train_prefix, data.dev_prefix, data.test_prefix}) {
    const auto paths = split_paths(data, prefix);
    if (!fs::exists(paths.src) || !fs::exists(paths.tgt)) return false;
  }
  return true;
}

nlohmann::json read_stamp(const fs::path& path) {
  std::ifstream in(path);
  if (!in) return nullptr;
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception&) {
    return nullptr;  // a damaged stamp means "regenerate"
  }
}

std::string join_words(const Tokens& words) {
  std::string line;
  for (const auto& w : words) {
    if (!line.empty()) line += ' ';
    line += w;
  }
  return line;
}

std::vector<int64_t> truncated(std::vector<int64_t> ids, int64_t max_tokens) {
  if (max_tokens > 0 && static_cast<int64_t>(ids.size()) > max_tokens)
    ids.resize(static_cast<size_t>(max_tokens));
  return ids;
}

}  // namespace

bool ensure_corpus(const DataConfig& data, std::ostream& log) {
  if (data.task == DataTask::Files) return false;
  const fs::path stamp_path = fs::path(data.dir) / kStampName;
  const auto wanted = generation_stamp(data);
  if (corpus_files_exist(data) && read_stamp(stamp_path) == wanted) return false;
  log << fmt::format("[data] generating the {} task into {} ({} train, {} dev, {} test pairs, seed {})\n",
                     to_string(data.task), data.dir, data.train_size, data.dev_size, data.test_size,
                     data.seed);
  fs::create_directories(data.dir);
  write_generated_corpus(data);
  std::ofstream(stamp_path) << wanted.dump(2) << '\n';
  return true;
}

std::string split_prefix(const DataConfig& data, const std::string& name) {
  if (name == "train") return data.train_prefix;
  if (name == "dev") return data.dev_prefix;
  if (name == "test") return data.test_prefix;
  throw ConfigError(fmt::format("unknown split \"{}\" (expected train, dev or test)", name));
}

namespace {

// Training needs pairs: when filtering left none, say which files and why, rather than failing later
// with "no training examples to batch".
void require_training_pairs(const FilterStats& stats, const std::string& files) {
  if (stats.kept > 0) return;
  const int64_t read = stats.too_long + stats.empty;
  if (read == 0) throw DataError(fmt::format("{}: no training pairs: the files hold no lines", files));
  throw DataError(fmt::format(
      "{}: no training pairs left after filtering: all {} were dropped ({} with an empty side, i.e. a line "
      "blank after cleaning; {} with a side longer than {} tokens)",
      files, read, stats.empty, stats.too_long, stats.max_len));
}

std::string describe_files(const SplitPaths& paths) {
  return fmt::format("{} and {}", paths.src, paths.tgt);
}

}  // namespace

CodecPair build_codecs(const DataConfig& data, std::ostream& log) {
  if (data.tokenizer == Tokenizer::SentencePiece) {
    auto codecs = make_sentencepiece_codecs(data);
    log << fmt::format("[data] codec: {}\n", codecs.src->name());
    return codecs;
  }
  const SplitPaths train_paths = split_paths(data, data.train_prefix);
  ParallelCorpus train = read_parallel(train_paths);
  require_training_pairs(filter_pairs(train, data.max_len), describe_files(train_paths));
  CodecPair codecs;
  if (data.shared_vocab) {
    TokenCounts counts;
    counts.add(train.src);
    counts.add(train.tgt);
    codecs = make_word_codecs(Vocab::build(counts, data.min_freq));
    log << fmt::format("[data] shared vocabulary: {}\n", codecs.src->name());
  } else {
    codecs = make_word_codecs(Vocab::build(train.src, data.min_freq), Vocab::build(train.tgt, data.min_freq));
    log << fmt::format("[data] vocabularies: source {}, target {}\n", codecs.src->name(), codecs.tgt->name());
  }
  return codecs;
}

namespace {

// The training split from {dir}/{prefix}.{src}-{tgt}.bin (`qkv data binarize`): ids as they were
// encoded, checked against the codecs in use and the text they came from; pairs with an empty side
// or a side longer than data.max_len codec tokens are dropped. The pairs stay in the map (the batch
// iterator copies a pair's ids only into the batch that holds it). No text is kept: BLEU uses dev/test.
Split load_binarized_train(const DataConfig& data, const std::string& path, const CodecPair& codecs,
                           int64_t max_tokens, std::ostream& log) {
  BinarizedCorpus corpus(path);
  corpus.check_codecs(*codecs.src, *codecs.tgt);
  corpus.check_text(split_paths(data, data.train_prefix));
  FilterStats stats;
  Split split;
  split.name = "train";
  split.examples = Pairs(
      std::make_shared<const BinarizedPairs>(std::move(corpus), std::min(data.max_len, max_tokens), stats));
  require_training_pairs(stats, path);
  log << fmt::format("[data] train: {} ({})\n", path, stats.summary());
  return split;
}

}  // namespace

Split load_split(const DataConfig& data, const std::string& name, const CodecPair& codecs, int64_t max_tokens,
                 std::ostream& log) {
  const std::string binarized = binarized_path(data.dir, data.train_prefix, data.src_lang, data.tgt_lang);
  if (name == "train" && fs::exists(binarized))
    return load_binarized_train(data, binarized, codecs, max_tokens, log);
  const SplitPaths paths = split_paths(data, split_prefix(data, name));
  ParallelCorpus corpus = read_parallel(paths);
  if (name == "train") {
    const FilterStats stats = filter_pairs(corpus, data.max_len);
    require_training_pairs(stats, describe_files(paths));
    if (stats.too_long + stats.empty > 0) log << fmt::format("[data] train: {}\n", stats.summary());
  }
  Split split;
  split.name = name;
  std::vector<Example> examples;
  examples.reserve(corpus.size());
  for (size_t i = 0; i < corpus.size(); ++i) {
    split.src_text.push_back(join_words(corpus.src[i]));
    split.ref_text.push_back(join_words(corpus.tgt[i]));
    examples.push_back({truncated(codecs.src->encode(split.src_text.back()), max_tokens),
                        truncated(codecs.tgt->encode(split.ref_text.back()), max_tokens)});
  }
  split.examples = Pairs(std::move(examples));
  return split;
}

}  // namespace qkv
