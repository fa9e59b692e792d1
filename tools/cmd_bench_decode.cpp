// `qkv bench decode`: decoding speed with the incremental caches (decoding.h) against recomputing the
// whole prefix at every step, on the same inputs, for greedy search and beam search, next to the same
// model decoded by eager PyTorch with a key/value cache (tools/peer_decode.py, under /usr/bin/python3)
// in the same run.
//
// A small randomly initialised model (d_model 256, 3+3 layers, vocabulary 1000 by default) decodes
// 64 random sources of 20 tokens. </s> is forbidden before --out-len tokens and forced at --out-len
// (min_len = max_len_b = out-len, max_len_a = 0), so that both paths do exactly the same number of
// steps whatever the untrained model prefers. Each figure is the median of --repetitions timed runs
// after one warm-up run; tokens/s counts the output tokens of the best hypothesis of each sentence.
//
// The two paths compute the same function in a different order of float32 operations, so where two
// candidates' scores are within rounding of each other (a near-tie; an untrained model with a large
// vocabulary has many) they may choose differently, and from there the outputs part. The bench tells
// that apart from a wrong cache: the sentences whose outputs differ are decoded again both ways in
// float64, where such ties are resolved alike, and for beam search the two best hypotheses' float32
// scores are compared (a near-tie leaves them within rounding of each other).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <iostream>
#include <memory>
#include <optional>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/special_tokens.h"
#include "cli.h"
#include "model/decoding.h"
#include "ops/gemm.h"
#include "peer_script.h"
#include "runtime/heap.h"
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
  bool no_peer = false;
  bool json = false;
  std::string python = "/usr/bin/python3";
  std::string peer_script;
};

// The best hypothesis of each sentence.
struct Outputs {
  std::vector<std::vector<int64_t>> tokens;
  std::vector<double> scores;  // beam search's scores (empty for greedy search)
};

struct Timing {
  bool incremental;
  double seconds;
  Outputs outputs;  // to compare the paths
};

// How the cached path's outputs compare with the recomputed path's for one search.
struct Agreement {
  std::vector<int64_t> differing;  // sentences whose float32 outputs differ
  double score_gap = 0.0;          // beam search: the largest |score difference| among them
  bool float64_same = true;        // the differing sentences decoded alike in float64
  std::string verdict() const {
    return differing.empty() ? "identical" : float64_same ? "near_ties" : "differ";
  }
};

struct SearchResult {
  int64_t beam;
  Timing cached, recomputed;
  Agreement agreement;
  std::optional<double> peer_seconds;
};

SearchOptions search_options(int64_t beam, bool incremental, const DecodeBenchOptions& o) {
  SearchOptions search;
  search.beam = beam, search.nbest = 1, search.incremental = incremental;
  search.min_len = o.out_len, search.max_len_a = 0.0, search.max_len_b = o.out_len;
  return search;
}

Outputs decode(Transformer& model, const torch::Tensor& src, const SearchOptions& search) {
  Outputs outputs;
  if (search.beam == 1) {
    outputs.tokens = greedy_search(model, src, search);
    return outputs;
  }
  for (auto& list : beam_search(model, src, search)) {
    outputs.tokens.push_back(list.front().tokens);
    outputs.scores.push_back(list.front().score);
  }
  return outputs;
}

Timing time_search(Transformer& model, const torch::Tensor& src, int64_t beam, bool incremental,
                   const DecodeBenchOptions& o) {
  const auto search = search_options(beam, incremental, o);
  // As in translate_ids: the transposed weight copies of the few-row products (ops/gemm.h) are made
  // once for all the batches, here in the warm-up run.
  const FixedWeightsScope fixed_weights;
  Timing timing{incremental, 0.0, decode(model, src, search)};  // the warm-up run
  std::vector<double> seconds;
  for (int64_t r = 0; r < o.repetitions; ++r) {
    const auto start = std::chrono::steady_clock::now();
    decode(model, src, search);
    seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(seconds.begin(), seconds.end());
  timing.seconds = seconds[seconds.size() / 2];
  return timing;
}

Agreement compare_float32(const Outputs& cached, const Outputs& recomputed) {
  Agreement agreement;
  for (size_t b = 0; b < cached.tokens.size(); ++b) {
    if (cached.tokens[b] == recomputed.tokens[b]) continue;
    agreement.differing.push_back(static_cast<int64_t>(b));
    if (!cached.scores.empty())
      agreement.score_gap = std::max(agreement.score_gap, std::abs(cached.scores[b] - recomputed.scores[b]));
  }
  return agreement;
}

// Decodes the sentences that differed in float32 again both ways with `model64` (float64).
void check_in_float64(Transformer& model64, const torch::Tensor& src, SearchResult& result,
                      const DecodeBenchOptions& o) {
  auto& agreement = result.agreement;
  if (agreement.differing.empty()) return;
  const auto rows = src.index_select(0, torch::tensor(agreement.differing, torch::kInt64));  // [n, S]
  agreement.float64_same = decode(model64, rows, search_options(result.beam, true, o)).tokens ==
                           decode(model64, rows, search_options(result.beam, false, o)).tokens;
}

std::string search_name(int64_t beam) {
  return beam == 1 ? "greedy" : fmt::format("beam {}", beam);
}

std::string describe(const Agreement& a, int64_t beam, int64_t sentences) {
  if (a.differing.empty()) return "cached and recomputed outputs identical";
  const std::string gap = beam == 1 ? "" : fmt::format(", best scores {:.1e} apart", a.score_gap);
  return fmt::format("cached and recomputed outputs differ in {} of {} sentences{}; in float64 {}",
                     a.differing.size(), sentences, gap,
                     a.float64_same ? "identical: near-ties, float32 rounding"
                                    : "they DIFFER too: not rounding, the cache is wrong");
}

// Runs tools/peer_decode.py with the bench's sizes; sets each result's peer_seconds and returns the
// peer's JSON object.
nlohmann::json run_peer(std::vector<SearchResult>& results, const DecodeBenchOptions& o) {
  const auto str = [](auto value) { return fmt::format("{}", value); };
  const nlohmann::json peer =
      cli::run_peer_script(o.python, cli::find_peer_script("peer_decode.py", o.peer_script),
                           {"--json",
                            "--d-model",
                            str(o.d_model),
                            "--heads",
                            str(o.heads),
                            "--d-ff",
                            str(o.d_ff),
                            "--layers",
                            str(o.layers),
                            "--vocab",
                            str(o.vocab),
                            "--sentences",
                            str(o.sentences),
                            "--src-len",
                            str(o.src_len),
                            "--out-len",
                            str(o.out_len),
                            "--beams",
                            fmt::format("{}", fmt::join(o.beams, ",")),
                            "--repetitions",
                            str(o.repetitions),
                            "--threads",
                            str(at::get_num_threads())});
  for (const auto& r : peer.at("results"))
    for (auto& result : results)
      if (result.beam == r.at("beam").get<int64_t>()) result.peer_seconds = r.at("seconds").get<double>();
  return peer;
}

void print_json(const std::vector<SearchResult>& results, const std::optional<nlohmann::json>& peer,
                const DecodeBenchOptions& o) {
  const double tokens = static_cast<double>(o.sentences * o.out_len);
  for (const auto& r : results) {
    auto line = [&](const std::string& path, double seconds) {
      return nlohmann::ordered_json{{"search", search_name(r.beam)},
                                    {"beam", r.beam},
                                    {"path", path},
                                    {"seconds", seconds},
                                    {"sentences_per_s", o.sentences / seconds},
                                    {"tokens_per_s", tokens / seconds}};
    };
    for (const auto* t : {&r.cached, &r.recomputed}) {
      auto out = line(t->incremental ? "cached" : "recompute", t->seconds);
      out["speedup"] = t->incremental ? r.recomputed.seconds / r.cached.seconds : 1.0;
      out["same_outputs"] = r.agreement.differing.empty();
      out["outputs"] = r.agreement.verdict();
      out["differing_sentences"] = r.agreement.differing.size();
      if (r.beam > 1) out["score_gap"] = r.agreement.score_gap;
      if (t->incremental && r.peer_seconds) out["ratio_vs_pytorch"] = *r.peer_seconds / t->seconds;
      std::cout << out.dump() << std::endl;
    }
    if (!r.peer_seconds) continue;
    auto out = line("pytorch", *r.peer_seconds);
    out["torch_version"] = peer->at("torch_version");
    out["threads"] = peer->at("threads");
    out["ratio_vs_pytorch"] = 1.0;
    std::cout << out.dump() << std::endl;
  }
}

void print_table(const std::vector<SearchResult>& results, const std::optional<nlohmann::json>& peer,
                 const DecodeBenchOptions& o) {
  const double tokens = static_cast<double>(o.sentences * o.out_len);
  const std::string peer_name =
      peer ? fmt::format("pytorch {}", peer->at("torch_version").get<std::string>()) : "";
  const size_t path_width = std::max<size_t>(14, peer_name.size());  // "pytorch 1.13.0a0" is 16
  fmt::print("{:<8} {:<{}} {:>9} {:>12} {:>10} {:>9}\n", "search", "path", path_width, "seconds",
             "sentences/s", "tokens/s", "speed-up");
  for (const auto& r : results) {
    auto row = [&](const std::string& path, double seconds) {
      fmt::print("{:<8} {:<{}} {:>9.3f} {:>12.1f} {:>10.0f} {:>8.2f}x\n", search_name(r.beam), path,
                 path_width, seconds, o.sentences / seconds, tokens / seconds,
                 r.recomputed.seconds / seconds);
    };
    row("cached", r.cached.seconds);
    row("recompute", r.recomputed.seconds);
    if (r.peer_seconds) row(peer_name, *r.peer_seconds);
    fmt::print("  {}: {}\n", search_name(r.beam), describe(r.agreement, r.beam, o.sentences));
    if (r.peer_seconds)
      fmt::print("  {}: qkv cached / pytorch = {:.2f}x (goal >= 2x)\n", search_name(r.beam),
                 *r.peer_seconds / r.cached.seconds);
  }
  if (peer) fmt::print("pytorch ran with {} intra-op thread(s)\n", peer->at("threads").get<int64_t>());
}

ModelConfig model_config(const DecodeBenchOptions& o) {
  ModelConfig config;
  config.d_model = o.d_model, config.heads = o.heads, config.d_ff = o.d_ff;
  config.encoder_layers = config.decoder_layers = o.layers;
  config.max_len = 1024;
  return config;
}

void bench_decode(const DecodeBenchOptions& o) {
  if (o.src_len + 1 > 1024 || o.out_len + 1 > 1024) {
    throw ConfigError("bench decode: --src-len and --out-len must stay below 1024 (the model's max_len)");
  }
  torch::manual_seed(0);
  Transformer model(model_config(o), o.vocab, o.vocab);  // validates the shapes (ConfigError naming model.*)
  const auto src = torch::randint(kUnkId + 1, o.vocab, {o.sentences, o.src_len});
  if (!o.json) {
    fmt::print(
        "[bench] decode: d_model {}, {}+{} layers, {} heads, d_ff {}, vocabulary {}; {} sentences of {} "
        "tokens -> {} tokens each; median of {} runs; {}; {}\n",
        o.d_model, o.layers, o.layers, o.heads, o.d_ff, o.vocab, o.sentences, o.src_len, o.out_len,
        o.repetitions, describe_threads(), describe(heap_policy()));
  }
  std::vector<SearchResult> results;
  for (int64_t beam : o.beams) {
    SearchResult r{
        beam, time_search(model, src, beam, true, o), time_search(model, src, beam, false, o), {}, {}};
    r.agreement = compare_float32(r.cached.outputs, r.recomputed.outputs);
    results.push_back(std::move(r));
  }
  model->to(torch::kFloat64);  // the timing is done: the same parameters, now in float64
  for (auto& r : results) check_in_float64(model, src, r, o);
  std::optional<nlohmann::json> peer;
  if (!o.no_peer) peer = run_peer(results, o);
  if (o.json) return print_json(results, peer, o);
  print_table(results, peer, o);
}

void setup_bench_decode(CLI::App& app) {
  auto* bench = app.get_subcommand("bench");
  auto o = std::make_shared<DecodeBenchOptions>();
  auto* cmd = bench->add_subcommand(
      "decode", "Decoding speed: incremental caches vs recomputing the prefix, and PyTorch's");
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
  cmd->add_flag("--no-peer", o->no_peer, "Measure qkv only");
  cmd->add_flag("--json", o->json, "One JSON object per line instead of a table");
  cmd->add_option("--python", o->python, "Python with PyTorch")->capture_default_str();
  cmd->add_option("--peer-script", o->peer_script, "Path of tools/peer_decode.py");
  cmd->callback([o] { bench_decode(*o); });
}

const cli::RegisterCommand registration{"bench decode", 11, setup_bench_decode};

}  // namespace
}  // namespace qkv
