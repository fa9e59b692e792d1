// The fixed batch of the training benchmarks (qkv bench train, qkv bench ddp): B pairs of exactly S
// source and T target tokens (ids 4..V-1, so no specials and no padding), the same every step, so that
// every side of a comparison does exactly the same arithmetic.
#pragma once

#include <cstdint>

#include "data/batching.h"

namespace qkv::cli {

Batch synthetic_batch(int64_t batch, int64_t src_len, int64_t tgt_len, int64_t vocab);

}  // namespace qkv::cli
