// The pieces every attention implementation shares: input checks and the flattened Problem, with its
// padding mask summarised for the tiled implementations to skip padded keys.
//
// Dimensions: B = batch, H = heads, N = B·H, Tq, Tk = query and key lengths, Dk, Dv = widths.
#include <algorithm>
#include <cmath>
#include <limits>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <torch/torch.h>

#include "ops/attention_internal.h"

namespace qkv::detail {
namespace {

std::string shape(const torch::Tensor& t) {
  return fmt::format("{}", fmt::join(t.sizes(), ", "));
}

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

// [B, H, T, D] -> [N, T, D]. The products take any matrix whose rows are contiguous (batched_gemm), so
// a view with spaced rows is used as it is: a decoding cache's time-major keys (model/kv_cache.h)
// would otherwise be copied at every step. Anything else is made contiguous.
torch::Tensor flatten_heads(const torch::Tensor& x, int64_t n) {
  auto flat = x.reshape({n, x.size(2), x.size(3)});  // a view whenever B and H merge
  const bool rows_contiguous = flat.size(2) <= 1 || flat.stride(2) == 1;
  return rows_contiguous && flat.stride(1) >= flat.size(2) ? flat : flat.contiguous();
}

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

int64_t Problem::padded_keys(int64_t n, int64_t j0, int64_t j1) const {
  if (pad_prefix.empty()) return 0;
  const auto* prefix = pad_prefix.data() + (n / heads) * (tk() + 1);
  return prefix[j1] - prefix[j0];
}

int64_t Problem::visible_end(int64_t n0, int64_t n1, int64_t row_end) const {
  const int64_t end = key_end(row_end);
  if (pad_end.empty() || n1 <= n0) return end;
  int64_t padded_from = 0;  // the latest end of the unpadded keys among the heads' batch entries
  for (int64_t b = n0 / heads; b <= (n1 - 1) / heads; ++b) padded_from = std::max(padded_from, pad_end[b]);
  return std::min(end, padded_from);
}

bool Problem::all_padded(int64_t n0, int64_t n1, int64_t j0, int64_t j1) const {
  if (pad_prefix.empty() || n1 <= n0) return false;
  for (int64_t b = n0 / heads; b <= (n1 - 1) / heads; ++b) {
    if (padded_keys(b * heads, j0, j1) < j1 - j0) return false;
  }
  return true;
}

namespace {

// Fills pr.pad_prefix and pr.pad_end from the mask [B, Tk] (read once, on the CPU).
void summarise_padding(const torch::Tensor& key_padding_mask, Problem& pr) {
  const auto mask = key_padding_mask.to(torch::kCPU).contiguous();  // [B, Tk] bool
  const int64_t batch = mask.size(0), tk = mask.size(1);
  const bool* padded = mask.data_ptr<bool>();
  pr.pad_prefix.assign(static_cast<size_t>(batch * (tk + 1)), 0);
  pr.pad_end.assign(static_cast<size_t>(batch), 0);
  for (int64_t b = 0; b < batch; ++b) {
    int64_t* prefix = pr.pad_prefix.data() + b * (tk + 1);
    for (int64_t j = 0; j < tk; ++j) {
      prefix[j + 1] = prefix[j] + (padded[b * tk + j] ? 1 : 0);
      if (!padded[b * tk + j]) pr.pad_end[b] = j + 1;
    }
  }
}

}  // namespace

Problem make_problem(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                     const torch::Tensor& key_padding_mask, bool causal, double scale, double dropout_p,
                     int64_t seed) {
  Problem pr;
  pr.batch = q.size(0);
  pr.heads = q.size(1);
  const int64_t n = pr.batch * pr.heads;
  pr.q = flatten_heads(q, n);  // [N, Tq, Dk]
  pr.k = flatten_heads(k, n);  // [N, Tk, Dk]
  pr.v = flatten_heads(v, n);  // [N, Tk, Dv]
  if (key_padding_mask.defined()) {
    pr.pad_bias = torch::zeros({pr.batch, 1, 1, k.size(2)}, pr.acc())
                      .masked_fill_(key_padding_mask.view({pr.batch, 1, 1, -1}), kNegInf)
                      .expand({pr.batch, pr.heads, 1, k.size(2)})
                      .reshape({n, 1, k.size(2)});  // [N, 1, Tk]
  }
  if (key_padding_mask.defined()) summarise_padding(key_padding_mask, pr);
  pr.causal = causal;
  pr.offset = k.size(2) - q.size(2);
  pr.scale = scale;
  pr.dropout_p = dropout_p;
  pr.seed = seed;
  return pr;
}

}  // namespace qkv::detail
