// Batches by token count (Vaswani et al. 2017, §5.1: "sentence pairs were batched together by
// approximate sequence length"). Each epoch the examples are shuffled from (seed, epoch), sorted by
// length (the shuffle breaks ties, so equal-length sentences meet different neighbours each epoch),
// cut greedily into batches whose padded size stays within max_tokens on each side, and the batches
// themselves are shuffled. Every example appears exactly once per epoch, and the iterator's
// position {epoch, index} is all it takes to resume exactly where a run stopped.
//
// Dimension legend: B = sentences in the batch, S = source length + 1 (</s>), T = target length + 1
// (<s> in front of the decoder input, </s> after the decoder output).
#pragma once

#include <cstdint>
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

// Pads examples[indices] into one batch, on the CPU.
Batch make_batch(const std::vector<Example>& examples, const std::vector<int64_t>& indices);

// The padded size of one side of a batch: sentences × (longest sentence + 1).
int64_t padded_tokens(int64_t sentences, int64_t longest);

// Cuts `order` (example indices, already in the order wanted) greedily into consecutive batches
// whose padded size is at most max_tokens on each side. Throws ConfigError when one example alone
// is over the limit.
std::vector<std::vector<int64_t>> pack_batches(const std::vector<Example>& examples,
                                               const std::vector<int64_t>& order, int64_t max_tokens);

// Evaluation batches: every example once, sorted by length for little padding, never shuffled.
// Batch rows map back to the input order through Batch::indices.
std::vector<std::vector<int64_t>> eval_batches(const std::vector<Example>& examples, int64_t max_tokens);

struct BatchPosition {
  int64_t epoch = 0;
  int64_t index = 0;  // the next batch of that epoch to be served
  bool operator==(const BatchPosition& o) const { return epoch == o.epoch && index == o.index; }
};

class BatchIterator {
 public:
  // Throws ConfigError when max_tokens < 2 or an example alone needs more than max_tokens.
  BatchIterator(std::vector<Example> examples, int64_t max_tokens, uint64_t seed);

  // The next batch; after the last batch of an epoch comes the first of the next epoch.
  Batch next();

  BatchPosition position() const { return {epoch_, index_}; }
  // Continues from a saved position: the next call to next() returns the batch that followed it.
  // Throws std::invalid_argument for a position this data cannot have.
  void restore(const BatchPosition& position);

  int64_t epoch() const { return epoch_; }
  int64_t batches_in_epoch() const { return static_cast<int64_t>(plan_.size()); }
  // The current epoch's batches, as example indices, in serving order.
  const std::vector<std::vector<int64_t>>& plan() const { return plan_; }
  const std::vector<Example>& examples() const { return examples_; }

 private:
  void plan_epoch(int64_t epoch);

  std::vector<Example> examples_;
  int64_t max_tokens_;
  uint64_t seed_;
  int64_t epoch_ = 0;
  int64_t index_ = 0;
  std::vector<std::vector<int64_t>> plan_;
};

}  // namespace qkv
