// Shared test helpers for qkv's GoogleTest suites:
//   - expect_close: compares two tensors and, on failure, reports the largest error, where it is,
//     and the first mismatching elements (libtorch's allclose only says "false");
//   - gradcheck: libtorch's C++ API has none. Central finite differences in float64 of the scalar
//     L = Σ f(x) ∘ G for a fixed random upstream gradient G, compared element by element with the
//     autograd gradient of every input that requires grad; all elements of small inputs, a seeded
//     random subset of large ones; reports the worst element;
//   - QKV_DEVICE_TEST: one test body run on the CPU and on CUDA, the CUDA variant skipped (not
//     passed) when there is no GPU;
//   - TempDir: a fresh directory for a test's files, removed with them when the test ends;
//   - SignalStorm: signals sent to the whole process at a steady rate while it lives.
#pragma once

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

namespace qkv::test {

// Writes the multi-index of flat element `flat` of a tensor of shape `sizes`, e.g. "[0, 2, 1]".
inline std::string index_string(at::IntArrayRef sizes, int64_t flat) {
  std::vector<int64_t> index(sizes.size());
  for (int64_t d = static_cast<int64_t>(sizes.size()) - 1; d >= 0; --d) {
    index[d] = sizes[d] > 0 ? flat % sizes[d] : 0;
    flat = sizes[d] > 0 ? flat / sizes[d] : 0;
  }
  std::ostringstream out;
  out << "[";
  for (size_t d = 0; d < index.size(); ++d) out << (d ? ", " : "") << index[d];
  out << "]";
  return out.str();
}

// |actual - expected| <= atol + rtol·|expected| everywhere (NaN never passes). On failure the
// message names `what`, the largest error and its index, and up to `show` mismatching elements.
inline ::testing::AssertionResult expect_close(const torch::Tensor& actual, const torch::Tensor& expected,
                                               double atol, double rtol = 0.0,
                                               const std::string& what = "tensor", int show = 5) {
  if (actual.sizes() != expected.sizes()) {
    return ::testing::AssertionFailure()
           << what << ": shape " << actual.sizes() << " != expected " << expected.sizes();
  }
  const auto a = actual.detach().to(torch::kCPU, torch::kDouble).contiguous().view(-1);
  const auto e = expected.detach().to(torch::kCPU, torch::kDouble).contiguous().view(-1);
  const auto* pa = a.data_ptr<double>();
  const auto* pe = e.data_ptr<double>();
  double worst = 0.0;
  int64_t worst_at = -1, bad = 0;
  std::ostringstream first;
  for (int64_t i = 0; i < a.numel(); ++i) {
    const double err = std::abs(pa[i] - pe[i]);
    const bool ok = err <= atol + rtol * std::abs(pe[i]);  // false for NaN
    if (!ok || std::isnan(err)) {
      if (bad++ < show) {
        first << "\n  at " << index_string(actual.sizes(), i) << ": " << pa[i] << " vs " << pe[i];
      }
    }
    if (std::isnan(err) || err > worst) {
      worst = std::isnan(err) ? INFINITY : err;
      worst_at = i;
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess() << what << ": max error " << worst;
  return ::testing::AssertionFailure()
         << what << ": " << bad << " of " << a.numel() << " elements differ (atol " << atol << ", rtol "
         << rtol << "); max error " << worst << " at " << index_string(actual.sizes(), worst_at)
         << first.str();
}

struct GradcheckOptions {
  double eps = 1e-6;   // finite-difference step (float64)
  double atol = 1e-6;  // |analytic - numeric| <= atol + rtol·|numeric|
  double rtol = 1e-5;
  int64_t max_elements = 0;  // per input; 0 = every element, else a seeded random subset
  uint64_t seed = 0;         // for the upstream gradient and the subset
};

// Checks the gradient of every input with requires_grad() against central finite differences.
// `f` must be deterministic (reseed inside it if it draws random numbers, e.g. for dropout).
// The inputs must be float64.
inline ::testing::AssertionResult gradcheck(
    const std::function<torch::Tensor(const std::vector<torch::Tensor>&)>& f,
    std::vector<torch::Tensor> inputs, const GradcheckOptions& options = {}) {
  torch::manual_seed(options.seed);
  auto out = f(inputs);
  const auto upstream = torch::randn_like(out);  // G: never just .sum()
  std::vector<torch::Tensor> wrt;
  for (const auto& x : inputs) {
    if (x.defined() && x.requires_grad()) wrt.push_back(x);
  }
  if (wrt.empty()) return ::testing::AssertionFailure() << "gradcheck: no input requires grad";
  const auto analytic = torch::autograd::grad({(out * upstream).sum()}, wrt, {}, false, false,
                                              /*allow_unused=*/true);
  auto loss = [&]() {
    torch::NoGradGuard no_grad;
    return (f(inputs) * upstream).sum().item<double>();
  };
  double worst = 0.0;
  int64_t failures = 0, checked = 0;
  std::string worst_at = "none";
  std::ostringstream first;
  size_t w = 0;  // index into wrt / analytic
  for (size_t n = 0; n < inputs.size(); ++n) {
    auto& x = inputs[n];
    if (!x.defined() || !x.requires_grad()) continue;
    TORCH_CHECK(x.scalar_type() == torch::kDouble, "gradcheck: inputs must be float64");
    const auto& a_grad = analytic[w++];
    const auto grad = a_grad.defined() ? a_grad.to(torch::kCPU).contiguous().view(-1)
                                       : torch::zeros({x.numel()}, torch::kDouble);
    auto elements = torch::arange(x.numel());
    if (options.max_elements > 0 && x.numel() > options.max_elements) {
      elements = torch::randperm(x.numel()).slice(0, 0, options.max_elements);
    }
    auto flat = x.detach().view(-1);  // shares x's storage: nudging it nudges the input
    for (int64_t i = 0; i < elements.numel(); ++i) {
      const int64_t e = elements[i].item<int64_t>();
      const double original = flat[e].item<double>();
      flat[e].fill_(original + options.eps);
      const double plus = loss();
      flat[e].fill_(original - options.eps);
      const double minus = loss();
      flat[e].fill_(original);
      const double numeric = (plus - minus) / (2 * options.eps);
      const double a = grad[e].item<double>();
      const double err = std::abs(a - numeric);
      const std::string where = "input " + std::to_string(n) + " " + index_string(x.sizes(), e);
      ++checked;
      if (std::isnan(err) || err > options.atol + options.rtol * std::abs(numeric)) {
        if (failures++ < 5) {
          first << "\n  " << where << ": analytic " << a << ", numeric " << numeric;
        }
      }
      if (std::isnan(err) || err > worst) {
        worst = std::isnan(err) ? INFINITY : err;
        worst_at = where;
      }
    }
  }
  if (failures == 0) {
    return ::testing::AssertionSuccess()
           << "gradcheck: " << checked << " elements, worst error " << worst << " at " << worst_at;
  }
  return ::testing::AssertionFailure()
         << "gradcheck: " << failures << " of " << checked << " elements differ (atol " << options.atol
         << ", rtol " << options.rtol << "); worst error " << worst << " at " << worst_at << first.str();
}

// A fresh directory under the system temp dir, qkv_test_{Suite}.{Test}_{pid}_{n} (named after the
// running test, or the suite in SetUpTestSuite), removed with everything in it when the object goes.
// The pid keeps test binaries that ctest runs in parallel apart.
class TempDir {
 public:
  TempDir() {
    static int counter = 0;
    const auto* test = ::testing::UnitTest::GetInstance()->current_test_info();
    const auto* suite = ::testing::UnitTest::GetInstance()->current_test_suite();
    std::string name = test != nullptr    ? fmt::format("{}.{}", test->test_suite_name(), test->name())
                       : suite != nullptr ? suite->name()
                                          : "qkv";
    std::replace(name.begin(), name.end(), '/', '_');  // parameterized tests: Prefix/Suite.Name/3
    path = std::filesystem::temp_directory_path() /
           fmt::format("qkv_test_{}_{}_{}", name, ::getpid(), counter++);
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ignored;  // a destructor must not throw; a leftover directory is harmless
    std::filesystem::remove_all(path, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  // Writes `bytes` exactly (no newline added) to the file `name` in the directory; returns its path.
  std::string write(const std::string& name, const std::string& bytes) const {
    const std::string file = (path / name).string();
    std::ofstream out(file, std::ios::binary);
    out << bytes;
    if (!out.flush()) throw std::runtime_error("cannot write " + file);
    return file;
  }

  std::filesystem::path path;
};

// SIGUSR2 sent to this whole process (any thread may take it) every `period`, with a handler that
// does nothing, from construction until destruction, which restores the previous action. Tests of
// code that must be indifferent to signals (ops/defer_signals.h) run under one.
class SignalStorm {
 public:
  explicit SignalStorm(std::chrono::microseconds period) {
    struct sigaction action {};
    action.sa_handler = ignore;
    sigemptyset(&action.sa_mask);
    if (sigaction(SIGUSR2, &action, &previous_) != 0) throw std::runtime_error("sigaction(SIGUSR2) failed");
    sender_ = std::thread([this, period] {
      while (!done_) {
        ::kill(::getpid(), SIGUSR2);
        std::this_thread::sleep_for(period);
      }
    });
  }
  ~SignalStorm() {
    done_ = true;
    sender_.join();
    sigaction(SIGUSR2, &previous_, nullptr);
  }
  SignalStorm(const SignalStorm&) = delete;
  SignalStorm& operator=(const SignalStorm&) = delete;

 private:
  static void ignore(int) {}
  struct sigaction previous_ {};
  std::atomic<bool> done_{false};
  std::thread sender_;
};

}  // namespace qkv::test

// QKV_DEVICE_TEST(Suite, Name) { ... body using `device` ... } defines Suite.Name_CPU and
// Suite.Name_CUDA running the same body; the CUDA variant is skipped when no GPU is present.
#define QKV_DEVICE_TEST(Suite, Name)                                    \
  static void Suite##_##Name##_body(const torch::Device& device);       \
  TEST(Suite, Name##_CPU) {                                             \
    Suite##_##Name##_body(torch::Device(torch::kCPU));                  \
  }                                                                     \
  TEST(Suite, Name##_CUDA) {                                            \
    if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device"; \
    Suite##_##Name##_body(torch::Device(torch::kCUDA));                 \
  }                                                                     \
  static void Suite##_##Name##_body(const torch::Device& device)
