// The sgemm rate of this machine: see sgemm_rate.h.
#include "sgemm_rate.h"

#include <algorithm>
#include <chrono>
#include <functional>
#include <vector>

#include <fmt/format.h>
#include <torch/torch.h>

#include "ops/gemm.h"

namespace qkv {
namespace {

constexpr int64_t kSize = 2048;

// GFLOP/s of `product` (one n×n×n product per call): median of `repetitions` timed calls after one
// untimed warm-up.
double rate(const std::function<void()>& product, int repetitions) {
  using Clock = std::chrono::steady_clock;
  product();
  std::vector<double> seconds;
  for (int r = 0; r < repetitions; ++r) {
    const auto start = Clock::now();
    product();
    seconds.push_back(std::chrono::duration<double>(Clock::now() - start).count());
  }
  std::sort(seconds.begin(), seconds.end());
  const double median = seconds[seconds.size() / 2];
  return 2.0 * kSize * kSize * kSize / median / 1e9;
}

}  // namespace

std::string SgemmRates::describe() const {
  const std::string onednn_text = onednn > 0 ? fmt::format("{:.1f}", onednn) : "n/a";
  return fmt::format(
      "sgemm: BLAS {:.1f}, oneDNN {} GFLOP/s (2048x2048 float32, median, this run); "
      "%sgemm is against the faster",
      blas, onednn_text);
}

SgemmRates measure_sgemm(int repetitions) {
  repetitions = std::max(repetitions, 1);
  auto a = torch::randn({kSize, kSize}), b = torch::randn({kSize, kSize}), c = torch::empty({kSize, kSize});
  SgemmRates rates;
  rates.blas = rate([&] { torch::mm_out(c, a, b); }, repetitions);
  if (onednn_sgemm_available()) rates.onednn = rate([&] { sgemm(false, false, a, b, c); }, repetitions);
  return rates;
}

}  // namespace qkv
