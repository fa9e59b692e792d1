// Dropout (Srivastava et al. 2014; Vaswani et al. 2017, §5.4 "Residual Dropout") in one pass, with a
// keep mask that is a pure function of (seed, element index).
//
// libtorch's dropout draws one Bernoulli sample per element from the shared generator, one at a
// time, and saves the mask for backward. Here the forward pass draws a single seed from the default
// generator (so torch::manual_seed and a checkpoint's saved generator state make it reproducible),
// hashes every element's index with it, and backward rebuilds the same mask from the seed: nothing
// but the seed is saved, and the work is a few integer operations per element, vectorised.
#pragma once

#include <torch/types.h>

namespace qkv {

// x with each element kept with probability 1 - p and scaled by 1/(1 - p), or zeroed; x itself when
// `training` is false or p is 0. Differentiable. p must lie in [0, 1).
torch::Tensor counter_dropout(const torch::Tensor& x, double p, bool training);

namespace detail {

// The scaled keep mask of elements [first, first + count) for `seed` and `p`: 1/(1 - p) where kept,
// 0 where dropped, as `count` values of the given dtype and device (what dropout multiplies by).
torch::Tensor dropout_mask(int64_t seed, double p, int64_t count, const torch::TensorOptions& options,
                           int64_t first = 0);

// out = in ∘ mask for `count` float32 values that are elements [first, first + count) of a tensor:
// one thread's share of dropout, in the widest vector loop the CPU has (cpu_simd()), else through
// dropout_mask. The index `first` is what lets the tests reach elements past 2^32.
void dropout_float_range(const float* in, float* out, int64_t first, int64_t count, int64_t seed, double p);

}  // namespace detail
}  // namespace qkv
