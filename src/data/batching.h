// Batches by token count (Vaswani et al. 2017, §5.1: "sentence pairs were batched together by
// approximate sequence length"). Each epoch the examples are shuffled from (seed, epoch), sorted by
// length (the shuffle breaks ties, so equal-length sentences meet different neighbours each epoch),
// cut greedily into batches whose padded size stays within max_tokens on each side, and the batches
// themselves are shuffled. Every example appears exactly once per epoch, and the iterator's
// position {epoch, index} is all it takes to resume exactly where a run stopped. Planning needs only
// the lengths; the ids are copied from wherever the pairs live (PairSource) into each batch as it is
// built, so a memory-mapped corpus is never copied whole.
//
// Dimension legend: B = sentences in the batch, S = source length + 1 (</s>), T = target length + 1
// (<s> in front of the decoder input, </s> after the decoder output).
#pragma once

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <memory>
#include <vector>

#include <torch/torch.h>

#include "data/corpus.h"
#include "data/vocab.h"

namespace qkv {

struct Example {
  std::vector<int64_t> src;  // token ids, without <s> or </s>
  std::vector<int64_t> tgt;
};

std::vector<Example> encode_corpus(const ParallelCorpus& corpus, const Vocab& src_vocab,
                                   const Vocab& tgt_vocab);

// Sentence pairs as batching reads them, wherever they are stored: every length is known up front
// (batches are planned from lengths alone), and a pair's ids are copied out only when a batch that
// holds it is built. Implementations: examples in memory (Pairs below) and the pairs of a binarized
// file read through its map (BinarizedPairs, binarize.h), which training uses without a copy.
class PairSource {
 public:
  virtual ~PairSource() = default;
  virtual int64_t count() const = 0;
  virtual int64_t src_length(int64_t i) const = 0;
  virtual int64_t tgt_length(int64_t i) const = 0;
  // Write pair i's ids (no <s> or </s>) to out[0, src_length(i)) / out[0, tgt_length(i)).
  virtual void copy_src(int64_t i, int64_t* out) const = 0;
  virtual void copy_tgt(int64_t i, int64_t* out) const = 0;
};

// A shared, read-only set of pairs: a handle to a PairSource, cheap to copy. It reads like a
// std::vector<Example> whose elements are made on access (operator[] and range-for return copies
// of a pair's ids), and a std::vector<Example> converts to it (moved in, or copied from an lvalue:
// keep the Pairs to batch the same examples repeatedly).
class Pairs {
 public:
  Pairs();                               // no pairs
  Pairs(std::vector<Example> examples);  // NOLINT(google-explicit-constructor): in memory
  explicit Pairs(std::shared_ptr<const PairSource> source);

  size_t size() const { return static_cast<size_t>(source_->count()); }
  bool empty() const { return size() == 0; }
  Example operator[](size_t i) const;
  const PairSource& source() const { return *source_; }

  class const_iterator {
   public:
    using iterator_category = std::input_iterator_tag;
    using value_type = Example;
    using difference_type = std::ptrdiff_t;
    using pointer = void;
    using reference = Example;
    const_iterator(const Pairs* pairs, size_t i) : pairs_(pairs), i_(i) {}
    Example operator*() const { return (*pairs_)[i_]; }
    const_iterator& operator++() {
      ++i_;
      return *this;
    }
    bool operator==(const const_iterator& o) const { return i_ == o.i_; }
    bool operator!=(const const_iterator& o) const { return i_ != o.i_; }

   private:
    const Pairs* pairs_;
    size_t i_;
  };
  const_iterator begin() const { return {this, 0}; }
  const_iterator end() const { return {this, size()}; }

 private:
  std::shared_ptr<const PairSource> source_;
};

struct Batch {
  torch::Tensor src;             // [B, S] int64: tokens, </s>, then <pad>
  torch::Tensor tgt_in;          // [B, T] int64: <s>, tokens, then <pad> (decoder input, shifted right)
  torch::Tensor tgt_out;         // [B, T] int64: tokens, </s>, then <pad> (what the decoder predicts)
  std::vector<int64_t> indices;  // the example behind each row
  int64_t src_tokens = 0;        // non-pad entries of src
  int64_t tgt_tokens = 0;        // non-pad entries of tgt_out: the tokens the loss counts

  int64_t size() const { return static_cast<int64_t>(indices.size()); }
  Batch to(const torch::Device& device) const;
};

// Pads pairs[indices] into one batch, on the CPU. Only these pairs' ids are read.
Batch make_batch(const Pairs& pairs, const std::vector<int64_t>& indices);

// The padded size of one side of a batch: sentences × (longest sentence + 1).
int64_t padded_tokens(int64_t sentences, int64_t longest);

// Evaluation batches: every pair once, sorted by length for little padding, never shuffled.
// Batch rows map back to the input order through Batch::indices. Throws ConfigError when one pair
// alone is over max_tokens.
std::vector<std::vector<int64_t>> eval_batches(const Pairs& pairs, int64_t max_tokens);

struct BatchPosition {
  int64_t epoch = 0;
  int64_t index = 0;  // the next batch of that epoch to be served
  bool operator==(const BatchPosition& o) const { return epoch == o.epoch && index == o.index; }
};

class BatchIterator {
 public:
  // Reads every pair's lengths once (ids stay where they are until a batch needs them).
  // Throws ConfigError when max_tokens < 2 or a pair alone needs more than max_tokens.
  BatchIterator(Pairs pairs, int64_t max_tokens, uint64_t seed);

  // The next batch; after the last batch of an epoch comes the first of the next epoch.
  Batch next();
  // Moves past the next batch without reading it (the batch another process of a data-parallel run
  // takes: every process plans the same epochs).
  void skip();
  // One process's share of the next update of `processes` × `per_process` batches: those whose index
  // in the update is `rank` modulo `processes`; the others are skipped. Calling it once per update on
  // every process hands out each batch exactly once, and the position stays the same everywhere.
  std::vector<Batch> next_share(int64_t per_process, int64_t processes, int64_t rank);

  BatchPosition position() const { return {epoch_, index_}; }
  // Continues from a saved position: the next call to next() returns the batch that followed it.
  // Throws std::invalid_argument for a position this data cannot have.
  void restore(const BatchPosition& position);

  int64_t epoch() const { return epoch_; }
  int64_t batches_in_epoch() const { return static_cast<int64_t>(plan_.size()); }
  // The current epoch's batches, as pair indices, in serving order.
  const std::vector<std::vector<int64_t>>& plan() const { return plan_; }
  const Pairs& pairs() const { return pairs_; }

 private:
  void plan_epoch(int64_t epoch);

  Pairs pairs_;
  std::vector<int32_t> src_length_, tgt_length_;  // of every pair, read once: plans sort by them
  int64_t max_tokens_;
  uint64_t seed_;
  int64_t epoch_ = 0;
  int64_t index_ = 0;
  std::vector<std::vector<int64_t>> plan_;
};

}  // namespace qkv
