// The machinery greedy and beam search share (decoding.h): source preparation (truncation, output
// length limits), one decoding step with or without the incremental caches, the length rules applied
// to each step's log-probabilities, and a guard that puts the model in evaluation mode.
//
// Dimensions: B = batch (sentences), N = rows being decoded (sentences × beams), S = source length,
// t = tokens produced so far, C = d_model, V = target vocabulary.
#pragma once

#include "model/decoding.h"
#include "ops/gemm.h"

namespace qkv::decoding {

// Evaluation mode, no autograd and fixed weights (transposed copies for the few-row products) for the
// guard's lifetime; the model's mode is restored afterwards.
class EvalGuard {
 public:
  explicit EvalGuard(Transformer& model) : model_(model), was_training_(model->is_training()) {
    model_->eval();
  }
  ~EvalGuard() { model_->train(was_training_); }
  EvalGuard(const EvalGuard&) = delete;
  EvalGuard& operator=(const EvalGuard&) = delete;

 private:
  Transformer& model_;
  bool was_training_;
  torch::NoGradGuard no_grad_;
  FixedWeightsScope fixed_weights_;  // the weights stay as they are while decoding (ops/gemm.h)
};

struct PreparedSource {
  torch::Tensor src;     // [B, S'] with S' <= model.max_len, on the model's device
  torch::Tensor limits;  // [B] int64: the most tokens each output may hold before </s> is forced
};

// Truncates over-long sources (warning on stderr) and computes min(floor(a·|x| + b), max_len - 1).
PreparedSource prepare_source(const Transformer& model, const torch::Tensor& src,
                              const SearchOptions& options);

// One step over N = G·B rows decoding from B sources, G consecutive rows per source (the hypotheses of
// a sentence in beam search; G = 1 in greedy search). `history` [N, t + 1] (CPU, int64) holds <s> and
// the tokens so far; log_probs returns the next token's log-probabilities [N, V] with <pad> and <s>
// ruled out, scores the logits they come from (the same order, so the same argmax: greedy search
// needs no normalisation).
// Incrementally, only the newest token is fed and the caches carry the rest; otherwise the whole
// prefix is recomputed. Either way the G rows of a source share its encoder output (never copied
// per row).
class Stepper {
 public:
  Stepper(Transformer& model, torch::Tensor memory, torch::Tensor src, bool incremental);
  torch::Tensor log_probs(const torch::Tensor& history);
  torch::Tensor scores(const torch::Tensor& history);
  // Keeps the rows named by `rows` [N'] and the sources named by `sources` [B'] (device tensors, both
  // in increasing order of source, N' = G·B'): beams reordered, finished sentences dropped.
  void select(const torch::Tensor& rows, const torch::Tensor& sources);

 private:
  torch::Tensor logits(const torch::Tensor& history);  // [N, V], before the rules above

  Transformer& model_;
  torch::Tensor memory_;  // [B, S, C]; dropped once the cross-attention caches hold its keys/values
  torch::Tensor src_;     // [B, S], for the source padding mask
  bool incremental_;
  DecoderState state_;
};

// The length rules, in place on lp [N, V] at step t: </s> is ruled out while t < min_len, and
// everything but </s> is ruled out in rows whose limit [N] is reached (t >= limit). lp may be
// log-probabilities or the logits they come from.
void apply_length_rules_(torch::Tensor& lp, int64_t t, const torch::Tensor& limits, int64_t min_len);

}  // namespace qkv::decoding
