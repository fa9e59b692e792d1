// Reproducing Table 3 of Vaswani et al. 2017 ("Variations on the Transformer architecture") at toy
// scale: the paper's rows, the rule that shrinks each row to the toy translation task while keeping
// its ratios to base, the resumable runner behind `qkv reproduce table3`, and the table writers.
//
// The scaling rule (ScaleRule, scale_config). Each row's full-size config (configs/aiayn/<row>.json)
// is shrunk so that what the row varies stays in the same proportion to base:
//   - widths: d_model, d_ff, d_k and d_v are divided by width_divisor (512 -> 64 at the default 8),
//     so heads vs d_k (A, B), d_ff / d_model (C6, C7) and d_model's ratio to base (C4, C5) are kept;
//     the number of heads is kept as is;
//   - depth: layers per stack are divided by depth_divisor (6 -> 3; C1-C3's 2, 4, 8 -> 1, 2, 4);
//   - dropout, label smoothing, positional kind, norm order, tying: unchanged;
//   - steps: the base row trains base_steps; every row keeps its ratio to the paper's 100K (big: 3×);
//   - schedule: the paper's (eq. 3, d_model^-0.5 following the row's scaled width) with warmup
//     keeping its ratio to the steps (4000 / 100K = 4%), but never under min_warmup steps, and the
//     schedule's factor sqrt(warmup / 4000). The peak is then the paper's peak for the scaled width,
//     d_model^-0.5 · 4000^-0.5, and the decay after it goes as step^-0.5 as in the paper; when the
//     4% is above min_warmup, lr(t) is exactly the paper's lr at step t · 100K / base_steps (the
//     paper's curve compressed in time). The floor exists because a post-norm Transformer whose
//     learning rate peaks within a few dozen steps, before Adam's second-moment estimate (β2 =
//     0.98, ~50 steps) has settled, stalls at the unigram distribution: measured here, 24 warmup
//     steps left the scaled base at perplexity 19 after 600 steps, 100 steps reached 12.7;
//   - data and batches: the built-in toy task, max_tokens per batch, the same for every row (the
//     paper also batched every row alike). 1024 tokens rather than more: on 2 cores a step's fixed
//     cost is large next to its arithmetic at these widths, and more, smaller updates learn the toy
//     task faster per second.
// rule_for_budget() chooses base_steps from a time budget with a cost model calibrated on a 2-core
// CPU, always over the whole table, so that a row's steps do not depend on which rows are run.
//
// Same seed, same table: training is deterministic for a given config and thread count (trainer.h),
// so a rerun reproduces every number but the wall times.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/config.h"

namespace qkv {

// One row of Table 3 as the paper printed it (newstest2013, beam 4, α 0.6, no averaging).
struct PaperRow {
  std::string name;       // "base", "A1".."A4", "B1", "B2", "C1".."C7", "D1".."D4", "E", "big"
  double ppl = 0.0;       // dev perplexity per wordpiece
  double bleu = 0.0;      // dev BLEU
  double params_m = 0.0;  // parameters ×10⁶; 0 where the paper leaves the cell blank
};

// All 21 rows in the paper's order.
const std::vector<PaperRow>& table3_rows();
// Throws ConfigError naming the valid rows.
const PaperRow& table3_row(const std::string& name);
// "A1,C4,big" -> those rows in the paper's order (duplicates removed); "" -> every row.
std::vector<std::string> parse_row_list(const std::string& list);
// configs_dir/<row>.json
std::string row_config_path(const std::string& configs_dir, const std::string& row);

struct ScaleRule {
  int64_t width_divisor = 8;             // d_model, d_ff, d_k, d_v ÷ this
  int64_t depth_divisor = 2;             // layers per stack ÷ this
  int64_t base_steps = 1000;             // the base row's steps (the paper's 100K)
  int64_t max_tokens = 1024;             // per batch and side, every row
  int64_t min_warmup = 100;              // warmup floor (see the schedule above)
  int64_t evaluations = 10;              // dev evaluations over the base row's steps (the learning curve)
  int64_t curve_bleu_sentences = 50;     // dev sentences translated at each evaluation
  int64_t bleu_sentences = 200;          // dev sentences translated for the table's BLEU
  std::string data_dir = "data/table3";  // where the toy corpus is generated
  int64_t train_size = 20000;            // toy training pairs (data.train_size)
  int64_t dev_size = 500;                // toy dev pairs: perplexity on all, BLEU on bleu_sentences
  int64_t data_seed = 1;
  int64_t train_seed = 1;

  nlohmann::json to_json() const;
};

// The toy-scale config of one row. `full` is the row's full-size config, `paper_base` the paper's
// base config (for the ratios of steps and warmup). Throws ConfigError when a width or depth does
// not divide evenly.
Config scale_config(const Config& full, const Config& paper_base, const ScaleRule& rule);

// The rule whose base_steps make the whole table (every row, at the default widths) take about
// `minutes` of wall time on a 2-core CPU: training time by the cost model below plus a fixed
// allowance per row for evaluation. base_steps is rounded down to a multiple of 50, at least 100.
// `full_rows` are the full-size configs of every row, in the paper's order.
// `shape` gives every field but base_steps (the widths, batch, ...).
ScaleRule rule_for_budget(double minutes, const std::vector<Config>& full_rows, const Config& paper_base,
                          const ScaleRule& shape = {});

// "N 3, d_model 64, d_ff 256, h 8, d_k 8, d_v 8, P_drop 0.1, ε_ls 0.1, sinusoidal positions, 1000 steps"
std::string describe_scaled(const Config& scaled);

// The cost model: estimated seconds of one training step of `config` on the toy task on a 2-core
// CPU (an overhead per step plus training FLOPs at a sustained rate, both measured on this machine).
double estimated_step_seconds(const Config& config);

// One row's outcome, as DIR/rows/<row>/result.json holds it.
struct CurvePoint {
  int64_t step = 0;
  double dev_ppl = 0.0;
};
struct RowResult {
  std::string row;
  Config config;       // the scaled config it was trained with
  int64_t params = 0;  // registered parameters (toy vocabulary)
  int64_t steps = 0;
  double dev_ppl = 0.0;  // per target token, unsmoothed, on the whole dev set
  double dev_bleu = 0.0;
  int64_t bleu_sentences = 0;
  double wall_seconds = 0.0;  // training, validations and the final evaluation
  std::vector<CurvePoint> curve;

  nlohmann::json to_json() const;
  static RowResult from_json(const nlohmann::json& j, const std::string& source);  // throws DataError
};

// The table in the paper's layout: the scaled columns (blank where a row equals the scaled base, as
// the paper leaves cells blank), our parameters, steps, dev PPL and BLEU and wall time, and the
// paper's PPL, BLEU and parameters beside them. Rows appear in the paper's order.
std::string table3_markdown(const std::vector<RowResult>& results, const Config& scaled_base);
// One line per row, every value filled in, with a header line.
std::string table3_csv(const std::vector<RowResult>& results);
// "row,step,dev_ppl" lines for the learning-curve plot.
std::string curves_csv(const std::vector<RowResult>& results);

// The runner. Layout of the output directory:
//   DIR/data/                 the toy corpus (generated once)
//   DIR/rows/<row>/           the row's training run (run_setup.h) and train.log
//   DIR/rows/<row>/result.json  written when the row is finished: a finished row is never retrained
//   DIR/table3.md, DIR/table3.csv, DIR/curves.csv, DIR/rule.json: every finished row so far
// A row that has checkpoints but no result resumes from its newest checkpoint. A finished row
// whose scaled config differs from the current rule's (another budget) is refused, not retrained.
struct ReproduceOptions {
  std::string out_dir;
  std::string configs_dir = "configs/aiayn";
  std::vector<std::string> rows;  // to train, in the paper's order; empty = every row
  ScaleRule rule;                 // its data_dir is replaced by DIR/data
  std::string command;            // the command line, recorded in table3.md
  std::ostream* log = nullptr;    // progress lines (std::cout when null)
  bool plot = true;               // draw DIR/table3_curves.png with tools/plot_curves.py
};

// The full-size configs of every row, loaded from configs_dir (ConfigError when one is missing).
std::vector<Config> load_full_rows(const std::string& configs_dir);

// Trains the rows not finished yet, then writes the tables over every finished row in DIR.
// Returns those results in the paper's order. Stops early (returning what is finished) when
// training is interrupted by SIGINT/SIGTERM.
std::vector<RowResult> run_table3(const ReproduceOptions& options);

}  // namespace qkv
