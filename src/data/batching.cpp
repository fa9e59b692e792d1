// Token-count batching with length grouping and exact resume (see batching.h).
#include "data/batching.h"

#include <algorithm>
#include <numeric>
#include <random>
#include <stdexcept>

#include <fmt/format.h>

#include "data/special_tokens.h"
#include "error.h"

namespace qkv {

namespace {

int64_t len(const std::vector<int64_t>& ids) {
  return static_cast<int64_t>(ids.size());
}

// The generator for one epoch. std::seed_seq and std::mt19937_64 are fully specified by the
// standard, and the shuffle below is written out (std::shuffle is not), so the batches of a given
// (seed, epoch) are the same on every platform.
std::mt19937_64 epoch_rng(uint64_t seed, int64_t epoch) {
  std::seed_seq seq{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32),
                    static_cast<uint32_t>(epoch), static_cast<uint32_t>(static_cast<uint64_t>(epoch) >> 32)};
  return std::mt19937_64(seq);
}

template <typename T>
void fisher_yates(std::vector<T>& items, std::mt19937_64& rng) {
  for (size_t i = items.size(); i > 1; --i) std::swap(items[i - 1], items[rng() % i]);
}

// Indices 0..n-1 ordered by (source length, target length); the order within ties is kept.
std::vector<int64_t> sorted_by_length(const std::vector<Example>& examples, std::vector<int64_t> order) {
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    const Example& x = examples[static_cast<size_t>(a)];
    const Example& y = examples[static_cast<size_t>(b)];
    return len(x.src) != len(y.src) ? len(x.src) < len(y.src) : len(x.tgt) < len(y.tgt);
  });
  return order;
}

}  // namespace

std::vector<Example> encode_corpus(const ParallelCorpus& corpus, const Vocab& src_vocab,
                                   const Vocab& tgt_vocab) {
  std::vector<Example> examples;
  examples.reserve(corpus.size());
  for (size_t i = 0; i < corpus.size(); ++i) {
    examples.push_back({src_vocab.encode(corpus.src[i]), tgt_vocab.encode(corpus.tgt[i])});
  }
  return examples;
}

Batch Batch::to(const torch::Device& device) const {
  Batch moved = *this;
  moved.src = src.to(device);
  moved.tgt_in = tgt_in.to(device);
  moved.tgt_out = tgt_out.to(device);
  return moved;
}

Batch make_batch(const std::vector<Example>& examples, const std::vector<int64_t>& indices) {
  int64_t src_longest = 0, tgt_longest = 0;
  for (const int64_t i : indices) {
    src_longest = std::max(src_longest, len(examples[static_cast<size_t>(i)].src));
    tgt_longest = std::max(tgt_longest, len(examples[static_cast<size_t>(i)].tgt));
  }
  const auto B = static_cast<int64_t>(indices.size());
  Batch batch;
  batch.indices = indices;
  batch.src = torch::full({B, src_longest + 1}, kPadId, torch::kLong);      // [B, S]
  batch.tgt_in = torch::full({B, tgt_longest + 1}, kPadId, torch::kLong);   // [B, T]
  batch.tgt_out = torch::full({B, tgt_longest + 1}, kPadId, torch::kLong);  // [B, T]
  auto src = batch.src.accessor<int64_t, 2>();
  auto tgt_in = batch.tgt_in.accessor<int64_t, 2>();
  auto tgt_out = batch.tgt_out.accessor<int64_t, 2>();
  for (int64_t b = 0; b < B; ++b) {
    const Example& ex = examples[static_cast<size_t>(indices[static_cast<size_t>(b)])];
    for (int64_t s = 0; s < len(ex.src); ++s) src[b][s] = ex.src[static_cast<size_t>(s)];
    src[b][len(ex.src)] = kEosId;
    tgt_in[b][0] = kBosId;
    for (int64_t t = 0; t < len(ex.tgt); ++t) {
      tgt_in[b][t + 1] = ex.tgt[static_cast<size_t>(t)];
      tgt_out[b][t] = ex.tgt[static_cast<size_t>(t)];
    }
    tgt_out[b][len(ex.tgt)] = kEosId;
    batch.src_tokens += len(ex.src) + 1;
    batch.tgt_tokens += len(ex.tgt) + 1;
  }
  return batch;
}

int64_t padded_tokens(int64_t sentences, int64_t longest) {
  return sentences * (longest + 1);
}

std::vector<std::vector<int64_t>> pack_batches(const std::vector<Example>& examples,
                                               const std::vector<int64_t>& order, int64_t max_tokens) {
  std::vector<std::vector<int64_t>> batches;
  std::vector<int64_t> current;
  int64_t src_longest = 0, tgt_longest = 0;
  for (const int64_t i : order) {
    const Example& ex = examples[static_cast<size_t>(i)];
    if (padded_tokens(1, std::max(len(ex.src), len(ex.tgt))) > max_tokens) {
      throw ConfigError(fmt::format(
          "example {} has {} source and {} target tokens, more than train.max_tokens = {} allows with "
          "</s> added; raise train.max_tokens or lower data.max_len",
          i, len(ex.src), len(ex.tgt), max_tokens));
    }
    const int64_t src_next = std::max(src_longest, len(ex.src));
    const int64_t tgt_next = std::max(tgt_longest, len(ex.tgt));
    const auto n = static_cast<int64_t>(current.size()) + 1;
    if (padded_tokens(n, src_next) > max_tokens || padded_tokens(n, tgt_next) > max_tokens) {
      batches.push_back(std::move(current));
      current.clear();
      src_longest = len(ex.src);
      tgt_longest = len(ex.tgt);
    } else {
      src_longest = src_next;
      tgt_longest = tgt_next;
    }
    current.push_back(i);
  }
  if (!current.empty()) batches.push_back(std::move(current));
  return batches;
}

std::vector<std::vector<int64_t>> eval_batches(const std::vector<Example>& examples, int64_t max_tokens) {
  std::vector<int64_t> order(examples.size());
  std::iota(order.begin(), order.end(), 0);
  return pack_batches(examples, sorted_by_length(examples, std::move(order)), max_tokens);
}

BatchIterator::BatchIterator(std::vector<Example> examples, int64_t max_tokens, uint64_t seed)
    : examples_(std::move(examples)), max_tokens_(max_tokens), seed_(seed) {
  if (max_tokens < 2)
    throw ConfigError(fmt::format("train.max_tokens must be at least 2, got {}", max_tokens));
  if (examples_.empty())
    throw DataError("no training examples to batch (is the corpus empty after filtering?)");
  plan_epoch(0);
}

void BatchIterator::plan_epoch(int64_t epoch) {
  std::mt19937_64 rng = epoch_rng(seed_, epoch);
  std::vector<int64_t> order(examples_.size());
  std::iota(order.begin(), order.end(), 0);
  fisher_yates(order, rng);
  plan_ = pack_batches(examples_, sorted_by_length(examples_, std::move(order)), max_tokens_);
  fisher_yates(plan_, rng);
  epoch_ = epoch;
  index_ = 0;
}

Batch BatchIterator::next() {
  if (index_ >= batches_in_epoch()) plan_epoch(epoch_ + 1);
  return make_batch(examples_, plan_[static_cast<size_t>(index_++)]);
}

void BatchIterator::restore(const BatchPosition& position) {
  if (position.epoch < 0 || position.index < 0) {
    throw std::invalid_argument(
        fmt::format("batch position (epoch {}, batch {}) is negative", position.epoch, position.index));
  }
  plan_epoch(position.epoch);
  if (position.index > batches_in_epoch()) {
    throw std::invalid_argument(fmt::format(
        "batch position (epoch {}, batch {}) is past the {} batches of that epoch: was it saved with other "
        "data or another max_tokens?",
        position.epoch, position.index, batches_in_epoch()));
  }
  index_ = position.index;
}

}  // namespace qkv
