// Counter-based attention dropout mask: see attention_dropout.h.
#include "ops/attention_dropout.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

#include <torch/torch.h>

#include "ops/cpu_features.h"

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

// The two hashed halves of a block's entries: per head and row [n, bq], per key [bk] (int64 tensors
// holding 32-bit values, on the options' device). Rows and keys are hashed separately, each fully
// mixed: per head, then per row within it; per key, salted by the seed. An entry combines the two with
// half a finaliser (entry_hash, below). Fewer steps leave visible structure: with xor and one multiply
// (with or without the shift) the keep decisions of two rows, whose row hashes differ by a fixed d,
// correlate up to 0.6 (test_attention's KeepMaskHasNoRowOrKeyStructure). A full finaliser per entry
// costs five times as much, more than the attention it masks.
std::pair<torch::Tensor, torch::Tensor> row_and_key_hashes(int64_t seed, int64_t n0, int64_t n1, int64_t i0,
                                                           int64_t i1, int64_t j0, int64_t j1,
                                                           const torch::TensorOptions& options) {
  const auto ints = options.dtype(torch::kLong);
  const int64_t seed_low = seed & kLow32;
  const int64_t seed_high = (seed >> 32) & kLow32;
  auto h = mix32_(torch::arange(n0, n1, ints).add_(seed_high).bitwise_and_(kLow32));  // [n]
  auto rows = torch::arange(i0, i1, ints).mul_(int64_t{0x2545f491});                  // [bq]
  h = mix32_(h.bitwise_xor_(seed_low).unsqueeze(1).add(rows).bitwise_and_(kLow32));   // [n, bq]
  auto keys = torch::arange(j0, j1, ints).mul_(int64_t{0x2545f491}).add_(seed_low + 1);
  keys = mix32_(keys.bitwise_and_(kLow32));  // [bk]
  return {h, keys};
}

// Keep with probability 1 - p: an entry's hash, uniform on [0, 2^32), at or above this.
int64_t keep_threshold(double p) {
  return static_cast<int64_t>(std::llround(p * 4294967296.0));
}

// One entry's hash from its row's and its key's, in uint32 arithmetic (products wrap mod 2^32, as the
// int64 tensor path's masks to the low 32 bits).
inline uint32_t entry_hash(uint32_t row, uint32_t key) {
  uint32_t e = (row ^ key) * 0x7feb352du;
  e ^= e >> 15;
  return e * 0x5bd1e995u;
}

// out[j] = scale where entry (row, key j) is kept, 0 where dropped, j in [0, count). Plain code that
// the compiler vectorises for the instruction set of the function it is inlined into.
template <class T>
[[gnu::always_inline]] inline void keep_row(uint32_t row, const uint32_t* keys, int64_t count,
                                            uint64_t threshold, T scale, T* out) {
  for (int64_t j = 0; j < count; ++j) out[j] = entry_hash(row, keys[j]) >= threshold ? scale : T(0);
}

template <class T>
void keep_row_portable(uint32_t row, const uint32_t* keys, int64_t count, uint64_t threshold, T scale,
                       T* out) {
  keep_row(row, keys, count, threshold, scale, out);
}

#if QKV_X86_SIMD
// The same loop with AVX2's 8-lane 32-bit multiplies (SSE2 has none).
template <class T>
QKV_AVX2 void keep_row_avx2(uint32_t row, const uint32_t* keys, int64_t count, uint64_t threshold, T scale,
                            T* out) {
  keep_row(row, keys, count, threshold, scale, out);
}
#endif

// The CPU mask in float32 or float64: the hashes of rows and keys as above, entries in a loop.
template <class T>
torch::Tensor keep_on_cpu(int64_t seed, double p, int64_t n0, int64_t n1, int64_t i0, int64_t i1, int64_t j0,
                          int64_t j1, const torch::TensorOptions& options) {
  const auto [h, k] = row_and_key_hashes(seed, n0, n1, i0, i1, j0, j1, options.device(torch::kCPU));
  const auto rows = h.contiguous();  // [n, bq] int64 holding 32-bit values
  const int64_t* row_hash = rows.data_ptr<int64_t>();
  const int64_t bk = j1 - j0;
  std::vector<uint32_t> key_hash(static_cast<size_t>(bk));  // [bk], read by every row
  const auto keys = k.contiguous();
  std::copy(keys.data_ptr<int64_t>(), keys.data_ptr<int64_t>() + bk, key_hash.begin());
  auto out = torch::empty({n1 - n0, i1 - i0, bk}, options);
  T* o = out.data_ptr<T>();
  const auto threshold = static_cast<uint64_t>(keep_threshold(p));
  const T scale = static_cast<T>(1.0 / (1.0 - p));
#if QKV_X86_SIMD
  const auto row_loop = cpu_simd() >= Simd::Avx2 ? keep_row_avx2<T> : keep_row_portable<T>;
#else
  const auto row_loop = keep_row_portable<T>;
#endif
  // At least 4096 entries per task: enough to pay for a thread.
  const int64_t grain = std::max<int64_t>(1, 4096 / std::max<int64_t>(1, bk));
  at::parallel_for(0, rows.numel(), grain, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      row_loop(static_cast<uint32_t>(row_hash[r]), key_hash.data(), bk, threshold, scale, o + r * bk);
    }
  });
  return out;
}

}  // namespace

torch::Tensor dropout_keep_by_tensor_ops(int64_t seed, double p, int64_t n0, int64_t n1, int64_t i0,
                                         int64_t i1, int64_t j0, int64_t j1,
                                         const torch::TensorOptions& options) {
  const auto [h, keys] = row_and_key_hashes(seed, n0, n1, i0, i1, j0, j1, options);
  // entry_hash on [n, bq, bk]: xor, multiply, xor-shift, multiply, each product masked to 32 bits.
  auto entry = h.unsqueeze(2).bitwise_xor(keys);  // [n, bq, bk]
  entry.mul_(int64_t{0x7feb352d}).bitwise_and_(kLow32);
  entry.bitwise_xor_(entry.bitwise_right_shift(15));
  entry.mul_(int64_t{0x5bd1e995}).bitwise_and_(kLow32);  // uniform on [0, 2^32)
  return entry.ge(keep_threshold(p)).to(options.dtype()).mul_(1.0 / (1.0 - p));
}

torch::Tensor dropout_keep(int64_t seed, double p, int64_t n0, int64_t n1, int64_t i0, int64_t i1, int64_t j0,
                           int64_t j1, const torch::TensorOptions& options) {
  if (options.device().is_cpu()) {
    if (options.dtype() == torch::kFloat) return keep_on_cpu<float>(seed, p, n0, n1, i0, i1, j0, j1, options);
    if (options.dtype() == torch::kDouble)
      return keep_on_cpu<double>(seed, p, n0, n1, i0, i1, j0, j1, options);
  }
  return dropout_keep_by_tensor_ops(seed, p, n0, n1, i0, i1, j0, j1, options);
}

}  // namespace qkv::detail
