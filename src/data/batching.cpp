// Token-count batching with length grouping and exact resume (see batching.h).
#include "data/batching.h"

#include <algorithm>
#include <numeric>
#include <random>
#include <stdexcept>

#include <fmt/format.h>

#include "base/error.h"
#include "base/special_tokens.h"

namespace qkv {

namespace {

// Examples held in memory.
class ExamplePairs final : public PairSource {
 public:
  explicit ExamplePairs(std::vector<Example> examples) : examples_(std::move(examples)) {}
  int64_t count() const override { return static_cast<int64_t>(examples_.size()); }
  int64_t src_length(int64_t i) const override { return static_cast<int64_t>(at(i).src.size()); }
  int64_t tgt_length(int64_t i) const override { return static_cast<int64_t>(at(i).tgt.size()); }
  void copy_src(int64_t i, int64_t* out) const override {
    std::copy(at(i).src.begin(), at(i).src.end(), out);
  }
  void copy_tgt(int64_t i, int64_t* out) const override {
    std::copy(at(i).tgt.begin(), at(i).tgt.end(), out);
  }

 private:
  const Example& at(int64_t i) const { return examples_[static_cast<size_t>(i)]; }
  std::vector<Example> examples_;
};

// Both lengths of every pair, read once: planning an epoch sorts and packs by them alone.
struct Lengths {
  std::vector<int32_t> src, tgt;
  explicit Lengths(const PairSource& pairs) {
    const int64_t n = pairs.count();
    src.resize(static_cast<size_t>(n));
    tgt.resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      src[static_cast<size_t>(i)] = static_cast<int32_t>(pairs.src_length(i));
      tgt[static_cast<size_t>(i)] = static_cast<int32_t>(pairs.tgt_length(i));
    }
  }
};

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

// `order` sorted by (source length, target length); the order within ties is kept.
std::vector<int64_t> sorted_by_length(const std::vector<int32_t>& src, const std::vector<int32_t>& tgt,
                                      std::vector<int64_t> order) {
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    const auto x = static_cast<size_t>(a), y = static_cast<size_t>(b);
    return src[x] != src[y] ? src[x] < src[y] : tgt[x] < tgt[y];
  });
  return order;
}

// Cuts `order` (pair indices, already in the order wanted) greedily into consecutive batches whose
// padded size is at most max_tokens on each side. Throws std::invalid_argument when one pair alone is
// over.
std::vector<std::vector<int64_t>> pack_batches(const std::vector<int32_t>& src,
                                               const std::vector<int32_t>& tgt,
                                               const std::vector<int64_t>& order, int64_t max_tokens) {
  std::vector<std::vector<int64_t>> batches;
  std::vector<int64_t> current;
  int64_t src_longest = 0, tgt_longest = 0;
  for (const int64_t i : order) {
    const int64_t src_len = src[static_cast<size_t>(i)], tgt_len = tgt[static_cast<size_t>(i)];
    if (padded_tokens(1, std::max(src_len, tgt_len)) > max_tokens) {
      throw std::invalid_argument(
          fmt::format("batching: example {} has {} source and {} target tokens, more than max_tokens = {} "
                      "allows with </s> added",
                      i, src_len, tgt_len, max_tokens));
    }
    const int64_t src_next = std::max(src_longest, src_len);
    const int64_t tgt_next = std::max(tgt_longest, tgt_len);
    const auto n = static_cast<int64_t>(current.size()) + 1;
    if (padded_tokens(n, src_next) > max_tokens || padded_tokens(n, tgt_next) > max_tokens) {
      batches.push_back(std::move(current));
      current.clear();
      src_longest = src_len;
      tgt_longest = tgt_len;
    } else {
      src_longest = src_next;
      tgt_longest = tgt_next;
    }
    current.push_back(i);
  }
  if (!current.empty()) batches.push_back(std::move(current));
  return batches;
}

std::vector<int64_t> identity_order(size_t n) {
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
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

Pairs::Pairs() : Pairs(std::vector<Example>{}) {}

Pairs::Pairs(std::vector<Example> examples)
    : source_(std::make_shared<const ExamplePairs>(std::move(examples))) {}

Pairs::Pairs(std::shared_ptr<const PairSource> source) : source_(std::move(source)) {
  if (source_ == nullptr) throw std::invalid_argument("Pairs: null source");
}

Example Pairs::operator[](size_t i) const {
  const auto k = static_cast<int64_t>(i);
  Example example;
  example.src.resize(static_cast<size_t>(source_->src_length(k)));
  example.tgt.resize(static_cast<size_t>(source_->tgt_length(k)));
  source_->copy_src(k, example.src.data());
  source_->copy_tgt(k, example.tgt.data());
  return example;
}

Batch Batch::to(const torch::Device& device) const {
  Batch moved = *this;
  moved.src = src.to(device);
  moved.tgt_in = tgt_in.to(device);
  moved.tgt_out = tgt_out.to(device);
  return moved;
}

Batch make_batch(const Pairs& pairs, const std::vector<int64_t>& indices) {
  const PairSource& source = pairs.source();
  int64_t src_longest = 0, tgt_longest = 0;
  for (const int64_t i : indices) {
    src_longest = std::max(src_longest, source.src_length(i));
    tgt_longest = std::max(tgt_longest, source.tgt_length(i));
  }
  const auto B = static_cast<int64_t>(indices.size());
  const int64_t S = src_longest + 1, T = tgt_longest + 1;
  Batch batch;
  batch.indices = indices;
  batch.src = torch::full({B, S}, kPadId, torch::kLong);      // [B, S]
  batch.tgt_in = torch::full({B, T}, kPadId, torch::kLong);   // [B, T]
  batch.tgt_out = torch::full({B, T}, kPadId, torch::kLong);  // [B, T]
  int64_t* src = batch.src.data_ptr<int64_t>();
  int64_t* tgt_in = batch.tgt_in.data_ptr<int64_t>();
  int64_t* tgt_out = batch.tgt_out.data_ptr<int64_t>();
  for (int64_t b = 0; b < B; ++b) {
    const int64_t i = indices[static_cast<size_t>(b)];
    const int64_t src_len = source.src_length(i), tgt_len = source.tgt_length(i);
    int64_t* src_row = src + b * S;      // tokens, </s>
    int64_t* in_row = tgt_in + b * T;    // <s>, tokens
    int64_t* out_row = tgt_out + b * T;  // tokens, </s>
    source.copy_src(i, src_row);
    src_row[src_len] = kEosId;
    source.copy_tgt(i, out_row);
    out_row[tgt_len] = kEosId;
    in_row[0] = kBosId;
    std::copy(out_row, out_row + tgt_len, in_row + 1);
    batch.src_tokens += src_len + 1;
    batch.tgt_tokens += tgt_len + 1;
  }
  return batch;
}

int64_t padded_tokens(int64_t sentences, int64_t longest) {
  return sentences * (longest + 1);
}

std::vector<std::vector<int64_t>> eval_batches(const Pairs& pairs, int64_t max_tokens) {
  const Lengths lengths(pairs.source());
  return pack_batches(lengths.src, lengths.tgt,
                      sorted_by_length(lengths.src, lengths.tgt, identity_order(pairs.size())), max_tokens);
}

BatchIterator::BatchIterator(Pairs pairs, int64_t max_tokens, uint64_t seed)
    : pairs_(std::move(pairs)), max_tokens_(max_tokens), seed_(seed) {
  if (max_tokens < 2)
    throw std::invalid_argument(fmt::format("BatchIterator: max_tokens = {} must be at least 2", max_tokens));
  if (pairs_.empty()) throw DataError("no training examples to batch (is the corpus empty after filtering?)");
  Lengths lengths(pairs_.source());
  src_length_ = std::move(lengths.src);
  tgt_length_ = std::move(lengths.tgt);
  plan_epoch(0);
}

void BatchIterator::plan_epoch(int64_t epoch) {
  std::mt19937_64 rng = epoch_rng(seed_, epoch);
  std::vector<int64_t> order = identity_order(pairs_.size());
  fisher_yates(order, rng);
  plan_ = pack_batches(src_length_, tgt_length_, sorted_by_length(src_length_, tgt_length_, std::move(order)),
                       max_tokens_);
  fisher_yates(plan_, rng);
  epoch_ = epoch;
  index_ = 0;
}

Batch BatchIterator::next() {
  if (index_ >= batches_in_epoch()) plan_epoch(epoch_ + 1);
  return make_batch(pairs_, plan_[static_cast<size_t>(index_++)]);
}

void BatchIterator::skip() {
  if (index_ >= batches_in_epoch()) plan_epoch(epoch_ + 1);
  ++index_;
}

std::vector<Batch> BatchIterator::next_share(int64_t per_process, int64_t processes, int64_t rank) {
  std::vector<Batch> share;
  for (int64_t i = 0; i < per_process * processes; ++i) {
    if (i % processes == rank)
      share.push_back(next());
    else
      skip();
  }
  return share;
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
