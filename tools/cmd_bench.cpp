// `qkv bench`: micro-benchmarks. This file creates the `bench` family and its `bench attention`
// subcommand; other families add theirs (bench train, bench decode) to app.get_subcommand("bench").
//
// bench attention times each attention implementation (ops/attention.h) forward and forward+backward
// for B = 8, H = 8, Dk = Dv = 64 and T = 128..1024 by default: the median of interleaved
// repetitions (impl A, B, C, A, B, C, ...) so that a slow spell of the machine hits all of them
// alike. It also measures the machine's sgemm rate in the same run (and, for --dtype bfloat16, the rate
// of bfloat16 products with float32 accumulation, which that table is measured against), and the bytes each
// implementation keeps for backward, counted by a CPU allocator that tracks live bytes: what the
// graph holds after forward, beyond the inputs and the output.
//
// Dimensions: B = batch, H = heads, T = Tq = Tk, Dk, Dv = widths.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <iostream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <torch/torch.h>
#include <torch/version.h>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "cli.h"
#include "config/load.h"
#include "ops/attention.h"
#include "ops/gemm.h"
#include "runtime/heap.h"
#include "runtime/threads.h"
#include "sgemm_rate.h"

namespace qkv {
namespace {

// libtorch 2.3 made Allocator::allocate non-const and added a pure virtual copy_data.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 3)
#define QKV_ALLOCATOR_2_3 1
#define QKV_ALLOCATE_CONST
#else
#define QKV_ALLOCATOR_2_3 0
#define QKV_ALLOCATE_CONST const
#endif

// Wraps the CPU allocator and counts the bytes currently allocated through it.
class CountingAllocator final : public c10::Allocator {
 public:
  explicit CountingAllocator(c10::Allocator* base) : base_(base) {}

  c10::DataPtr allocate(size_t bytes) QKV_ALLOCATE_CONST override {
    auto* context = new Context{base_->allocate(bytes), bytes, this};
    live_ += static_cast<int64_t>(bytes);
    void* data = context->inner.get();
    const auto device = context->inner.device();
    return {data, context, &CountingAllocator::release, device};
  }
  c10::DeleterFnPtr raw_deleter() const override { return nullptr; }
#if QKV_ALLOCATOR_2_3
  void copy_data(void* dest, const void* src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }
#endif
  int64_t live() const {
    return live_.load();
  }

 private:
  struct Context {
    c10::DataPtr inner;
    size_t bytes;
    const CountingAllocator* owner;
  };
  static void release(void* pointer) {
    auto* context = static_cast<Context*>(pointer);
    context->owner->live_ -= static_cast<int64_t>(context->bytes);
    delete context;
  }

  c10::Allocator* base_;
  mutable std::atomic<int64_t> live_{0};
};

// Installed once, for the rest of the process (tensors allocated before keep their own deleter).
CountingAllocator& counting_allocator() {
  static CountingAllocator* counter = [] {
    auto* allocator = new CountingAllocator(c10::GetAllocator(c10::DeviceType::CPU));
    c10::SetAllocator(c10::DeviceType::CPU, allocator, /*priority=*/100);
    return allocator;
  }();
  return *counter;
}

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

struct BenchOptions {
  int64_t batch = 8, heads = 8, dk = 64, dv = 64;
  std::vector<int64_t> lengths{128, 256, 512, 1024};
  std::string dtype = "float32";
  int repetitions = 5;
  bool causal = false;
  bool causal_only = false;  // with causal: skip the interleaved non-causal runs
  double dropout = 0.0;
  std::vector<std::string> impls = enum_names<AttentionKind>();
  bool json = false;
};

struct Row {
  std::string impl;
  int64_t t = 0;
  double fwd_ms = 0, fwd_bwd_ms = 0, gflops = 0;
  int64_t saved_bytes = 0;
  // Causal runs: the same implementation without the mask, timed in the same repetitions (0 if not).
  double full_fwd_bwd_ms = 0;
};

// One forward (recording the graph) and backward with a fixed random upstream gradient; returns
// {forward ms, forward+backward ms} and, through `saved`, the bytes the graph held after forward.
std::pair<double, double> time_once(const std::vector<torch::Tensor>& x, const torch::Tensor& upstream,
                                    const AttentionOptions& options, int64_t* saved) {
  const int64_t before = counting_allocator().live();
  const auto start = Clock::now();
  auto out = attention(x[0], x[1], x[2], options);
  const double fwd = ms_since(start);
  if (saved) *saved = counting_allocator().live() - before - static_cast<int64_t>(out.nbytes());
  torch::autograd::grad({out}, x, {upstream});
  return {fwd, ms_since(start)};
}

torch::ScalarType dtype_of(const std::string& name) {
  return name == "float64" ? torch::kDouble : name == "bfloat16" ? torch::kBFloat16 : torch::kFloat;
}

// GFLOP/s of 2048×2048×2048 products of bfloat16 matrices into float32 through qkv::sgemm (oneDNN's
// gemm_bf16bf16f32 where it runs): the median of `repetitions` after one warm-up.
double measure_bf16_gemm(int repetitions) {
  constexpr int64_t n = 2048;
  auto a = torch::randn({n, n}).to(torch::kBFloat16), b = torch::randn({n, n}).to(torch::kBFloat16);
  auto c = torch::empty({n, n});
  std::vector<double> ms;
  for (int r = -1; r < repetitions; ++r) {
    const auto start = Clock::now();
    sgemm(false, false, a, b, c);
    if (r >= 0) ms.push_back(ms_since(start));
  }
  return 2.0 * n * n * n / (median(ms) * 1e6);
}

std::vector<Row> bench_length(const BenchOptions& o, int64_t t) {
  const auto dtype = dtype_of(o.dtype);
  const auto options = torch::TensorOptions().dtype(dtype).requires_grad(true);
  std::vector<torch::Tensor> x{torch::randn({o.batch, o.heads, t, o.dk}, options),
                               torch::randn({o.batch, o.heads, t, o.dk}, options),
                               torch::randn({o.batch, o.heads, t, o.dv}, options)};
  auto upstream = torch::randn({o.batch, o.heads, t, o.dv}, options.requires_grad(false));
  std::vector<Row> rows(o.impls.size());
  std::vector<std::vector<double>> fwd(o.impls.size()), total(o.impls.size()), full(o.impls.size());
  // A causal benchmark also times each implementation without the mask, right after its causal run in
  // every repetition: the ratio of the two then holds within one run, whatever the machine's speed
  // does between runs.
  const bool with_full = o.causal && !o.causal_only;
  for (int r = -1; r < o.repetitions; ++r) {  // r = -1: warm-up, and the saved-bytes count
    for (size_t i = 0; i < o.impls.size(); ++i) {
      AttentionOptions a;
      a.impl = enum_from_string<AttentionKind>(o.impls[i], "bench attention: --impl");
      a.causal = o.causal;
      a.dropout_p = o.dropout;
      auto [f, fb] = time_once(x, upstream, a, r < 0 ? &rows[i].saved_bytes : nullptr);
      double full_fb = 0;
      if (with_full) {
        a.causal = false;
        full_fb = time_once(x, upstream, a, nullptr).second;
      }
      if (r < 0) continue;
      fwd[i].push_back(f);
      total[i].push_back(fb);
      if (with_full) full[i].push_back(full_fb);
    }
  }
  // Useful work, without recomputation: forward Q Kᵀ and P V, backward four products of the
  // same sizes (a causal mask halves it).
  const double flops = 6.0 * o.batch * o.heads * t * t * (o.dk + o.dv) * (o.causal ? 0.5 : 1.0);
  for (size_t i = 0; i < o.impls.size(); ++i) {
    rows[i].impl = o.impls[i];
    rows[i].t = t;
    rows[i].fwd_ms = median(fwd[i]);
    rows[i].fwd_bwd_ms = median(total[i]);
    rows[i].gflops = flops / (rows[i].fwd_bwd_ms * 1e6);
    if (with_full) rows[i].full_fwd_bwd_ms = median(full[i]);
  }
  return rows;
}

// `peak` is the sgemm rate, or the bfloat16 product rate (bf16_gemm > 0) for a bfloat16 table.
void print_table(const std::vector<Row>& rows, const SgemmRates& rates, double bf16_gemm) {
  const double peak = bf16_gemm > 0 ? bf16_gemm : rates.best();
  const bool with_full = !rows.empty() && rows.front().full_fwd_bwd_ms > 0;
  fmt::print("{:<18} {:>6} {:>10} {:>13} {:>9} {:>7} {:>12} {:>10}", "impl", "T", "fwd ms", "fwd+bwd ms",
             "GFLOP/s", bf16_gemm > 0 ? "%bf16mm" : "%sgemm", "saved MiB", "vs ref");
  fmt::print("{}\n", with_full ? fmt::format(" {:>16} {:>12}", "non-causal ms", "causal/full") : "");
  for (const auto& row : rows) {
    double reference_ms = 0;
    for (const auto& other : rows) {
      if (other.t == row.t && other.impl == "reference") reference_ms = other.fwd_bwd_ms;
    }
    fmt::print("{:<18} {:>6} {:>10.2f} {:>13.2f} {:>9.1f} {:>6.0f}% {:>12.2f} {:>10}", row.impl, row.t,
               row.fwd_ms, row.fwd_bwd_ms, row.gflops, 100 * row.gflops / peak, row.saved_bytes / 1048576.0,
               reference_ms > 0 ? fmt::format("{:.2f}x", reference_ms / row.fwd_bwd_ms) : "-");
    fmt::print("{}\n", with_full ? fmt::format(" {:>16.2f} {:>12.2f}", row.full_fwd_bwd_ms,
                                               row.fwd_bwd_ms / row.full_fwd_bwd_ms)
                                 : "");
  }
  // Per length, the fastest causal implementation against the fastest non-causal one (both
  // forward+backward, from the same repetitions).
  for (size_t first = 0; with_full && first < rows.size();) {
    size_t last = first;
    const Row *causal = &rows[first], *full = &rows[first];
    for (; last < rows.size() && rows[last].t == rows[first].t; ++last) {
      if (rows[last].fwd_bwd_ms < causal->fwd_bwd_ms) causal = &rows[last];
      if (rows[last].full_fwd_bwd_ms < full->full_fwd_bwd_ms) full = &rows[last];
    }
    fmt::print("T={}: fastest causal {:.2f} ms ({}), fastest non-causal {:.2f} ms ({}): {:.2f} of the time\n",
               causal->t, causal->fwd_bwd_ms, causal->impl, full->full_fwd_bwd_ms, full->impl,
               causal->fwd_bwd_ms / full->full_fwd_bwd_ms);
    first = last;
  }
  fmt::print("{}\n", rates.describe());
  if (bf16_gemm > 0) {
    fmt::print(
        "bfloat16 x bfloat16 -> float32 products: {:.1f} GFLOP/s (2048x2048, median, this run); "
        "%bf16mm is against it\n",
        bf16_gemm);
  }
}

void bench_attention(const BenchOptions& o) {
  for (const auto& impl : o.impls) enum_from_string<AttentionKind>(impl, "bench attention: --impl");
  counting_allocator();  // before any tensor of the benchmark exists
  torch::manual_seed(0);
  if (!o.json) {
    fmt::print("[bench] attention B={} H={} Dk={} Dv={} {}{}{}, median of {} interleaved runs; {}; {}\n",
               o.batch, o.heads, o.dk, o.dv, o.dtype, o.causal ? " causal" : "",
               o.dropout > 0 ? fmt::format(" dropout={}", o.dropout) : "", o.repetitions, describe_threads(),
               describe(heap_policy()));
  }
  const SgemmRates sgemm = measure_sgemm(5);
  const double bf16_gemm = o.dtype == "bfloat16" ? measure_bf16_gemm(5) : 0.0;
  std::vector<Row> rows;
  for (int64_t t : o.lengths) {
    for (auto& row : bench_length(o, t)) {
      if (o.json) {
        nlohmann::json line{{"impl", row.impl},     {"T", row.t},
                            {"fwd_ms", row.fwd_ms}, {"fwd_bwd_ms", row.fwd_bwd_ms},
                            {"gflops", row.gflops}, {"saved_bytes", row.saved_bytes},
                            {"B", o.batch},         {"H", o.heads},
                            {"Dk", o.dk},           {"Dv", o.dv},
                            {"dtype", o.dtype},     {"causal", o.causal}};
        if (row.full_fwd_bwd_ms > 0) line["non_causal_fwd_bwd_ms"] = row.full_fwd_bwd_ms;
        std::cout << line.dump() << std::endl;
      }
      rows.push_back(row);
    }
  }
  if (o.json) {
    nlohmann::json rates{{"sgemm_gflops", sgemm.best()},
                         {"sgemm_blas_gflops", sgemm.blas},
                         {"sgemm_onednn_gflops", sgemm.onednn}};
    if (bf16_gemm > 0) rates["bf16_gemm_gflops"] = bf16_gemm;
    std::cout << rates.dump() << std::endl;
  } else {
    print_table(rows, sgemm, bf16_gemm);
  }
}

void setup_bench(CLI::App& app) {
  auto* bench = app.add_subcommand("bench", "Micro-benchmarks (attention, ...)");
  bench->require_subcommand(1);

  auto options = std::make_shared<BenchOptions>();
  auto* attention =
      bench->add_subcommand("attention", "Time each attention implementation forward and forward+backward");
  attention->add_option("--batch", options->batch, "Batch size B")->check(CLI::PositiveNumber);
  attention->add_option("--heads", options->heads, "Heads H")->check(CLI::PositiveNumber);
  attention->add_option("--dk", options->dk, "Query/key width per head")->check(CLI::PositiveNumber);
  attention->add_option("--dv", options->dv, "Value width per head")->check(CLI::PositiveNumber);
  attention->add_option("--lengths", options->lengths, "Sequence lengths T (comma-separated)")
      ->delimiter(',')
      ->check(CLI::PositiveNumber);
  attention->add_option("--dtype", options->dtype, "float32, float64 or bfloat16")
      ->check(CLI::IsMember({"float32", "float64", "bfloat16"}));
  attention->add_option("--repetitions", options->repetitions, "Timed runs per implementation")
      ->check(CLI::PositiveNumber);
  attention->add_option("--impl", options->impls, "Implementations to time (comma-separated)")
      ->delimiter(',');
  attention->add_flag("--causal", options->causal,
                      "Causal mask; each implementation is also timed without it in the same repetitions");
  attention->add_flag("--causal-only", options->causal_only, "With --causal: skip the non-causal runs")
      ->needs("--causal");
  attention->add_option("--dropout", options->dropout, "Attention dropout rate")
      ->check(CLI::Range(0.0, 0.99));
  attention->add_flag("--json", options->json, "One JSON object per line instead of a table");
  attention->callback([options] { bench_attention(*options); });
}

const cli::RegisterCommand registration{"bench", 10, setup_bench};

}  // namespace
}  // namespace qkv
