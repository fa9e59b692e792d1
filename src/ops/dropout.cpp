// Counter-based dropout: see dropout.h.
//
// The keep decision of element e under seed s: h = fmix(fmix(lo(e)·c ⊕ lo(s)) ⊕ hi(e) ⊕ hi(s)),
// kept when h >= round(p·2^32), with fmix MurmurHash3's 32-bit finaliser (xor-shifts and two
// multiplies, a bijection with full avalanche) and lo, hi the two 32-bit halves. Two finalisers make
// neighbouring indices, which differ in a few low bits, independent-looking; the high half keeps
// tensors past 2^32 elements from repeating. The multipliers are odd and below 2^31, so that the
// generic path below can run the same arithmetic in int64 tensors without overflow.
//
// Two implementations of the one function: a vector loop for float32 on the CPU (AVX-512 or AVX2,
// whichever the CPU has), and libtorch integer tensor ops elsewhere (other dtypes, CUDA, older CPUs).
// Both give the same mask.
#include "ops/dropout.h"

#include <cmath>
#include <cstdint>

#include <ATen/Parallel.h>
#include <torch/autograd.h>
#include <torch/torch.h>

#include "ops/attention_internal.h"  // draw_dropout_seed
#include "ops/cpu_features.h"

namespace qkv {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

constexpr uint32_t kIndexMultiplier = 0x2545f491u;  // odd, < 2^31
constexpr uint32_t kMix1 = 0x7feb352du, kMix2 = 0x5bd1e995u;
constexpr int64_t kLow32 = 0xFFFFFFFFLL;

// round(p·2^32): an element is kept when its hash is at least this.
uint32_t drop_threshold(double p) {
  return static_cast<uint32_t>(std::min<int64_t>(std::llround(p * 4294967296.0), int64_t{0xFFFFFFFF}));
}

// --- the generic path: int64 tensors holding 32-bit values ------------------------------------------

torch::Tensor fmix_(torch::Tensor x) {
  x.bitwise_xor_(x.bitwise_right_shift(16));
  x.mul_(int64_t{kMix1}).bitwise_and_(kLow32);
  x.bitwise_xor_(x.bitwise_right_shift(15));
  x.mul_(int64_t{kMix2}).bitwise_and_(kLow32);
  x.bitwise_xor_(x.bitwise_right_shift(16));
  return x;
}

torch::Tensor generic_mask(int64_t seed, double p, int64_t first, int64_t count,
                           const torch::TensorOptions& options) {
  const auto e = torch::arange(first, first + count, options.dtype(torch::kLong));  // [count]
  auto h = e.bitwise_and(kLow32).mul_(int64_t{kIndexMultiplier}).bitwise_and_(kLow32);
  h = fmix_(h.bitwise_xor_(seed & kLow32));
  h = fmix_(h.bitwise_xor_(e.bitwise_right_shift(32)).bitwise_xor_((seed >> 32) & kLow32));
  return h.ge(static_cast<int64_t>(drop_threshold(p))).to(options.dtype()).mul_(1.0 / (1.0 - p));
}

// --- the AVX-512 path -------------------------------------------------------------------------------

#if QKV_X86_SIMD
QKV_BEGIN_VECTOR_CODE

QKV_AVX512 inline __m512i fmix16(__m512i x) {
  x = _mm512_xor_si512(x, _mm512_srli_epi32(x, 16));
  x = _mm512_mullo_epi32(x, _mm512_set1_epi32(static_cast<int>(kMix1)));
  x = _mm512_xor_si512(x, _mm512_srli_epi32(x, 15));
  x = _mm512_mullo_epi32(x, _mm512_set1_epi32(static_cast<int>(kMix2)));
  return _mm512_xor_si512(x, _mm512_srli_epi32(x, 16));
}

// out[i] = in[i]·scale where element first + i is kept, 0 where dropped, for i in [0, count).
QKV_AVX512 void dropout_avx512(const float* in, float* out, int64_t first, int64_t count, uint64_t seed,
                               uint32_t threshold, float scale) {
  const __m512i lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512i seed_lo = _mm512_set1_epi32(static_cast<int>(seed & kLow32));
  const __m512i seed_hi = _mm512_set1_epi32(static_cast<int>(seed >> 32));
  // Unsigned h >= threshold, compared as signed after flipping the sign bits.
  const __m512i flip = _mm512_set1_epi32(static_cast<int>(0x80000000u));
  const __m512i limit = _mm512_xor_si512(_mm512_set1_epi32(static_cast<int>(threshold)), flip);
  const __m512 factor = _mm512_set1_ps(scale);
  for (int64_t i = 0; i < count; i += 16) {
    const int64_t e = first + i;
    const __mmask16 k =
        count - i >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << (count - i)) - 1u);
    // The low halves of e .. e + 15 (wrapping at 2^32 like the generic path's bitwise_and) and the
    // high half of each, which changes inside a block only where the low half wraps.
    const __m512i lo = _mm512_add_epi32(_mm512_set1_epi32(static_cast<int>(e & kLow32)), lanes);
    __m512i hi = _mm512_set1_epi32(static_cast<int>(e >> 32));
    // A lane wrapped when its low half is below the block's first low half.
    const __mmask16 wrapped = _mm512_cmplt_epu32_mask(lo, _mm512_set1_epi32(static_cast<int>(e & kLow32)));
    hi = _mm512_mask_add_epi32(hi, wrapped, hi, _mm512_set1_epi32(1));
    __m512i h = _mm512_mullo_epi32(lo, _mm512_set1_epi32(static_cast<int>(kIndexMultiplier)));
    h = fmix16(_mm512_xor_si512(h, seed_lo));
    h = fmix16(_mm512_xor_si512(_mm512_xor_si512(h, hi), seed_hi));
    const __mmask16 keep = _mm512_cmpge_epi32_mask(_mm512_xor_si512(h, flip), limit);
    const __m512 x = _mm512_maskz_loadu_ps(k, in + i);
    _mm512_mask_storeu_ps(out + i, k, _mm512_maskz_mul_ps(keep, x, factor));
  }
}

// The same loop in 8 lanes. AVX2 compares only signed integers, and has no compare-into-mask: the
// unsigned comparisons flip the sign bits as above, and a comparison's result is a vector of lanes
// that are all ones (true) or all zeros.
QKV_AVX2 inline __m256i fmix8(__m256i x) {
  x = _mm256_xor_si256(x, _mm256_srli_epi32(x, 16));
  x = _mm256_mullo_epi32(x, _mm256_set1_epi32(static_cast<int>(kMix1)));
  x = _mm256_xor_si256(x, _mm256_srli_epi32(x, 15));
  x = _mm256_mullo_epi32(x, _mm256_set1_epi32(static_cast<int>(kMix2)));
  return _mm256_xor_si256(x, _mm256_srli_epi32(x, 16));
}

QKV_AVX2 void dropout_avx2(const float* in, float* out, int64_t first, int64_t count, uint64_t seed,
                           uint32_t threshold, float scale) {
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i seed_lo = _mm256_set1_epi32(static_cast<int>(seed & kLow32));
  const __m256i seed_hi = _mm256_set1_epi32(static_cast<int>(seed >> 32));
  const __m256i flip = _mm256_set1_epi32(static_cast<int>(0x80000000u));
  const __m256i limit = _mm256_xor_si256(_mm256_set1_epi32(static_cast<int>(threshold)), flip);
  const __m256 factor = _mm256_set1_ps(scale);
  for (int64_t i = 0; i < count; i += 8) {
    const int64_t e = first + i;
    const __m256i base = _mm256_set1_epi32(static_cast<int>(e & kLow32));
    const __m256i lo = _mm256_add_epi32(base, lanes);
    // A lane wrapped when its low half is below the block's first (unsigned): its high half is one more
    // (subtracting the all-ones lanes adds 1).
    const __m256i wrapped = _mm256_cmpgt_epi32(_mm256_xor_si256(base, flip), _mm256_xor_si256(lo, flip));
    const __m256i hi = _mm256_sub_epi32(_mm256_set1_epi32(static_cast<int>(e >> 32)), wrapped);
    __m256i h = _mm256_mullo_epi32(lo, _mm256_set1_epi32(static_cast<int>(kIndexMultiplier)));
    h = fmix8(_mm256_xor_si256(h, seed_lo));
    h = fmix8(_mm256_xor_si256(_mm256_xor_si256(h, hi), seed_hi));
    // Dropped where h < threshold (unsigned); a dropped lane is 0 whatever x holds, as above.
    const __m256 dropped = _mm256_castsi256_ps(_mm256_cmpgt_epi32(limit, _mm256_xor_si256(h, flip)));
    if (count - i >= 8) {
      _mm256_storeu_ps(out + i, _mm256_andnot_ps(dropped, _mm256_mul_ps(_mm256_loadu_ps(in + i), factor)));
    } else {
      const int32_t rest = static_cast<int32_t>(count - i);
      const __m256i k = _mm256_cmpgt_epi32(_mm256_set1_epi32(rest), lanes);
      const __m256 x = _mm256_maskload_ps(in + i, k);
      _mm256_maskstore_ps(out + i, k, _mm256_andnot_ps(dropped, _mm256_mul_ps(x, factor)));
    }
  }
}

QKV_END_VECTOR_CODE
#endif

// x ∘ mask(seed, p), x of any shape, the mask over x's elements in row-major order.
torch::Tensor apply_mask(const torch::Tensor& x, int64_t seed, double p) {
  if (x.is_cpu() && x.scalar_type() == torch::kFloat) {
    const auto in = x.contiguous();
    auto out = torch::empty_like(in);
    const float* src = in.data_ptr<float>();
    float* dst = out.data_ptr<float>();
    // Every element hashes its own index, so any split over the threads gives the same mask.
    constexpr int64_t kGrain = int64_t{1} << 14;
    at::parallel_for(0, in.numel(), kGrain, [&](int64_t begin, int64_t end) {
      detail::dropout_float_range(src + begin, dst + begin, begin, end - begin, seed, p);
    });
    return out;
  }
  // The mask in float32 at least, so that 1/(1 - p) is not rounded to a low-precision dtype.
  const auto mask_dtype = c10::promoteTypes(x.scalar_type(), torch::kFloat);
  auto mask = detail::dropout_mask(seed, p, x.numel(), x.options().dtype(mask_dtype));
  return (x * mask.view(x.sizes())).to(x.scalar_type());
}

struct DropoutFunction : torch::autograd::Function<DropoutFunction> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, double p) {
    const int64_t seed = detail::draw_dropout_seed();
    ctx->saved_data["seed"] = seed;
    ctx->saved_data["p"] = p;
    return apply_mask(x, seed, p);
  }

  // y = x ∘ mask  →  dx = dy ∘ mask, the same mask rebuilt from the seed.
  static tensor_list backward(AutogradContext* ctx, tensor_list grad_outputs) {
    const int64_t seed = ctx->saved_data["seed"].toInt();
    const double p = ctx->saved_data["p"].toDouble();
    return {apply_mask(grad_outputs[0], seed, p), torch::Tensor()};
  }
};

}  // namespace

namespace detail {

torch::Tensor dropout_mask(int64_t seed, double p, int64_t count, const torch::TensorOptions& options,
                           int64_t first) {
  return generic_mask(seed, p, first, count, options);
}

void dropout_float_range(const float* in, float* out, int64_t first, int64_t count, int64_t seed, double p) {
#if QKV_X86_SIMD
  const Simd simd = cpu_simd();
  if (simd != Simd::None) {
    const auto loop = simd == Simd::Avx512 ? dropout_avx512 : dropout_avx2;
    loop(in, out, first, count, static_cast<uint64_t>(seed), drop_threshold(p),
         static_cast<float>(1.0 / (1.0 - p)));
    return;
  }
#endif
  const auto mask = generic_mask(seed, p, first, count, torch::kFloat);  // [count]
  const float* keep = mask.data_ptr<float>();
  for (int64_t i = 0; i < count; ++i) out[i] = in[i] * keep[i];
}

}  // namespace detail

torch::Tensor counter_dropout(const torch::Tensor& x, double p, bool training) {
  TORCH_CHECK(p >= 0.0 && p < 1.0, "dropout: the rate p = ", p, " must lie in [0, 1)");
  if (!training || p == 0.0) return x;
  return DropoutFunction::apply(x, p);
}

}  // namespace qkv
