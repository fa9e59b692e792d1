// qkv bench ddp: data-parallel training on this machine (docs/distributed.md).
//
//   1. All-reduce over loopback: the time and bandwidth of summing a float32 message of 1 KiB ... 64 MiB
//      across the workers (Gloo), median of several repetitions.
//   2. Training throughput, in target tokens per second of whole updates: the toy model and a base-size
//      model (configs/aiayn/base.json with a small vocabulary), 1 worker × 2 threads against 2 workers ×
//      1 thread. Both do the same work per update: the single worker accumulates the two batches the two
//      workers take (train.update_freq 2), on a fixed synthetic batch (tools/synthetic_batch.h). The
//      share of step time spent waiting for the gradient exchange is what backward did not hide.
//
// The command starts its workers itself, like `qkv train --nproc`: each is this program with
// `bench ddp --worker PHASE --result FILE`, and writes its figures as JSON to FILE.
//
//   qkv bench ddp                # a table
//   qkv bench ddp --json         # one JSON object per line
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>

#include <ATen/Parallel.h>
#include <fmt/format.h>
#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "cli.h"
#include "config/load.h"
#include "dist/launch.h"
#include "dist/local_launcher.h"
#include "dist/reducer.h"
#include "dist/world.h"
#include "synthetic_batch.h"
#include "train/fused_adam.h"
#include "train/train_step.h"

namespace qkv::cli {
namespace {
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

struct BenchDdpArgs {
  bool json = false;
  int64_t steps = 10;
  int64_t warmup = 2;
  int64_t repetitions = 9;
  int64_t base_vocab = 8000;
  // Internal: what a worker started by the benchmark does, and where it writes its figures.
  std::string worker;
  std::string model = "toy";
  std::string result;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

std::unique_ptr<dist::World> join_from_environment() {
  return dist::World::join(dist::LaunchInfo::from_environment(), DistBackend::Gloo,
                           std::chrono::seconds(120));
}

// ---- in a worker -----------------------------------------------------------------------------------

nlohmann::json allreduce_worker(const BenchDdpArgs& args) {
  auto world = join_from_environment();
  nlohmann::json rows = nlohmann::json::array();
  for (int64_t bytes = 1 << 10; bytes <= (int64_t{64} << 20); bytes *= 4) {
    auto message = torch::ones({bytes / 4});  // float32
    std::vector<double> seconds;
    for (int64_t r = -1; r < args.repetitions; ++r) {  // r = -1: warm-up (connection buffers)
      world->barrier();
      const auto start = Clock::now();
      world->all_reduce_sum(message);
      if (r >= 0) seconds.push_back(std::chrono::duration<double>(Clock::now() - start).count());
    }
    const double t = median(seconds);
    const double w = static_cast<double>(world->size());
    // Bus bandwidth (NCCL's convention): a ring all-reduce moves 2(W-1)/W of the message per rank.
    rows.push_back({{"bytes", bytes},
                    {"ms", 1e3 * t},
                    {"algbw_gbps", static_cast<double>(bytes) / t / 1e9},
                    {"busbw_gbps", static_cast<double>(bytes) / t / 1e9 * 2.0 * (w - 1.0) / w}});
  }
  return rows;
}

Config bench_model_config(const std::string& model) {
  if (model == "toy") return resolve_config("configs/toy.json");
  if (model == "base") return resolve_config("configs/aiayn/base.json");
  throw ConfigError(fmt::format("bench ddp: unknown --model \"{}\" (expected toy or base)", model));
}

nlohmann::json train_worker(const BenchDdpArgs& args) {
  auto world = join_from_environment();
  const Config config = bench_model_config(args.model);
  const int64_t vocab = args.model == "base" ? args.base_vocab : 512;
  const int64_t len = 15;  // tokens per sentence on each side (16 with </s> or <s>)
  // Per worker: the model's train.max_tokens, capped so that a base-size step stays a few seconds here.
  const int64_t sentences = std::min<int64_t>(config.train.max_tokens, 2048) / (len + 1);
  torch::manual_seed(1);
  Transformer model(config.model, vocab, vocab);
  FusedAdam adam(model->parameters(), torch::optim::AdamOptions(1e-4));
  dist::GradientReducer reducer(*world, model->parameters());
  torch::manual_seed(2 + world->rank());
  const Batch batch = synthetic_batch(sentences, len, len, vocab);
  // One worker does the two workers' batches itself.
  const std::vector<Batch> batches(world->size() == 1 ? 2 : 1, batch);
  StepOptions options;
  options.label_smoothing = config.train.label_smoothing;
  options.lr = 1e-4;
  options.world = world.get();
  options.reducer = &reducer;
  for (int64_t i = 0; i < args.warmup; ++i) train_step(model, adam, batches, options);
  reducer.take_wait_seconds();
  world->barrier();
  const auto start = Clock::now();
  int64_t tokens = 0;
  for (int64_t i = 0; i < args.steps; ++i) tokens += train_step(model, adam, batches, options).tokens;
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return {{"model", args.model},
          {"workers", world->size()},
          {"threads", at::get_num_threads()},
          {"tokens_per_update", tokens / args.steps},
          {"tokens_per_s", static_cast<double>(tokens) / seconds},
          {"ms_per_step", 1e3 * seconds / static_cast<double>(args.steps)},
          {"wait_share", reducer.take_wait_seconds() / seconds},
          {"buckets", reducer.buckets()}};
}

void run_worker(const BenchDdpArgs& args) {
  const nlohmann::json result = args.worker == "allreduce" ? allreduce_worker(args) : train_worker(args);
  if (dist::LaunchInfo::from_environment().rank == 0) std::ofstream(args.result) << result.dump() << '\n';
}

// ---- in the benchmark's own process ------------------------------------------------------------------

nlohmann::json run_phase(const BenchDdpArgs& args, const std::string& phase, const std::string& model,
                         int workers, int threads, const fs::path& scratch) {
  const fs::path result = scratch / fmt::format("{}-{}-{}.json", phase, model, workers);
  dist::LocalLaunch launch;
  launch.workers = workers;
  launch.quiet = true;
  launch.log_dir = (scratch / fmt::format("{}-{}-{}", phase, model, workers)).string();
  launch.argv = {invocation().front(),
                 "--threads",
                 std::to_string(threads),
                 "bench",
                 "ddp",
                 "--worker",
                 phase,
                 "--model",
                 model,
                 "--result",
                 result.string(),
                 "--steps",
                 std::to_string(args.steps),
                 "--warmup",
                 std::to_string(args.warmup),
                 "--repetitions",
                 std::to_string(args.repetitions),
                 "--base-vocab",
                 std::to_string(args.base_vocab)};
  launch.grace = std::chrono::seconds(180);
  if (dist::run_local_workers(launch) != 0)
    throw std::runtime_error(
        fmt::format("bench ddp: the {} workers failed; their logs are in {}", phase, launch.log_dir));
  std::ifstream in(result);
  return nlohmann::json::parse(in);
}

void print_allreduce(const nlohmann::json& rows) {
  fmt::print("all-reduce over loopback, 2 workers (Gloo), median of the repetitions\n");
  fmt::print("{:>10} {:>10} {:>14} {:>14}\n", "bytes", "ms", "algbw GB/s", "busbw GB/s");
  for (const auto& r : rows)
    fmt::print("{:>10} {:>10.3f} {:>14.2f} {:>14.2f}\n", r.at("bytes").get<int64_t>(),
               r.at("ms").get<double>(), r.at("algbw_gbps").get<double>(), r.at("busbw_gbps").get<double>());
}

void print_training(const std::vector<nlohmann::json>& rows) {
  fmt::print("\ntraining, the same update either way (2 batches), fixed synthetic batch\n");
  fmt::print("{:<6} {:>18} {:>14} {:>12} {:>12} {:>10}\n", "model", "layout", "tokens/s", "ms/step", "wait",
             "vs 1x2");
  double single = 0;
  for (const auto& r : rows) {
    const bool alone = r.at("workers").get<int>() == 1;
    if (alone) single = r.at("tokens_per_s").get<double>();
    fmt::print("{:<6} {:>18} {:>14.0f} {:>12.1f} {:>11.1f}% {:>10}\n", r.at("model").get<std::string>(),
               fmt::format("{} worker x {} thr", r.at("workers").get<int>(), r.at("threads").get<int>()),
               r.at("tokens_per_s").get<double>(), r.at("ms_per_step").get<double>(),
               100 * r.at("wait_share").get<double>(),
               alone ? "-" : fmt::format("{:.0f}%", 100 * r.at("tokens_per_s").get<double>() / single));
  }
}

void run_bench_ddp(const BenchDdpArgs& args) {
  if (!args.worker.empty()) return run_worker(args);
  const fs::path scratch = fs::temp_directory_path() / fmt::format("qkv-bench-ddp-{}", ::getpid());
  fs::create_directories(scratch);
  const auto allreduce = run_phase(args, "allreduce", "-", 2, 1, scratch);
  std::vector<nlohmann::json> training;
  for (const std::string model : {"toy", "base"}) {
    training.push_back(run_phase(args, "train", model, 1, 2, scratch));
    training.push_back(run_phase(args, "train", model, 2, 1, scratch));
  }
  fs::remove_all(scratch);
  if (args.json) {
    for (const auto& row : allreduce) std::cout << nlohmann::json{{"allreduce", row}}.dump() << '\n';
    for (const auto& row : training) std::cout << nlohmann::json{{"training", row}}.dump() << '\n';
    return;
  }
  print_allreduce(allreduce);
  print_training(training);
}

void setup_bench_ddp(CLI::App& app) {
  CLI::App* bench = app.get_subcommand("bench");
  auto args = std::make_shared<BenchDdpArgs>();
  auto* cmd = bench->add_subcommand(
      "ddp",
      "Data-parallel training: all-reduce bandwidth, and 1 worker x 2 threads vs 2 workers x 1 thread");
  cmd->add_flag("--json", args->json, "Print one JSON object per line");
  cmd->add_option("--steps", args->steps, "Timed steps per training run")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--warmup", args->warmup, "Untimed steps first")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--repetitions", args->repetitions, "Timed all-reduces per message size")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--base-vocab", args->base_vocab, "Vocabulary of the base-size model")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--worker", args->worker, "(internal) run as a worker: allreduce | train")->group("");
  cmd->add_option("--model", args->model, "(internal) the worker's model: toy | base")->group("");
  cmd->add_option("--result", args->result, "(internal) where a worker writes its figures")->group("");
  cmd->callback([args] { run_bench_ddp(*args); });
}

RegisterCommand reg{"bench_ddp", 14, setup_bench_ddp};

}  // namespace
}  // namespace qkv::cli
