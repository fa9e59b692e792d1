// Scaled dot-product attention (Vaswani et al. 2017, §3.2.1): softmax(Q Kᵀ · scale + mask) V.
//
// One entry point, three implementations (AttentionKind, base/config.h):
//   Standard         saves the probabilities P; hand-written backward.
//   MemoryEfficient  blocked over keys with an online softmax; saves Q, K, V, O and the per-row
//                    log-sum-exp only (O(T) extra memory), recomputes P block by block in backward.
//   Reference        libtorch's composite ops under autograd, for comparison only.
// All three are reached through the dispatcher operator `qkv::attention` (see attention_op.cpp), so
// C++, TorchScript and Python (torch.ops.qkv.attention) share one implementation. The operator's
// schema names the implementation with a string ("standard", "memory_efficient", "reference": the
// spellings of base/enums.h); C++ callers pass the enum.
//
// Dtypes: float32 and float64 everywhere; bfloat16 on the CPU and CUDA, float16 on CUDA. With the
// low-precision dtypes the per-head matrix products take bfloat16/float16 operands (on the CPU
// through oneDNN's gemm_bf16bf16f32, ops/gemm.h) and accumulate in float32; the scores, the softmax
// and its running maximum and sum, and every accumulator stay float32; the output and the gradients
// come back in the inputs' dtype.
//
// Dimensions: B = batch, H = heads, Tq = query length, Tk = key length, Dk = query/key width,
// Dv = value width.
#pragma once

#include <optional>

#include <torch/types.h>

#include "base/config.h"

namespace qkv {

struct AttentionOptions {
  torch::Tensor key_padding_mask;  // [B, Tk] bool, true = padding; undefined = none
  bool causal = false;             // query i sees keys <= i + (Tk - Tq) (aligned to the end)
  std::optional<double> scale;     // default 1/sqrt(Dk)
  double dropout_p = 0.0;          // on the probabilities; pass 0 in evaluation
  AttentionKind impl = AttentionKind::Standard;
};

// q [B, H, Tq, Dk], k [B, H, Tk, Dk], v [B, H, Tk, Dv] -> [B, H, Tq, Dv].
// A query row whose keys are all masked yields zeros (and zero gradients), never NaN.
torch::Tensor attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                        const AttentionOptions& options = {});

// The probabilities softmax(Q Kᵀ · scale + mask) without dropout, [B, H, Tq, Tk] in q's dtype, for
// pictures and tests. Not differentiable through the hand-written path.
torch::Tensor attention_probabilities(const torch::Tensor& q, const torch::Tensor& k,
                                      const torch::Tensor& key_padding_mask, bool causal,
                                      std::optional<double> scale = std::nullopt);

}  // namespace qkv
