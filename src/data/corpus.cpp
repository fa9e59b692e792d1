// Reading (through LineReader), writing and filtering parallel text (see corpus.h).
#include "data/corpus.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>

#include "base/error.h"
#include "data/text_clean.h"
#include "data/utf8.h"

namespace qkv {

namespace fs = std::filesystem;

SplitPaths split_paths(const std::string& dir, const std::string& prefix, const std::string& src_lang,
                       const std::string& tgt_lang) {
  const fs::path base = fs::path(dir) / prefix;
  return {base.string() + "." + src_lang, base.string() + "." + tgt_lang};
}

SplitPaths split_paths(const DataConfig& data, const std::string& prefix) {
  return split_paths(data.dir, prefix, data.src_lang, data.tgt_lang);
}

CorpusLayout CorpusLayout::of(const DataConfig& data) {
  return {data.dir, data.src_lang, data.tgt_lang, data.train_prefix, data.dev_prefix, data.test_prefix};
}

namespace {

std::vector<std::string> read_all(LineReader& reader) {
  std::vector<std::string> lines;
  for (std::string line; reader.next(line);) lines.push_back(std::move(line));
  return lines;
}

}  // namespace

std::vector<std::string> read_lines(const std::string& path) {
  LineReader reader(path);
  return read_all(reader);
}

std::vector<std::string> read_lines(std::FILE* stream, const std::string& name) {
  LineReader reader(stream, name);
  return read_all(reader);
}

void write_lines(const std::string& path, const std::vector<std::string>& lines) {
  const fs::path parent = fs::path(path).parent_path();
  std::error_code ec;
  if (!parent.empty()) fs::create_directories(parent, ec);
  if (ec) throw DataError(fmt::format("{}: cannot create directory ({})", parent.string(), ec.message()));
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw DataError(fmt::format("{}: cannot write ({})", path, std::strerror(errno)));
  for (const auto& line : lines) out << line << '\n';
  out.flush();
  if (!out) throw DataError(fmt::format("{}: write failed", path));
}

void write_split(const SplitPaths& paths, const SplitText& text) {
  write_lines(paths.src, text.src);
  write_lines(paths.tgt, text.tgt);
}

ParallelCorpus read_parallel(const std::string& src_path, const std::string& tgt_path) {
  const std::vector<std::string> src_lines = read_lines(src_path);
  const std::vector<std::string> tgt_lines = read_lines(tgt_path);
  if (src_lines.size() != tgt_lines.size()) {
    throw DataError(
        fmt::format("{} has {} lines but {} has {}: line i of one must translate line i of the other",
                    src_path, src_lines.size(), tgt_path, tgt_lines.size()));
  }
  if (src_lines.empty()) throw DataError(fmt::format("{}: empty corpus (no lines)", src_path));
  ParallelCorpus corpus;
  corpus.src_path = src_path;
  corpus.tgt_path = tgt_path;
  corpus.src.reserve(src_lines.size());
  corpus.tgt.reserve(tgt_lines.size());
  for (size_t i = 0; i < src_lines.size(); ++i) {
    corpus.src.push_back(utf8::split_words(src_lines[i]));
    corpus.tgt.push_back(utf8::split_words(tgt_lines[i]));
  }
  return corpus;
}

ParallelCorpus read_parallel(const SplitPaths& paths) {
  return read_parallel(paths.src, paths.tgt);
}

std::string FilterStats::summary() const {
  return fmt::format("kept {} of {} pairs ({} longer than {} tokens, {} with an empty side)", kept,
                     kept + too_long + empty, too_long, max_len, empty);
}

FilterStats filter_pairs(ParallelCorpus& corpus, int64_t max_len) {
  FilterStats stats;
  stats.max_len = max_len;
  size_t out = 0;
  for (size_t i = 0; i < corpus.size(); ++i) {
    const auto src_len = static_cast<int64_t>(corpus.src[i].size());
    const auto tgt_len = static_cast<int64_t>(corpus.tgt[i].size());
    if (src_len == 0 || tgt_len == 0) {
      ++stats.empty;
    } else if (src_len > max_len || tgt_len > max_len) {
      ++stats.too_long;
    } else {
      if (out != i) {
        corpus.src[out] = std::move(corpus.src[i]);
        corpus.tgt[out] = std::move(corpus.tgt[i]);
      }
      ++out;
      ++stats.kept;
    }
  }
  corpus.src.resize(out);
  corpus.tgt.resize(out);
  return stats;
}

}  // namespace qkv
