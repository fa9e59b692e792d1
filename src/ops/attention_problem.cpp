// The pieces every attention implementation shares: input checks, the flattened Problem, the
// per-tile additive mask and scores, a NaN-free row softmax, and how the score matrix is tiled.
//
// Dimensions: B = batch, H = heads, N = B·H, Tq, Tk = query and key lengths, Dk, Dv = widths.
#include <algorithm>
#include <cmath>
#include <limits>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <torch/torch.h>

#include "ops/attention_internal.h"
#include "ops/gemm.h"

namespace qkv::detail {
namespace {

std::string shape(const torch::Tensor& t) {
  return fmt::format("{}", fmt::join(t.sizes(), ", "));
}

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

}  // namespace

void check_inputs(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                  const torch::Tensor& key_padding_mask, double dropout_p) {
  TORCH_CHECK(q.defined() && k.defined() && v.defined(),
              "qkv::attention: q, k and v must all be defined tensors");
  TORCH_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4,
              fmt::format("qkv::attention: q, k, v must be 4-D [B, H, T, D]; got q [{}], k [{}], v [{}]",
                          shape(q), shape(k), shape(v)));
  const auto dtype = q.scalar_type();
  TORCH_CHECK(
      dtype == torch::kFloat || dtype == torch::kDouble || dtype == torch::kBFloat16 || dtype == torch::kHalf,
      fmt::format("qkv::attention: q must be float32, float64, bfloat16 or float16, got {}",
                  c10::toString(dtype)));
  TORCH_CHECK(dtype != torch::kHalf || q.is_cuda(),
              "qkv::attention: float16 attention runs on CUDA only; use bfloat16 on the CPU");
  TORCH_CHECK(k.scalar_type() == q.scalar_type() && v.scalar_type() == q.scalar_type(),
              fmt::format("qkv::attention: q, k, v must share one dtype; got {}, {}, {}",
                          c10::toString(q.scalar_type()), c10::toString(k.scalar_type()),
                          c10::toString(v.scalar_type())));
  TORCH_CHECK(k.device() == q.device() && v.device() == q.device(),
              "qkv::attention: q, k, v must be on one device");
  const bool same_heads =
      k.size(0) == q.size(0) && v.size(0) == q.size(0) && k.size(1) == q.size(1) && v.size(1) == q.size(1);
  TORCH_CHECK(same_heads && k.size(3) == q.size(3) && v.size(2) == k.size(2),
              fmt::format("qkv::attention: expected q [B, H, Tq, Dk], k [B, H, Tk, Dk], "
                          "v [B, H, Tk, Dv]; got q [{}], k [{}], v [{}]",
                          shape(q), shape(k), shape(v)));
  if (key_padding_mask.defined()) {
    TORCH_CHECK(key_padding_mask.scalar_type() == torch::kBool,
                "qkv::attention: key_padding_mask must be bool (true = padding)");
    TORCH_CHECK(key_padding_mask.dim() == 2 && key_padding_mask.size(0) == q.size(0) &&
                    key_padding_mask.size(1) == k.size(2),
                fmt::format("qkv::attention: key_padding_mask must be [B, Tk] = [{}, {}], got [{}]",
                            q.size(0), k.size(2), shape(key_padding_mask)));
    TORCH_CHECK(key_padding_mask.device() == q.device(),
                "qkv::attention: key_padding_mask must be on the device of q");
  }
  TORCH_CHECK(dropout_p >= 0.0 && dropout_p < 1.0,
              fmt::format("qkv::attention: dropout_p must be in [0, 1), got {}", dropout_p));
}

double resolve_scale(c10::optional<double> scale, int64_t dk) {
  return scale.has_value() ? *scale : 1.0 / std::sqrt(static_cast<double>(std::max<int64_t>(dk, 1)));
}

int64_t draw_dropout_seed() {
  // A CPU draw from the default generator, whatever the device of the inputs.
  return torch::randint(int64_t{1} << 62, {1}, torch::kLong).item<int64_t>();
}

torch::TensorOptions Problem::acc() const {
  const bool low = dtype() == torch::kBFloat16 || dtype() == torch::kHalf;
  return q.options().dtype(low ? torch::kFloat : dtype());
}

int64_t Problem::key_end(int64_t row_end) const {
  return causal ? std::clamp<int64_t>(row_end + offset, 0, tk()) : tk();
}

Problem make_problem(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                     const torch::Tensor& key_padding_mask, bool causal, double scale, double dropout_p,
                     int64_t seed) {
  Problem pr;
  pr.batch = q.size(0);
  pr.heads = q.size(1);
  const int64_t n = pr.batch * pr.heads;
  pr.q = q.reshape({n, q.size(2), q.size(3)}).contiguous();  // [N, Tq, Dk]
  pr.k = k.reshape({n, k.size(2), k.size(3)}).contiguous();  // [N, Tk, Dk]
  pr.v = v.reshape({n, v.size(2), v.size(3)}).contiguous();  // [N, Tk, Dv]
  if (key_padding_mask.defined()) {
    pr.pad_bias = torch::zeros({pr.batch, 1, 1, k.size(2)}, pr.acc())
                      .masked_fill_(key_padding_mask.view({pr.batch, 1, 1, -1}), kNegInf)
                      .expand({pr.batch, pr.heads, 1, k.size(2)})
                      .reshape({n, 1, k.size(2)});  // [N, 1, Tk]
  }
  pr.causal = causal;
  pr.offset = k.size(2) - q.size(2);
  pr.scale = scale;
  pr.dropout_p = dropout_p;
  pr.seed = seed;
  return pr;
}

torch::Tensor tile_bias(const Problem& pr, int64_t n0, int64_t n1, int64_t i0, int64_t i1, int64_t j0,
                        int64_t j1) {
  torch::Tensor bias;
  if (pr.pad_bias.defined()) bias = pr.pad_bias.slice(0, n0, n1).slice(2, j0, j1);  // [n, 1, bk]
  // Causal: only a block that reaches past the first row's horizon hides anything.
  if (pr.causal && j1 - 1 > i0 + pr.offset) {
    const auto ints = pr.acc().dtype(torch::kLong);
    auto horizon = torch::arange(i0, i1, ints).add_(pr.offset).unsqueeze(1);  // [bq, 1]
    auto keys = torch::arange(j0, j1, ints).unsqueeze(0);                     // [1, bk]
    auto causal =
        torch::zeros({i1 - i0, j1 - j0}, pr.acc()).masked_fill_(keys.gt(horizon), kNegInf);  // [bq, bk]
    bias = bias.defined() ? bias + causal : causal;  // [n, bq, bk] or [bq, bk]
  }
  return bias;
}

void tile_scores(const Problem& pr, int64_t n0, int64_t n1, int64_t i0, int64_t i1, int64_t j0, int64_t j1,
                 torch::Tensor& out) {
  auto q = pr.q.slice(0, n0, n1).slice(1, i0, i1);  // [n, bq, Dk]
  auto k = pr.k.slice(0, n0, n1).slice(1, j0, j1);  // [n, bk, Dk]
  auto bias = tile_bias(pr, n0, n1, i0, i1, j0, j1);
  if (bias.defined()) {
    out.copy_(bias.expand({n1 - n0, i1 - i0, j1 - j0}));
    batched_gemm(false, true, q, k, out, pr.scale, 1.0);  // [n, bq, bk] = bias + scale·Q Kᵀ
  } else {
    batched_gemm(false, true, q, k, out, pr.scale);  // [n, bq, bk] = scale·Q Kᵀ
  }
}

void softmax_rows_(torch::Tensor& s) {
  // Subtracting the row maximum keeps exp() finite; a fully masked row has maximum -inf, which is
  // replaced by 0 so that the row becomes exp(-inf) = 0 everywhere instead of NaN.
  auto m = s.amax(-1, /*keepdim=*/true);  // [.., rows, 1]
  m.masked_fill_(m.isneginf(), 0.0);
  s.sub_(m).exp_();
  auto sum = s.sum(-1, /*keepdim=*/true);  // [.., rows, 1]
  s.mul_(sum.reciprocal().masked_fill_(sum.eq(0.0), 0.0));
}

TilePlan plan_tiles(const Problem& pr, bool all_keys) {
  // On the CPU a score tile of 2 MiB (one L2 cache's worth, well inside the shared L3) lets the
  // elementwise passes over it (mask, softmax, gradient) run from cache between the matrix
  // products, while keeping those products large enough for BLAS to run near its peak (0.5 to
  // 8 MiB measured within noise of each other; 32 MiB, i.e. no tiling, was slower). On a GPU a
  // kernel launch costs as much as a small tile's work: tiles there are as large as memory
  // comfortably allows, which for the usual sizes means a single tile.
  constexpr int64_t kCpuTileBytes = int64_t{2} << 20;
  constexpr int64_t kDeviceTileBytes = int64_t{256} << 20;
  constexpr int64_t kCpuKeyBlock = 256, kDeviceKeyBlock = 4096;
  const bool cpu = pr.q.is_cpu();
  const int64_t score_bytes = static_cast<int64_t>(c10::elementSize(pr.acc().dtype().toScalarType()));
  const int64_t elems = (cpu ? kCpuTileBytes : kDeviceTileBytes) / score_bytes;  // score tiles
  const int64_t tq = std::max<int64_t>(pr.tq(), 1), tk = std::max<int64_t>(pr.tk(), 1);
  TilePlan plan;
  plan.keys = all_keys ? tk : std::min<int64_t>(tk, cpu ? kCpuKeyBlock : kDeviceKeyBlock);
  // Whole heads when one fits (a contiguous tile), else one head and as many rows as fit.
  plan.rows = std::clamp<int64_t>(elems / plan.keys, std::min<int64_t>(tq, 16), tq);
  plan.heads =
      plan.rows == tq ? std::clamp<int64_t>(elems / (plan.keys * tq), 1, std::max<int64_t>(pr.n(), 1)) : 1;
  return plan;
}

}  // namespace qkv::detail
