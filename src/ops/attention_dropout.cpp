// Counter-based attention dropout mask: see attention_dropout.h.
#include "ops/attention_dropout.h"

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
  // Rows and keys are hashed separately, each fully mixed: per head, then per row within it ([n, bq]);
  // per key, salted by the seed ([bk]). An entry combines the two with half a finaliser: xor, multiply,
  // xor-shift, multiply. Fewer steps leave visible structure: with xor and one multiply (with or
  // without the shift) the keep decisions of two rows, whose row hashes differ by a fixed d,
  // correlate up to 0.6 (test_attention's KeepMaskHasNoRowOrKeyStructure). A full finaliser per entry
  // costs five times as much (64-bit shifts are not vectorised), more than the attention it masks.
  auto h = mix32_(torch::arange(n0, n1, ints).add_(seed_high).bitwise_and_(kLow32));  // [n]
  auto rows = torch::arange(i0, i1, ints).mul_(int64_t{0x2545f491});                  // [bq]
  h = mix32_(h.bitwise_xor_(seed_low).unsqueeze(1).add(rows).bitwise_and_(kLow32));   // [n, bq]
  auto keys = torch::arange(j0, j1, ints).mul_(int64_t{0x2545f491}).add_(seed_low + 1);
  keys = mix32_(keys.bitwise_and_(kLow32));       // [bk]
  auto entry = h.unsqueeze(2).bitwise_xor(keys);  // [n, bq, bk]
  entry.mul_(int64_t{0x7feb352d}).bitwise_and_(kLow32);
  entry.bitwise_xor_(entry.bitwise_right_shift(15));
  entry.mul_(int64_t{0x5bd1e995}).bitwise_and_(kLow32);  // uniform on [0, 2^32)
  // Keep with probability 1 - p.
  const auto threshold = static_cast<int64_t>(std::llround(p * 4294967296.0));
  return entry.ge(threshold).to(options.dtype()).mul_(1.0 / (1.0 - p));
}

}  // namespace qkv::detail
