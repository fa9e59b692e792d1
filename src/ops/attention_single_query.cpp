// Attention for one query row per head (attention_internal.h): the decoder's step in incremental
// decoding, where every head has a single query against its cached keys. The tiled kernels would make
// two matrix-vector products per head (2·N library calls for N = B·H heads, each a few hundred flops);
// here one loop per head does the whole of it from registers:
//   s_j = scale·q·k_j + bias_j,  m = max_j s_j,  e_j = exp(s_j − m),  o = (Σ_j e_j v_j) / Σ_j e_j
// and the heads are shared out over the ATen threads. A head that sees no key gets o = 0, as in the
// tiled kernels.
//
// Dimensions: N = batch·heads, Tk = keys, Dk, Dv = widths. Q [N, 1, Dk]; K [N, Tk, Dk] and
// V [N, Tk, Dv] with contiguous rows at any spacing (a decoding cache's time-major views).
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include "ops/attention_internal.h"
#include "ops/cpu_features.h"
#include "ops/simd_lanes.h"

namespace qkv::detail {
namespace {

// The rows of K or V of one head, each contiguous (make_problem keeps them so), `stride` apart.
struct Rows {
  const float* data;
  int64_t stride;  // between consecutive keys
};

float dot_generic(const float* a, const float* b, int64_t count) {
  float sum = 0.0f;
  for (int64_t d = 0; d < count; ++d) sum += a[d] * b[d];
  return sum;
}

void axpy_generic(float alpha, const float* x, float* y, int64_t count) {
  for (int64_t d = 0; d < count; ++d) y[d] += alpha * x[d];
}

#define QKV_SIMD_FILE "ops/attention_single_query_simd.inc"
#include "ops/simd_each_width.h"

// One head: o [Dv] from q [Dk], keys and values [Tk rows], bias [Tk] (null without padding), using
// `scores` [Tk] as scratch.
template <class Dot, class Axpy>
void attend_one(const float* q, Rows k, Rows v, const float* bias, int64_t tk, int64_t dk, int64_t dv,
                float scale, float* scores, float* o, Dot dot, Axpy axpy) {
  float m = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < tk; ++j) {
    scores[j] = scale * dot(q, k.data + j * k.stride, dk) + (bias != nullptr ? bias[j] : 0.0f);
    m = std::max(m, scores[j]);
  }
  std::fill(o, o + dv, 0.0f);
  if (m == -std::numeric_limits<float>::infinity()) return;  // no visible key: o = 0
  float sum = 0.0f;
  for (int64_t j = 0; j < tk; ++j) {
    const float e = std::exp(scores[j] - m);  // exp(-inf) = 0 for a padded key
    sum += e;
    if (e != 0.0f) axpy(e, v.data + j * v.stride, o, dv);
  }
  const float inverse = 1.0f / sum;  // sum >= 1: the maximum contributes exp(0)
  for (int64_t d = 0; d < dv; ++d) o[d] *= inverse;
}

}  // namespace

bool single_query_applies(const Problem& pr) {
  // Causal or not, a single query aligned to the end of the keys sees every key: only padding hides.
  return pr.q.is_cpu() && pr.dtype() == torch::kFloat && pr.tq() == 1 && pr.dropout_p == 0.0;
}

torch::Tensor single_query_forward(const Problem& pr) {
  const int64_t n = pr.n(), tk = pr.tk(), dk = pr.q.size(2), dv = pr.v.size(2);
  auto out = torch::empty({n, 1, dv}, pr.q.options());  // [N, 1, Dv]
  const float* q = pr.q.data_ptr<float>();
  const float* k = pr.k.data_ptr<float>();
  const float* v = pr.v.data_ptr<float>();
  const auto pad_bias = pr.pad_bias.defined() ? pr.pad_bias.contiguous() : pr.pad_bias;  // [N, 1, Tk]
  const float* bias = pad_bias.defined() ? pad_bias.data_ptr<float>() : nullptr;
  float* o = out.data_ptr<float>();
  const float scale = static_cast<float>(pr.scale);
  // A head costs about Tk·(Dk + Dv) multiply-adds: enough heads per task to pay for a thread.
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(1, tk * (dk + dv)));
  auto run = [&](auto dot, auto axpy) {
    at::parallel_for(0, n, grain, [&](int64_t begin, int64_t end) {
      std::vector<float> scores(static_cast<size_t>(tk));
      for (int64_t h = begin; h < end; ++h) {
        const Rows kh{k + h * pr.k.stride(0), pr.k.stride(1)}, vh{v + h * pr.v.stride(0), pr.v.stride(1)};
        const float* bh = bias != nullptr && pr.padded_keys(h, 0, tk) > 0 ? bias + h * tk : nullptr;
        attend_one(q + h * pr.q.stride(0), kh, vh, bh, tk, dk, dv, scale, scores.data(), o + h * dv, dot,
                   axpy);
      }
    });
  };
  switch (cpu_simd()) {
#if QKV_X86_SIMD
    case Simd::Avx512:
      run(avx512::HeadLoops::dot, avx512::HeadLoops::axpy);
      break;
    case Simd::Avx2:
      run(avx2::HeadLoops::dot, avx2::HeadLoops::axpy);
      break;
#endif
    default:
      run(dot_generic, axpy_generic);
  }
  return out;
}

}  // namespace qkv::detail
