// qkv bench train: training throughput in target tokens/s, next to the same model trained by PyTorch
// (tools/peer_train.py driving torch.nn.Transformer under /usr/bin/python3) in the same run, with the
// same sizes, batch, optimizer, dropout, label smoothing, thread settings and precision (train.precision:
// qkv's policy, ops/precision.h, against torch.autocast). Each side's achieved GFLOP/s (the model's
// matmul FLOPs, flops.h) is set against this machine's fp32 sgemm rate, measured in the same run.
// The benchmark runs on the CPU, so train.precision "fp16" (CUDA only) is refused.
//
// qkv's side trains with FusedAdam, as `qkv train` does; a line gives its optimizer step alone next to
// torch::optim::Adam's on the same gradients.
//
// Batches are synthetic: B sentences of exactly S source and T target tokens (no padding), the same
// batch every step, so both sides do exactly the same arithmetic. Timing starts after warm-up steps.
//
//   qkv bench train                                   # configs/toy.json's model and batch
//   qkv bench train --config configs/toy.json --set model.d_model=512 --steps 10 --json
//   qkv bench train --config configs/aiayn/base.json --vocab 8000 --batch 64 --set train.precision=bf16

#include <algorithm>
#include <chrono>
#include <iostream>
#include <sstream>
#include <vector>

#include <fmt/format.h>
#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "cli.h"
#include "config/load.h"
#include "data/batching.h"
#include "data/dataset.h"
#include "ops/precision.h"
#include "peer_script.h"
#include "runtime/heap.h"
#include "runtime/threads.h"
#include "sgemm_rate.h"
#include "synthetic_batch.h"
#include "train/flops.h"
#include "train/fused_adam.h"
#include "train/train_step.h"

namespace qkv::cli {
namespace {
using Clock = std::chrono::steady_clock;

struct BenchTrainArgs {
  std::string config = "configs/toy.json";
  std::vector<std::string> sets;
  int64_t batch = 0;  // 0 = train.max_tokens / (tgt_len + 1)
  int64_t src_len = 15;
  int64_t tgt_len = 15;
  int64_t vocab = 0;  // 0 = the config's data
  int64_t steps = 20;
  int64_t warmup = 3;
  bool no_peer = false;
  bool json = false;
  std::string python = "/usr/bin/python3";
  std::string peer_script;
};

struct Throughput {
  int64_t parameters = 0;
  double tokens_per_s = 0.0;
  double ms_per_step = 0.0;
  double gflops = 0.0;
  double adam_ms = 0.0;        // FusedAdam's step alone (included in ms_per_step)
  double torch_adam_ms = 0.0;  // torch::optim::Adam's step on the same gradients, for comparison
};

int64_t vocabulary_size(const BenchTrainArgs& args, const Config& config) {
  if (args.vocab > 0) return args.vocab;
  std::ostringstream quiet;
  ensure_corpus(config.data, quiet);
  return build_codecs(config.data, quiet).tgt->size();
}

// Milliseconds per optimizer step on the gradients the parameters hold, the mean of `steps` steps
// after one untimed (which creates a fresh optimizer's state).
double ms_per_optimizer_step(torch::optim::Optimizer& optimizer, int64_t steps) {
  optimizer.step();
  const auto start = Clock::now();
  for (int64_t i = 0; i < steps; ++i) optimizer.step();
  return 1e3 * std::chrono::duration<double>(Clock::now() - start).count() / static_cast<double>(steps);
}

Throughput bench_qkv(const Config& config, int64_t vocab, const Batch& batch, const BenchTrainArgs& args) {
  torch::manual_seed(1);
  Transformer model(config.model, vocab, vocab);
  const auto adam_options =
      torch::optim::AdamOptions(1e-4)
          .betas(std::make_tuple(config.train.adam_betas[0], config.train.adam_betas[1]))
          .eps(config.train.adam_eps);
  FusedAdam adam(model->parameters(), adam_options);
  const StepOptions options{config.train.label_smoothing, config.train.clip_norm, 1e-4,
                            config.train.precision};
  for (int64_t i = 0; i < args.warmup; ++i) train_step(model, adam, {batch}, options);
  const auto start = Clock::now();
  for (int64_t i = 0; i < args.steps; ++i) train_step(model, adam, {batch}, options);
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  const double flops =
      training_flops(config.model, vocab, batch.src.size(0), batch.src.size(1), batch.tgt_in.size(1));
  const double steps = static_cast<double>(args.steps);
  int64_t parameters = 0;
  for (const auto& p : model->parameters()) parameters += p.numel();
  Throughput result{parameters, static_cast<double>(batch.tgt_tokens) * steps / seconds,
                    1000.0 * seconds / steps, flops * steps / seconds / 1e9};
  // The optimizer's share, after the timed steps (these updates move the parameters, which no longer
  // matters): the step training uses next to libtorch's own.
  const int64_t optimizer_steps = std::min<int64_t>(args.steps, 5);
  result.adam_ms = ms_per_optimizer_step(adam, optimizer_steps);
  torch::optim::Adam torch_adam(model->parameters(), adam_options);
  result.torch_adam_ms = ms_per_optimizer_step(torch_adam, optimizer_steps);
  return result;
}

nlohmann::json run_peer(const Config& config, int64_t vocab, const Batch& batch, const BenchTrainArgs& args) {
  const auto& m = config.model;
  const auto str = [](auto value) { return fmt::format("{}", value); };
  return run_peer_script(args.python, find_peer_script("peer_train.py", args.peer_script),
                         {"--json",
                          "--d-model",
                          str(m.d_model),
                          "--d-ff",
                          str(m.d_ff),
                          "--heads",
                          str(m.heads),
                          "--encoder-layers",
                          str(m.encoder_layers),
                          "--decoder-layers",
                          str(m.decoder_layers),
                          "--vocab",
                          str(vocab),
                          "--dropout",
                          str(m.dropout),
                          "--attention-dropout",
                          str(m.attention_dropout),
                          "--relu-dropout",
                          str(m.relu_dropout),
                          "--label-smoothing",
                          str(config.train.label_smoothing),
                          "--norm",
                          to_string(m.norm),
                          "--batch",
                          str(batch.src.size(0)),
                          "--src-len",
                          str(batch.src.size(1)),
                          "--tgt-len",
                          str(batch.tgt_in.size(1)),
                          "--adam-betas",
                          str(config.train.adam_betas[0]),
                          str(config.train.adam_betas[1]),
                          "--adam-eps",
                          str(config.train.adam_eps),
                          "--threads",
                          str(at::get_num_threads()),
                          "--steps",
                          str(args.steps),
                          "--warmup",
                          str(args.warmup),
                          "--precision",
                          to_string(config.train.precision)});
}

void print_report(const Config& config, int64_t vocab, const Batch& batch, const SgemmRates& rates,
                  const Throughput& ours, const std::optional<nlohmann::json>& peer,
                  const BenchTrainArgs& args) {
  const auto& m = config.model;
  fmt::print("qkv bench train: {} (d_model {}, d_ff {}, heads {}, layers {}+{}, {}-norm), vocab {}, {}\n",
             args.config, m.d_model, m.d_ff, m.heads, m.encoder_layers, m.decoder_layers, to_string(m.norm),
             vocab, to_string(config.train.precision));
  fmt::print(
      "batch: {} sentences x {} source / {} target tokens = {} target tokens per step; dropout {}, label "
      "smoothing {}, Adam; {} timed steps after {} warm-up\n",
      batch.src.size(0), batch.src.size(1), batch.tgt_in.size(1), batch.tgt_tokens, m.dropout,
      config.train.label_smoothing, args.steps, args.warmup);
  fmt::print("{}; {}\n", describe_threads(), describe(heap_policy()));
  const auto warning = precision_warning(config.train.precision, torch::kCPU);
  if (!warning.empty()) fmt::print("warning: {}\n", warning);
  fmt::print("{}\n\n", rates.describe());
  const double sgemm = rates.best();
  fmt::print("{:<22} {:>12} {:>10} {:>9} {:>7}\n", "", "tokens/s", "ms/step", "GFLOP/s", "%sgemm");
  fmt::print("{:<22} {:>12.0f} {:>10.1f} {:>9.1f} {:>6.1f}%\n", "qkv (libtorch C++)", ours.tokens_per_s,
             ours.ms_per_step, ours.gflops, 100 * ours.gflops / sgemm);
  fmt::print("{:<22} {:>23.1f} ms per step (torch::optim::Adam: {:.1f} ms)\n", "  of which FusedAdam",
             ours.adam_ms, ours.torch_adam_ms);
  if (!peer) return;
  const double peer_tps = peer->at("tokens_per_s").get<double>();
  const double peer_gflops = ours.gflops * peer_tps / ours.tokens_per_s;  // same FLOPs per token
  fmt::print("{:<22} {:>12.0f} {:>10.1f} {:>9.1f} {:>6.1f}%\n",
             fmt::format("pytorch {}", peer->at("torch_version").get<std::string>()), peer_tps,
             peer->at("ms_per_step").get<double>(), peer_gflops, 100 * peer_gflops / sgemm);
  fmt::print("\nratio qkv / pytorch: {:.2f}x (goal >= 1.3x)\n", ours.tokens_per_s / peer_tps);
  fmt::print("parameters: qkv {}, pytorch {}; pytorch ran with {} intra-op thread(s)\n", ours.parameters,
             peer->at("params").get<int64_t>(), peer->at("threads").get<int64_t>());
}

void run_bench_train(const BenchTrainArgs& args) {
  Config config = resolve_config(args.config, args.sets);
  validate_device(config, /*cuda=*/false, args.config);
  const int64_t vocab = vocabulary_size(args, config);
  const int64_t batch_size =
      args.batch > 0 ? args.batch : std::max<int64_t>(1, config.train.max_tokens / (args.tgt_len + 1));
  if (args.src_len + 1 > config.model.max_len || args.tgt_len + 1 > config.model.max_len)
    throw ConfigError(
        fmt::format("--src-len/--tgt-len + 1 must fit model.max_len = {}", config.model.max_len));
  torch::manual_seed(1);
  const Batch batch = synthetic_batch(batch_size, args.src_len, args.tgt_len, vocab);
  const SgemmRates sgemm = measure_sgemm(5);
  const Throughput ours = bench_qkv(config, vocab, batch, args);
  std::optional<nlohmann::json> peer;
  if (!args.no_peer) peer = run_peer(config, vocab, batch, args);
  if (!args.json) return print_report(config, vocab, batch, sgemm, ours, peer, args);
  nlohmann::json out = {{"config", args.config},
                        {"precision", to_string(config.train.precision)},
                        {"vocab", vocab},
                        {"batch", batch.src.size(0)},
                        {"src_len", batch.src.size(1)},
                        {"tgt_len", batch.tgt_in.size(1)},
                        {"sgemm_gflops", sgemm.best()},
                        {"sgemm_blas_gflops", sgemm.blas},
                        {"sgemm_onednn_gflops", sgemm.onednn},
                        {"threads", at::get_num_threads()},
                        {"qkv",
                         {{"tokens_per_s", ours.tokens_per_s},
                          {"ms_per_step", ours.ms_per_step},
                          {"gflops", ours.gflops},
                          {"adam_ms", ours.adam_ms},
                          {"torch_adam_ms", ours.torch_adam_ms}}}};
  if (peer) {
    out["pytorch"] = *peer;
    out["ratio"] = ours.tokens_per_s / peer->at("tokens_per_s").get<double>();
  }
  std::cout << out.dump() << std::endl;
}

void setup_bench_train(CLI::App& app) {
  CLI::App* bench = app.get_subcommand("bench");
  auto args = std::make_shared<BenchTrainArgs>();
  auto* cmd =
      bench->add_subcommand("train", "Training throughput (target tokens/s) of qkv next to PyTorch's");
  cmd->add_option("--config", args->config, "Config whose model and batch are measured")
      ->check(CLI::ExistingFile)
      ->capture_default_str();
  add_set_option(*cmd, args->sets);
  cmd->add_option("--batch", args->batch, "Sentences per batch (default: train.max_tokens / (tgt-len + 1))");
  cmd->add_option("--src-len", args->src_len, "Source tokens per sentence, </s> excluded")
      ->capture_default_str();
  cmd->add_option("--tgt-len", args->tgt_len, "Target tokens per sentence, </s> excluded")
      ->capture_default_str();
  cmd->add_option("--vocab", args->vocab, "Vocabulary size (default: the config's data)");
  cmd->add_option("--steps", args->steps, "Timed steps")->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--warmup", args->warmup, "Untimed steps first")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_flag("--no-peer", args->no_peer, "Measure qkv only");
  cmd->add_flag("--json", args->json, "Print one JSON object");
  cmd->add_option("--python", args->python, "Python with PyTorch")->capture_default_str();
  cmd->add_option("--peer-script", args->peer_script, "Path of tools/peer_train.py");
  cmd->callback([args] { run_bench_train(*args); });
}

RegisterCommand reg{"bench_train", 12, setup_bench_train};

}  // namespace
}  // namespace qkv::cli
