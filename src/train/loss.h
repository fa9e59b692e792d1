// Label-smoothed cross entropy (Vaswani et al. 2017, §5.4; Szegedy et al. 2016) over the non-padding
// target tokens, with the unsmoothed negative log-likelihood reported beside it.
//
// Convention (tensor2tensor's and fairseq's): the target distribution puts 1 − ε on the reference
// token y and spreads ε evenly over the other V − 1 classes (padding included), so for one token
//   loss = −(1 − ε) · log p_y − ε/(V−1) · Σ_{v≠y} log p_v.
// With ε = 0 it is the NLL. The smoothed loss is what the optimizer sees; the NLL (and perplexity
// exp(NLL per token)) is what runs and papers compare, since the smoothing term depends on V.
//
// Forward and backward are one autograd Function: the gradient with respect to the logits is
// p − q (softmax minus the target distribution) on each non-padding row, so backward needs only the
// saved log-probabilities and makes one [N, V] tensor.
//
// Dimensions: B = batch, T = target length, N = B·T tokens, V = vocabulary.
#pragma once

#include <torch/types.h>

namespace qkv {

struct LossResult {
  torch::Tensor loss;  // scalar, differentiable: the smoothed loss summed over non-padding tokens
  torch::Tensor nll;   // scalar, detached: −Σ log p_y over non-padding tokens
  int64_t tokens = 0;  // number of non-padding target tokens
};

// logits [B, T, V] (or [N, V]), target [B, T] (or [N]) with `pad` marking positions to ignore.
LossResult label_smoothed_cross_entropy(const torch::Tensor& logits, const torch::Tensor& target,
                                        double epsilon, int64_t pad);

// Token accuracy: argmax(logits) == target over non-padding positions, as a fraction in [0, 1].
double token_accuracy(const torch::Tensor& logits, const torch::Tensor& target, int64_t pad);

}  // namespace qkv
