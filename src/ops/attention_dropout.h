// Attention dropout that any block of the probability matrix can regenerate on its own.
//
// Whether probability (n, i, j) is kept is a pure function of (seed, n, i, j): a counter-based hash
// (MurmurHash3's 32-bit finaliser on the row and key indices, combined per entry by half a
// finaliser; multipliers below 2^31 so that every product fits in int64). On the CPU, in float32 or
// float64, a loop computes it in 32-bit integers (vectorised with AVX2 where the CPU has it); on
// other devices and dtypes, int64 tensor ops do, with the same result bit for bit. The forward pass draws one
// seed; backward, and the memory-efficient implementation's per-block recomputation, rebuild exactly the same
// mask from it, so no [N, Tq, Tk] mask is ever stored.
//
// Dimensions: N = batch·heads, i = query row, j = key.
#pragma once

#include <cstdint>

#include <torch/types.h>

namespace qkv::detail {

// The scaled keep mask of the block heads [n0, n1) × rows [i0, i1) × keys [j0, j1): 1/(1-p) where a
// probability is kept, 0 where it is dropped; [n1-n0, i1-i0, j1-j0] with the given dtype and device.
torch::Tensor dropout_keep(int64_t seed, double p, int64_t n0, int64_t n1, int64_t i0, int64_t i1, int64_t j0,
                           int64_t j1, const torch::TensorOptions& options);

// The same mask by int64 tensor operations on any device (the path of CUDA tensors and of dtypes
// other than float32 and float64): exposed so that tests can hold the CPU loop to it.
torch::Tensor dropout_keep_by_tensor_ops(int64_t seed, double p, int64_t n0, int64_t n1, int64_t i0,
                                         int64_t i1, int64_t j0, int64_t j1,
                                         const torch::TensorOptions& options);

}  // namespace qkv::detail
