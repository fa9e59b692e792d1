// `qkv bench decode`: decoding speed with the incremental caches (decoding.h) against recomputing the
// whole prefix at every step, on the same inputs, for greedy search and beam search.
//
// A small randomly initialised model (d_model 256, 3+3 layers, vocabulary 1000 by default) decodes
// 64 random sources of 20 tokens. </s> is forbidden before --out-len tokens and forced at --out-len
// (min_len = max_len_b = out-len, max_len_a = 0), so that both paths do exactly the same number of
// steps whatever the untrained model prefers. Each figure is the median of --repetitions timed runs
// after one warm-up run; tokens/s counts the output tokens of the best hypothesis of each sentence.
#include <algorithm>
#include <chrono>
#include <iostream>
#include <memory>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/special_tokens.h"
#include "cli.h"
#include "model/decoding.h"
#include "runtime/threads.h"

namespace qkv {
namespace {

struct DecodeBenchOptions {
  int64_t d_model = 256;
  int64_t heads = 4;
  int64_t d_ff = 1024;
  int64_t layers = 3;  // encoder and decoder each
  int64_t vocab = 1000;
  int64_t sentences = 64;
  int64_t src_len = 20;
  int64_t out_len = 20;
  std::vector<int64_t> beams{1, 4};  // 1 = greedy search
  int64_t repetitions = 3;
  bool json = false;
};

struct Timing {
  int64_t beam;
  bool incremental;
  double seconds;
  std::vector<std::vector<int64_t>> outputs;  // best hypothesis per sentence, to compare the paths
};

Timing time_search(Transformer& model, const torch::Tensor& src, int64_t beam, bool incremental,
                   const DecodeBenchOptions& o) {
  SearchOptions search;
  search.beam = beam, search.nbest = 1, search.incremental = incremental;
  search.min_len = o.out_len, search.max_len_a = 0.0, search.max_len_b = o.out_len;
  Timing timing{beam, incremental, 0.0, {}};
  auto run = [&] {
    if (beam == 1) return greedy_search(model, src, search);
    std::vector<std::vector<int64_t>> best;
    for (auto& list : beam_search(model, src, search)) best.push_back(list.front().tokens);
    return best;
  };
  timing.outputs = run();  // warm-up
  std::vector<double> seconds;
  for (int64_t r = 0; r < o.repetitions; ++r) {
    const auto start = std::chrono::steady_clock::now();
    run();
    seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(seconds.begin(), seconds.end());
  timing.seconds = seconds[seconds.size() / 2];
  return timing;
}

std::string search_name(int64_t beam) {
  return beam == 1 ? "greedy" : fmt::format("beam {}", beam);
}

void bench_decode(const DecodeBenchOptions& o) {
  if (o.src_len + 1 > 1024 || o.out_len + 1 > 1024) {
    throw ConfigError("bench decode: --src-len and --out-len must stay below 1024 (the model's max_len)");
  }
  ModelConfig config;
  config.d_model = o.d_model, config.heads = o.heads, config.d_ff = o.d_ff;
  config.encoder_layers = config.decoder_layers = o.layers;
  config.max_len = 1024;
  torch::manual_seed(0);
  Transformer model(config, o.vocab, o.vocab);  // validates the shapes (ConfigError naming model.*)
  const auto src = torch::randint(kUnkId + 1, o.vocab, {o.sentences, o.src_len});
  const double tokens = static_cast<double>(o.sentences * o.out_len);
  if (!o.json) {
    fmt::print(
        "[bench] decode: d_model {}, {}+{} layers, {} heads, d_ff {}, vocabulary {}; {} sentences of {} "
        "tokens -> {} tokens each; median of {} runs; {}\n",
        o.d_model, o.layers, o.layers, o.heads, o.d_ff, o.vocab, o.sentences, o.src_len, o.out_len,
        o.repetitions, describe_threads());
    fmt::print("{:<8} {:<10} {:>9} {:>12} {:>10} {:>9}\n", "search", "path", "seconds", "sentences/s",
               "tokens/s", "speed-up");
  }
  for (int64_t beam : o.beams) {
    const auto cached = time_search(model, src, beam, true, o);
    const auto recomputed = time_search(model, src, beam, false, o);
    const double speedup = recomputed.seconds / cached.seconds;
    const bool same = cached.outputs == recomputed.outputs;
    for (const auto* t : {&cached, &recomputed}) {
      const std::string path = t->incremental ? "cached" : "recompute";
      if (o.json) {
        nlohmann::ordered_json line{{"search", search_name(beam)},
                                    {"beam", beam},
                                    {"path", path},
                                    {"seconds", t->seconds},
                                    {"sentences_per_s", o.sentences / t->seconds},
                                    {"tokens_per_s", tokens / t->seconds},
                                    {"speedup", t->incremental ? speedup : 1.0},
                                    {"same_outputs", same}};
        std::cout << line.dump() << std::endl;
      } else {
        fmt::print("{:<8} {:<10} {:>9.3f} {:>12.1f} {:>10.0f} {:>9}\n", search_name(beam), path, t->seconds,
                   o.sentences / t->seconds, tokens / t->seconds,
                   t->incremental ? fmt::format("{:.2f}x", speedup) : "1.00x");
      }
    }
    if (!o.json)
      fmt::print("  {}: cached and recomputed outputs {}\n", search_name(beam),
                 same ? "identical" : "DIFFER");
  }
}

void setup_bench_decode(CLI::App& app) {
  auto* bench = app.get_subcommand("bench");
  auto o = std::make_shared<DecodeBenchOptions>();
  auto* cmd = bench->add_subcommand("decode", "Decoding speed: incremental caches vs recomputing the prefix");
  cmd->add_option("--d-model", o->d_model, "Model width")->check(CLI::PositiveNumber);
  cmd->add_option("--heads", o->heads, "Attention heads")->check(CLI::PositiveNumber);
  cmd->add_option("--d-ff", o->d_ff, "FFN width")->check(CLI::PositiveNumber);
  cmd->add_option("--layers", o->layers, "Encoder and decoder layers (each)")->check(CLI::PositiveNumber);
  cmd->add_option("--vocab", o->vocab, "Shared vocabulary size")
      ->check(CLI::Range(int64_t{5}, int64_t{1} << 24));
  cmd->add_option("--sentences", o->sentences, "Sentences decoded together")->check(CLI::PositiveNumber);
  cmd->add_option("--src-len", o->src_len, "Source length")->check(CLI::PositiveNumber);
  cmd->add_option("--out-len", o->out_len, "Output tokens per sentence (forced)")->check(CLI::PositiveNumber);
  cmd->add_option("--beams", o->beams, "Beam sizes to time, 1 = greedy (comma-separated)")
      ->delimiter(',')
      ->check(CLI::PositiveNumber);
  cmd->add_option("--repetitions", o->repetitions, "Timed runs per figure (median)")
      ->check(CLI::PositiveNumber);
  cmd->add_flag("--json", o->json, "One JSON object per line instead of a table");
  cmd->callback([o] { bench_decode(*o); });
}

const cli::RegisterCommand registration{"bench decode", 11, setup_bench_decode};

}  // namespace
}  // namespace qkv
