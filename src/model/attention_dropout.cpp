// Counter-based attention dropout mask: see attention_dropout.h.
#include "model/attention_dropout.h"

#include <cmath>

#include <torch/torch.h>

namespace qkv::detail {
namespace {

constexpr int64_t kLow32 = 0xFFFFFFFFLL;

// MurmurHash3's 32-bit finaliser, on int64 tensors that hold 32-bit values. The multipliers are odd
// and below 2^31 (0x7feb352d from Wellons' "lowbias32", 0x5bd1e995 from MurmurHash2), so a product
// stays below 2^63: no signed overflow, on any device.
torch::Tensor mix32_(torch::Tensor x) {
  x.bitwise_xor_(x.bitwise_right_shift(16));
  x.mul_(int64_t{0x7feb352d}).bitwise_and_(kLow32);
  x.bitwise_xor_(x.bitwise_right_shift(15));
  x.mul_(int64_t{0x5bd1e995}).bitwise_and_(kLow32);
  x.bitwise_xor_(x.bitwise_right_shift(16));
  return x;
}

}  // namespace

torch::Tensor dropout_keep(int64_t seed, double p, int64_t n0, int64_t n1, int64_t i0, int64_t i1, int64_t j0,
                           int64_t j1, const torch::TensorOptions& options) {
  const auto ints = options.dtype(torch::kLong);
  const int64_t seed_low = seed & kLow32;
  const int64_t seed_high = (seed >> 32) & kLow32;
  // One 32-bit stream per head, then per row, then per key: each level mixes the previous hash
  // with its own index (masked to 32 bits first), so two positions share a hash only by chance.
  auto h = mix32_(torch::arange(n0, n1, ints).add_(seed_high).bitwise_and_(kLow32));  // [n]
  auto rows = torch::arange(i0, i1, ints).mul_(int64_t{0x2545f491});                  // [bq]
  h = mix32_(h.bitwise_xor_(seed_low).unsqueeze(1).add(rows).bitwise_and_(kLow32));   // [n, bq]
  h = mix32_(h.unsqueeze(2).bitwise_xor(torch::arange(j0, j1, ints)));                // [n, bq, bk]
  // Keep with probability 1 - p: the hash is uniform on [0, 2^32).
  const auto threshold = static_cast<int64_t>(std::llround(p * 4294967296.0));
  return h.ge(threshold).to(options.dtype()).mul_(1.0 / (1.0 - p));
}

}  // namespace qkv::detail
