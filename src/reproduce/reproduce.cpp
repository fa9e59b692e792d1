// Table 3 at toy scale: the paper's rows, the scaling rule, the budget's cost model and the row
// results' JSON form. See reproduce.h for the rule and why it keeps each row's ratios.
#include "reproduce/reproduce.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <sstream>

#include <fmt/format.h>

#include "base/error.h"
#include "config/load.h"
#include "train/flops.h"

namespace qkv {
namespace {

namespace fs = std::filesystem;

// The toy task's shared vocabulary (specials included) and a typical padded sentence length in
// tokens, for the cost model; the real values only shift the estimate by a few percent.
constexpr int64_t kToyVocab = 691;
constexpr int64_t kToySentenceTokens = 16;
// Cost model of one training step on 2 cores (libtorch 1.13 CPU, oneDNN sgemm for the linear layers
// and attention products), fitted to the measured steps of the scaled base (d_model 64: 0.035 s per
// 1024-token step) and of row C5 (d_model 128: 0.054 s) on an idle machine, then given a third of
// headroom for a machine that is doing something else as well.
constexpr double kStepOverheadSeconds = 0.03;
constexpr double kSustainedFlops = 150e9;
// Per row, beyond training steps: data loading, dev evaluations and the final dev BLEU.
constexpr double kRowOverheadSeconds = 10.0;
// The toy task's sentences reach 40 words; the table covers them plus <s> or </s> with room.
constexpr int64_t kToyMaxLen = 128;

int64_t divide_exactly(int64_t value, int64_t divisor, const std::string& what) {
  if (divisor < 1 || value % divisor != 0 || value / divisor < 1) {
    throw ConfigError(
        fmt::format("table3 scaling: {} = {} does not divide by {} (the rule must keep the "
                    "row's ratios exactly)",
                    what, value, divisor));
  }
  return value / divisor;
}

int64_t scaled_steps(int64_t steps, const Config& paper_base, const ScaleRule& rule) {
  const double ratio = static_cast<double>(steps) / static_cast<double>(paper_base.train.steps);
  return std::max<int64_t>(1, std::llround(ratio * static_cast<double>(rule.base_steps)));
}

}  // namespace

const std::vector<PaperRow>& table3_rows() {
  static const std::vector<PaperRow> rows = {
      {"base", 4.92, 25.8, 65}, {"A1", 5.29, 24.9, 0},  {"A2", 5.00, 25.5, 0},  {"A3", 4.91, 25.8, 0},
      {"A4", 5.01, 25.4, 0},    {"B1", 5.16, 25.1, 58}, {"B2", 5.01, 25.4, 60}, {"C1", 6.11, 23.7, 36},
      {"C2", 5.19, 25.3, 50},   {"C3", 4.88, 25.5, 80}, {"C4", 5.75, 24.5, 28}, {"C5", 4.66, 26.0, 168},
      {"C6", 5.12, 25.4, 53},   {"C7", 4.75, 26.2, 90}, {"D1", 5.77, 24.6, 0},  {"D2", 4.95, 25.5, 0},
      {"D3", 4.67, 25.3, 0},    {"D4", 5.47, 25.7, 0},  {"E", 4.92, 25.7, 0},   {"big", 4.33, 26.4, 213},
  };
  return rows;
}

const PaperRow& table3_row(const std::string& name) {
  for (const auto& row : table3_rows()) {
    if (row.name == name) return row;
  }
  std::string names;
  for (const auto& row : table3_rows()) names += (names.empty() ? "" : ",") + row.name;
  throw ConfigError(fmt::format("table3: no row \"{}\" (rows: {})", name, names));
}

std::vector<std::string> parse_row_list(const std::string& list) {
  std::vector<std::string> wanted;
  std::stringstream in(list);
  for (std::string item; std::getline(in, item, ',');) {
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    if (!item.empty()) wanted.push_back(table3_row(item).name);
  }
  std::vector<std::string> rows;
  for (const auto& row : table3_rows()) {
    if (wanted.empty() || std::find(wanted.begin(), wanted.end(), row.name) != wanted.end())
      rows.push_back(row.name);
  }
  return rows;
}

std::string row_config_path(const std::string& configs_dir, const std::string& row) {
  return (fs::path(configs_dir) / (row + ".json")).string();
}

nlohmann::json ScaleRule::to_json() const {
  return {{"width_divisor", width_divisor},   {"depth_divisor", depth_divisor},
          {"base_steps", base_steps},         {"max_tokens", max_tokens},
          {"evaluations", evaluations},       {"curve_bleu_sentences", curve_bleu_sentences},
          {"bleu_sentences", bleu_sentences}, {"data_dir", data_dir},
          {"data_seed", data_seed},           {"train_seed", train_seed}};
}

Config scale_config(const Config& full, const Config& paper_base, const ScaleRule& rule) {
  Config c = full;
  ModelConfig& m = c.model;
  const int64_t w = rule.width_divisor;
  m.d_k = divide_exactly(full.model.head_dim_k(), w, "model.d_k");
  m.d_v = divide_exactly(full.model.head_dim_v(), w, "model.d_v");
  m.d_model = divide_exactly(full.model.d_model, w, "model.d_model");
  m.d_ff = divide_exactly(full.model.d_ff, w, "model.d_ff");
  m.encoder_layers = divide_exactly(full.model.encoder_layers, rule.depth_divisor, "model.encoder_layers");
  m.decoder_layers = divide_exactly(full.model.decoder_layers, rule.depth_divisor, "model.decoder_layers");
  m.max_len = kToyMaxLen;

  c.data = DataConfig{};  // the built-in toy task, word level, shared vocabulary
  c.data.task = DataTask::Toy;
  c.data.dir = rule.data_dir;
  c.data.seed = rule.data_seed;
  c.data.train_size = rule.train_size;
  c.data.dev_size = rule.dev_size;

  TrainConfig& t = c.train;
  t.steps = scaled_steps(full.train.steps, paper_base, rule);
  t.warmup = std::max(rule.min_warmup, scaled_steps(full.train.warmup, paper_base, rule));
  // The paper's peak for this width at the scaled warmup (compressed in time when no floor applies).
  t.lr = full.train.lr * std::sqrt(static_cast<double>(t.warmup) / static_cast<double>(full.train.warmup));
  t.max_tokens = rule.max_tokens;
  t.update_freq = 1;
  t.eval_every = std::max<int64_t>(1, rule.base_steps / std::max<int64_t>(1, rule.evaluations));
  t.checkpoint_every = t.eval_every;
  t.keep_checkpoints = 1;
  t.log_every = t.eval_every;
  t.patience = 0;
  t.eval_bleu_max_sentences = rule.curve_bleu_sentences;
  t.seed = rule.train_seed;
  validate(c, "table3 scaled config");
  return c;
}

std::string describe_scaled(const Config& c) {
  const ModelConfig& m = c.model;
  return fmt::format(
      "N {}, d_model {}, d_ff {}, h {}, d_k {}, d_v {}, P_drop {}, ε_ls {}, {} positions, {} steps",
      m.encoder_layers, m.d_model, m.d_ff, m.heads, m.head_dim_k(), m.head_dim_v(), m.dropout,
      c.train.label_smoothing, to_string(m.positional), c.train.steps);
}

double estimated_step_seconds(const Config& config) {
  const int64_t batch = std::max<int64_t>(1, config.train.max_tokens / kToySentenceTokens);
  const double flops =
      training_flops(config.model, kToyVocab, batch, kToySentenceTokens, kToySentenceTokens) *
      static_cast<double>(config.train.update_freq);
  return kStepOverheadSeconds + flops / kSustainedFlops;
}

ScaleRule rule_for_budget(double minutes, const std::vector<Config>& full_rows, const Config& paper_base,
                          const ScaleRule& shape) {
  if (!(minutes > 0)) throw ConfigError(fmt::format("--budget-minutes must be > 0, got {}", minutes));
  ScaleRule rule = shape;
  double seconds_per_base_step = 0.0;  // the whole table's training time per step of the base row
  for (const auto& full : full_rows) {
    const double ratio = static_cast<double>(full.train.steps) / static_cast<double>(paper_base.train.steps);
    seconds_per_base_step += ratio * estimated_step_seconds(scale_config(full, paper_base, rule));
  }
  const double training_seconds =
      minutes * 60.0 - kRowOverheadSeconds * static_cast<double>(full_rows.size());
  const auto steps = static_cast<int64_t>(std::max(0.0, training_seconds) / seconds_per_base_step);
  rule.base_steps = std::max<int64_t>(100, steps / 50 * 50);
  return rule;
}

nlohmann::json RowResult::to_json() const {
  nlohmann::json points = nlohmann::json::array();
  for (const auto& p : curve) points.push_back({p.step, p.dev_ppl});
  return {{"row", row},
          {"config", config_to_json(config)},
          {"params", params},
          {"steps", steps},
          {"dev_ppl", dev_ppl},
          {"dev_bleu", dev_bleu},
          {"bleu_sentences", bleu_sentences},
          {"wall_seconds", wall_seconds},
          {"curve", points}};
}

RowResult RowResult::from_json(const nlohmann::json& j, const std::string& source) {
  RowResult r;
  try {
    r.row = j.at("row").get<std::string>();
    r.config = config_from_json(j.at("config"), source + " (config)");
    r.params = j.at("params").get<int64_t>();
    r.steps = j.at("steps").get<int64_t>();
    r.dev_ppl = j.at("dev_ppl").get<double>();
    r.dev_bleu = j.at("dev_bleu").get<double>();
    r.bleu_sentences = j.at("bleu_sentences").get<int64_t>();
    r.wall_seconds = j.at("wall_seconds").get<double>();
    for (const auto& p : j.at("curve")) r.curve.push_back({p.at(0).get<int64_t>(), p.at(1).get<double>()});
  } catch (const nlohmann::json::exception& e) {
    throw DataError(fmt::format("{}: not a table3 row result ({})", source, e.what()));
  } catch (const ConfigError& e) {
    throw DataError(fmt::format("{}: its config is invalid ({})", source, e.what()));
  }
  return r;
}

}  // namespace qkv
