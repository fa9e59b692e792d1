// Text -> binarized corpus, block by block: read a block of line pairs, encode it in parallel,
// append it in order (see binarize.h).
#include "data/binarize.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <filesystem>

#include <fmt/format.h>

#include "base/special_tokens.h"

namespace qkv {
namespace {

constexpr size_t kBlockPairs = 16384;  // large enough to amortize the thread fork, small in memory

int64_t count_unknown(const std::vector<int64_t>& ids) {
  return static_cast<int64_t>(std::count(ids.begin(), ids.end(), kUnkId));
}

}  // namespace

std::string BinarizeReport::summary() const {
  const auto percent = [](int64_t part, int64_t whole) { return whole > 0 ? 100.0 * part / whole : 0.0; };
  std::string out =
      fmt::format("[data] {}: {} pairs, {} + {} tokens ({:.2f}% / {:.2f}% <unk>), {:.1f} MB, {:.1f} s\n",
                  out_path, pairs, src_tokens, tgt_tokens, percent(src_unknown, src_tokens),
                  percent(tgt_unknown, tgt_tokens), file_bytes / 1e6, seconds);
  if (empty_pairs > 0)
    out += fmt::format("[data]   {} pairs with an empty side (kept; training skips them)\n", empty_pairs);
  out += fmt::format("[data]   source text: {}\n", src_text.summary());
  out += fmt::format("[data]   target text: {}\n", tgt_text.summary());
  return out;
}

BinarizeReport binarize_split(const SplitPaths& text, const std::string& out_path, const TextCodec& src,
                              const TextCodec& tgt) {
  const auto start = std::chrono::steady_clock::now();
  BinarizeReport report;
  report.out_path = out_path;
  ParallelReader reader(text.src, text.tgt);
  BinarizedWriter writer(out_path, src, tgt);
  std::vector<std::string> src_lines(kBlockPairs), tgt_lines(kBlockPairs);
  std::vector<std::vector<int64_t>> src_ids(kBlockPairs), tgt_ids(kBlockPairs);
  while (true) {
    size_t n = 0;
    while (n < kBlockPairs && reader.next(src_lines[n], tgt_lines[n])) ++n;
    if (n == 0) break;
    at::parallel_for(0, static_cast<int64_t>(n), 256, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        src_ids[i] = src.encode(src_lines[i]);
        tgt_ids[i] = tgt.encode(tgt_lines[i]);
      }
    });
    for (size_t i = 0; i < n; ++i) {
      writer.add(src_ids[i], tgt_ids[i]);
      report.src_tokens += static_cast<int64_t>(src_ids[i].size());
      report.tgt_tokens += static_cast<int64_t>(tgt_ids[i].size());
      report.src_unknown += count_unknown(src_ids[i]);
      report.tgt_unknown += count_unknown(tgt_ids[i]);
      report.empty_pairs += src_ids[i].empty() || tgt_ids[i].empty();
    }
    if (n < kBlockPairs) break;
  }
  writer.finish(text);
  report.pairs = writer.pairs();
  report.src_text = reader.src().stats();
  report.tgt_text = reader.tgt().stats();
  report.file_bytes = std::filesystem::file_size(out_path);
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

BinarizedPairs::BinarizedPairs(BinarizedCorpus corpus, int64_t max_len, FilterStats& stats)
    : corpus_(std::move(corpus)) {
  stats = FilterStats{};
  stats.max_len = max_len;
  for (int64_t i = 0; i < corpus_.size(); ++i) {
    const int64_t src_len = corpus_.src_length(i), tgt_len = corpus_.tgt_length(i);
    if (src_len == 0 || tgt_len == 0) {
      ++stats.empty;
    } else if (src_len > max_len || tgt_len > max_len) {
      ++stats.too_long;
    } else {
      kept_.push_back(i);
    }
  }
  kept_.shrink_to_fit();
  stats.kept = count();
}

std::vector<Example> all_examples(const BinarizedCorpus& corpus, int64_t truncate_to) {
  const auto cut = [&](const TokenView& view) {
    std::vector<int64_t> ids = view.to_vector();
    if (truncate_to > 0 && static_cast<int64_t>(ids.size()) > truncate_to)
      ids.resize(static_cast<size_t>(truncate_to));
    return ids;
  };
  std::vector<Example> examples;
  examples.reserve(static_cast<size_t>(corpus.size()));
  for (int64_t i = 0; i < corpus.size(); ++i) examples.push_back({cut(corpus.src(i)), cut(corpus.tgt(i))});
  return examples;
}

}  // namespace qkv
