// Table 3 at toy scale (src/reproduce/reproduce.h): the scaling rule keeps every row's ratios to base
// and compresses the paper's learning-rate curve in time; the budget rule is monotone and whole-table;
// the table writers follow the paper's layout; the runner does not retrain a finished row; and the
// attention maps drawn from its checkpoint are distributions, causal in the decoder.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

#include "base/error.h"
#include "eval/attention_map.h"
#include "reproduce/reproduce.h"
#include "support.h"
#include "train/schedule.h"

namespace qkv {
namespace {

namespace fs = std::filesystem;

std::string configs_dir() {
  return (fs::path(QKV_SOURCE_DIR) / "configs" / "aiayn").string();
}

const std::vector<Config>& full_rows() {
  static const std::vector<Config> rows = load_full_rows(configs_dir());
  return rows;
}

TEST(Table3Rows, PaperOrderAndLookup) {
  const auto& rows = table3_rows();
  ASSERT_EQ(rows.size(), 20u);
  EXPECT_EQ(rows.front().name, "base");
  EXPECT_EQ(rows.back().name, "big");
  EXPECT_DOUBLE_EQ(table3_row("A1").bleu, 24.9);
  EXPECT_DOUBLE_EQ(table3_row("C5").params_m, 168);
  EXPECT_DOUBLE_EQ(table3_row("big").ppl, 4.33);
  EXPECT_EQ(parse_row_list(" C4, A1,A1,big"), (std::vector<std::string>{"A1", "C4", "big"}));
  EXPECT_EQ(parse_row_list("").size(), 20u);
  try {
    parse_row_list("A1,F2");
    FAIL() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("no row \"F2\""), std::string::npos) << e.what();
  }
}

TEST(ScaleRule, KeepsEveryRowsRatiosToBase) {
  const Config& paper_base = full_rows().front();
  ScaleRule rule;  // width ÷ 8, depth ÷ 2, base 1000 steps
  for (size_t i = 0; i < full_rows().size(); ++i) {
    const Config& full = full_rows()[i];
    SCOPED_TRACE("row " + table3_rows()[i].name);
    const Config s = scale_config(full, paper_base, rule);
    EXPECT_EQ(s.model.d_model * 8, full.model.d_model);
    EXPECT_EQ(s.model.d_ff * 8, full.model.d_ff);
    EXPECT_EQ(s.model.head_dim_k() * 8, full.model.head_dim_k());
    EXPECT_EQ(s.model.head_dim_v() * 8, full.model.head_dim_v());
    EXPECT_EQ(s.model.heads, full.model.heads);
    EXPECT_EQ(s.model.encoder_layers * 2, full.model.encoder_layers);
    EXPECT_EQ(s.model.decoder_layers * 2, full.model.decoder_layers);
    EXPECT_EQ(s.model.dropout, full.model.dropout);
    EXPECT_EQ(s.train.label_smoothing, full.train.label_smoothing);
    EXPECT_EQ(s.model.positional, full.model.positional);
    EXPECT_EQ(s.model.norm, full.model.norm);
    EXPECT_EQ(s.model.share_embeddings, full.model.share_embeddings);
    EXPECT_EQ(s.train.steps * 100, full.train.steps);  // 100K -> 1000, big's 300K -> 3000
    EXPECT_EQ(s.train.warmup, 100);                    // 4% of 1000 is under the floor
    EXPECT_EQ(s.train.max_tokens, rule.max_tokens);    // every row batches alike
    EXPECT_EQ(s.train.eval_every, 100);                // curves line up across rows
    EXPECT_EQ(s.decode.beam, 4);
    EXPECT_DOUBLE_EQ(s.decode.alpha, 0.6);
    EXPECT_EQ(s.data.task, DataTask::Toy);
  }
}

TEST(ScaleRule, CompressesThePapersScheduleInTime) {
  // Without the warmup floor in play (4% of 2500 = 100 steps): lr_scaled(t) = lr_paper(t · 40) at
  // the scaled width, for every step.
  const Config& paper_base = full_rows().front();
  ScaleRule rule;
  rule.base_steps = 2500;
  const Config s = scale_config(paper_base, paper_base, rule);
  EXPECT_EQ(s.train.warmup, 100);
  for (int64_t t : {1, 50, 100, 101, 1000, 2500}) {
    const double paper = learning_rate(LrSchedule::Noam, 1.0, 4000, s.model.d_model, t * 40);
    // Relative 1e-12: the same formula in double at t and at t · 40, rounding only.
    EXPECT_NEAR(learning_rate(s, t), paper, 1e-12 * paper) << "step " << t;
  }
}

TEST(ScaleRule, WarmupFloorKeepsThePapersPeak) {
  // 4% of 600 steps is 24: the floor makes it 100, and the peak stays the paper's for the width.
  const Config& paper_base = full_rows().front();
  ScaleRule rule;
  rule.base_steps = 600;
  const Config s = scale_config(paper_base, paper_base, rule);
  EXPECT_EQ(s.train.warmup, 100);
  const double paper_peak = learning_rate(LrSchedule::Noam, 1.0, 4000, s.model.d_model, 4000);
  EXPECT_NEAR(learning_rate(s, 100), paper_peak, 1e-12 * paper_peak);  // as above
  EXPECT_LT(learning_rate(s, 99), paper_peak);
  EXPECT_NEAR(learning_rate(s, 400), paper_peak * 0.5, 1e-12 * paper_peak);  // step^-0.5 after the peak
}

TEST(ScaleRule, RefusesAWidthThatDoesNotDivide) {
  ScaleRule rule;
  rule.width_divisor = 3;  // 512 / 3 is not whole
  EXPECT_THROW(scale_config(full_rows().front(), full_rows().front(), rule), ConfigError);
  rule = ScaleRule{};
  rule.depth_divisor = 4;  // C1's 2 layers / 4 is not whole
  EXPECT_THROW(scale_config(full_rows()[7], full_rows().front(), rule), ConfigError);
}

TEST(ScaleRule, BudgetSetsStepsForTheWholeTable) {
  const Config& base = full_rows().front();
  const ScaleRule hour = rule_for_budget(60, full_rows(), base);
  const ScaleRule two_hours = rule_for_budget(120, full_rows(), base);
  EXPECT_EQ(hour.base_steps % 50, 0);
  EXPECT_GE(hour.base_steps, 100);  // the rule's floor (the 0.01-minute budget below gets it)
  EXPECT_GT(two_hours.base_steps, 2 * hour.base_steps - 100);  // past the fixed per-row overhead
  EXPECT_EQ(rule_for_budget(0.01, full_rows(), base).base_steps, 100);
  EXPECT_THROW(rule_for_budget(0, full_rows(), base), ConfigError);
  // The estimate the budget is built on, summed over the table, fits the budget.
  double seconds = 0;
  for (const auto& full : full_rows()) {
    const Config s = scale_config(full, base, hour);
    seconds += static_cast<double>(s.train.steps) * estimated_step_seconds(s);
  }
  // Measured: 3392 s of the 3600 (2900 base steps). The rule rounds steps down to multiples of 50
  // and leaves each row its fixed overhead; 60% of the budget fails a rule that wastes the hour.
  EXPECT_LE(seconds, 3600.0);
  EXPECT_GE(seconds, 0.6 * 3600.0);
  // Bigger rows cost more per step (big: 4x the base's FLOPs, the fixed per-step overhead aside).
  const Config s_base = scale_config(base, base, hour);
  const Config s_big = scale_config(full_rows().back(), base, hour);
  // 1.5: the fixed per-step overhead keeps the ratio well below the FLOPs' 4.
  EXPECT_GT(estimated_step_seconds(s_big), 1.5 * estimated_step_seconds(s_base));
}

RowResult fake_result(const std::string& row, size_t index, double ppl, double bleu) {
  RowResult r;
  r.row = row;
  r.config = scale_config(full_rows()[index], full_rows().front(), ScaleRule{});
  r.params = 394432 + static_cast<int64_t>(index);
  r.steps = r.config.train.steps;
  r.dev_ppl = ppl;
  r.dev_bleu = bleu;
  r.bleu_sentences = 200;
  r.wall_seconds = 125;
  r.curve = {{100, 40.5}, {200, 12.25}};
  return r;
}

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

TEST(Table3Writers, MarkdownInPaperOrderWithBlanksAsBase) {
  // Given out of order: big (index 19), A1 (1), base (0).
  const std::vector<RowResult> results = {fake_result("big", 19, 3.5, 40.0), fake_result("A1", 1, 5.25, 30.5),
                                          fake_result("base", 0, 4.75, 35.25)};
  const Config scaled_base = results[2].config;
  const auto md = lines(table3_markdown(results, scaled_base));
  ASSERT_EQ(md.size(), 5u);
  EXPECT_EQ(md[0],
            "| row | N | d_model | d_ff | h | d_k | d_v | P_drop | ε_ls | pos | steps | params | dev PPL | "
            "dev BLEU "
            "| paper PPL | paper BLEU | paper params ×10⁶ | time |");
  EXPECT_EQ(md[2],
            "| base | 3 | 64 | 256 | 8 | 8 | 8 | 0.1 | 0.1 | sin | 1000 | 394,432 | 4.75 | 35.25 | 4.92 | "
            "25.8 | 65 "
            "| 2m05s |");
  EXPECT_EQ(md[3],
            "| A1 |  |  |  | 1 | 64 | 64 |  |  |  |  | 394,433 | 5.25 | 30.50 | 5.29 | 24.9 |  | 2m05s |");
  EXPECT_EQ(md[4],
            "| big |  | 128 | 512 | 16 |  |  | 0.3 |  |  | 3000 | 394,451 | 3.50 | 40.00 | 4.33 | 26.4 | 213 "
            "| 2m05s |");
}

TEST(Table3Writers, CsvHasEveryValue) {
  const std::vector<RowResult> results = {fake_result("E", 18, 4.5, 33.0),
                                          fake_result("base", 0, 4.75, 35.25)};
  const auto csv = lines(table3_csv(results));
  ASSERT_EQ(csv.size(), 3u);
  EXPECT_EQ(csv[1], "base,3,64,256,8,8,8,0.1,0.1,sinusoidal,1000,394432,4.7500,35.25,200,125.0,4.92,25.8,65");
  EXPECT_EQ(csv[2], "E,3,64,256,8,8,8,0.1,0.1,learned,1000,394450,4.5000,33.00,200,125.0,4.92,25.7,");
  const auto curves = lines(curves_csv(results));
  EXPECT_EQ(curves, (std::vector<std::string>{"row,step,dev_ppl", "base,100,40.5000", "base,200,12.2500",
                                              "E,100,40.5000", "E,200,12.2500"}));
}

TEST(Table3Writers, RowResultRoundTripsThroughJson) {
  const RowResult r = fake_result("C4", 10, 6.5, 20.0);
  const RowResult back = RowResult::from_json(r.to_json(), "result.json");
  EXPECT_EQ(back.to_json(), r.to_json());
  EXPECT_EQ(back.config.model.d_model, 32);
  EXPECT_THROW(RowResult::from_json(nlohmann::json{{"row", "C4"}}, "result.json"), DataError);
}

// A tiny table (one row of 1 layer, 10 steps, 200 training pairs): the runner writes the tables,
// does not retrain the finished row, and refuses to mix it with another scaling.
TEST(Table3Runner, FinishedRowIsNotRetrained) {
  const test::TempDir temp;
  const fs::path dir = temp.path / "table3";
  ReproduceOptions options;
  options.out_dir = dir.string();
  options.configs_dir = configs_dir();
  options.rows = {"C1"};
  options.rule.base_steps = 10;
  options.rule.evaluations = 2;
  options.rule.train_size = 200;
  options.rule.dev_size = 20;
  options.rule.bleu_sentences = 5;
  options.rule.curve_bleu_sentences = 5;
  options.plot = false;
  std::ostringstream first_log;
  options.log = &first_log;
  const auto first = run_table3(options);
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first[0].row, "C1");
  EXPECT_EQ(first[0].steps, 10);
  EXPECT_EQ(first[0].bleu_sentences, 5);
  EXPECT_GT(first[0].dev_ppl, 1.0);  // a perplexity, and 10 steps cannot have learned the task
  ASSERT_EQ(first[0].curve.size(), 2u);
  EXPECT_EQ(first[0].curve[1].step, 10);
  EXPECT_TRUE(fs::exists(dir / "table3.md"));
  EXPECT_TRUE(fs::exists(dir / "table3.csv"));
  EXPECT_TRUE(fs::exists(dir / "curves.csv"));
  const auto stamp = fs::last_write_time(dir / "rows" / "C1" / "result.json");

  std::ostringstream second_log;
  options.log = &second_log;
  const auto second = run_table3(options);
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(second[0].to_json(), first[0].to_json());
  EXPECT_EQ(fs::last_write_time(dir / "rows" / "C1" / "result.json"), stamp);
  EXPECT_NE(second_log.str().find("C1 (1/1): finished already"), std::string::npos) << second_log.str();

  // Same seed, same table: a fresh directory trains the row to the same numbers.
  const fs::path again = dir / "again";
  options.out_dir = again.string();
  const auto fresh = run_table3(options);
  ASSERT_EQ(fresh.size(), 1u);
  EXPECT_EQ(fresh[0].dev_ppl, first[0].dev_ppl);
  EXPECT_EQ(fresh[0].dev_bleu, first[0].dev_bleu);
  EXPECT_EQ(fresh[0].curve[1].dev_ppl, first[0].curve[1].dev_ppl);
  options.out_dir = dir.string();

  options.rule.base_steps = 20;  // another budget: the finished row does not fit it
  EXPECT_THROW(run_table3(options), ConfigError);

  // The attention pictures of the row's checkpoint: one probability distribution per query, the
  // decoder's self-attention causal, the tokens matching the maps' sides.
  InferenceModel loaded =
      load_inference_model((dir / "rows" / "C1" / "checkpoints" / "step-10.pt").string(), torch::kCPU);
  const AttentionPicture picture = collect_attention(loaded, "the student sells the thief .");
  const auto maps = attention_json(picture, 1, std::nullopt);
  const size_t s = picture.src_tokens.size(), t = picture.tgt_in_tokens.size();
  EXPECT_EQ(s, 7u);  // six words and </s>
  EXPECT_EQ(picture.src_tokens.back(), "</s>");
  EXPECT_EQ(picture.tgt_in_tokens.front(), "<s>");
  EXPECT_EQ(picture.tgt_out_tokens.size(), t);
  ASSERT_EQ(maps["heads"].size(), 8u);
  for (const char* kind : {"encoder_self", "decoder_self", "decoder_cross"}) {
    SCOPED_TRACE(kind);
    const auto& grid = maps[kind][7];  // head 8
    ASSERT_EQ(grid.size(), std::string(kind) == "encoder_self" ? s : t);
    for (size_t q = 0; q < grid.size(); ++q) {
      double sum = 0;
      for (size_t k = 0; k < grid[q].size(); ++k) {
        sum += grid[q][k].get<double>();
        if (std::string(kind) == "decoder_self" && k > q) {
          EXPECT_EQ(grid[q][k].get<double>(), 0.0);
        }
      }
      EXPECT_NEAR(sum, 1.0, 1e-6);  // float32 softmax rows, summed in double
    }
  }
  EXPECT_EQ(attention_json(picture, 1, 3)["heads"], nlohmann::json::array({3}));
  EXPECT_THROW(attention_json(picture, 2, std::nullopt), ConfigError);  // C1 has one layer
  EXPECT_THROW(attention_json(picture, 1, 9), ConfigError);
}

}  // namespace
}  // namespace qkv
