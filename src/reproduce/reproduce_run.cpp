// The resumable Table 3 runner behind `qkv reproduce table3`: trains each scaled row with the
// trainer (trainer.h), evaluates its final parameters on the dev set (perplexity on every sentence,
// BLEU with the paper's beam 4 and α 0.6 on the first rule.bleu_sentences), records the result, and
// writes the tables and the learning-curve plot. See reproduce.h for the directory layout.
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>

#include <fmt/format.h>

#include "base/error.h"
#include "eval/translate.h"
#include "reproduce/plot_script.h"
#include "reproduce/reproduce.h"
#include "train/metrics.h"
#include "train/run_setup.h"
#include "train/trainer.h"

namespace qkv {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string result_path(const std::string& row_dir) {
  return (fs::path(row_dir) / "result.json").string();
}

std::optional<RowResult> read_result(const std::string& row_dir) {
  const std::string path = result_path(row_dir);
  if (!fs::exists(path)) return std::nullopt;
  std::ifstream in(path);
  json j;
  try {
    j = json::parse(in);
  } catch (const json::parse_error& e) {
    throw DataError(fmt::format("{}: invalid JSON ({}); delete it to retrain the row", path, e.what()));
  }
  return RowResult::from_json(j, path);
}

// Dev perplexity at each validation of the run, from its metrics.jsonl (the last record of a step
// wins, should a resumed run have repeated one).
std::vector<CurvePoint> read_curve(const std::string& metrics_path) {
  std::map<int64_t, double> by_step;
  std::ifstream in(metrics_path);
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    const json record = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!record.is_object() || record.value("split", "") != "dev" || record.contains("final")) continue;
    by_step[record.at("step").get<int64_t>()] = record.at("ppl").get<double>();
  }
  std::vector<CurvePoint> curve;
  for (const auto& [step, ppl] : by_step) curve.push_back({step, ppl});
  return curve;
}

// A run directory's newest checkpoint must hold exactly the config we would train now.
void check_resumable(const RunPaths& paths, const Config& scaled) {
  const auto path = latest_checkpoint(paths);
  const CheckpointMeta meta = CheckpointMeta::read(LoadedCheckpoint(*path));
  if (config_to_json(meta.config) != config_to_json(scaled)) {
    throw ConfigError(fmt::format(
        "{} was started with another scaled config (another --budget-minutes?): delete {} to retrain the "
        "row, or use another --out",
        *path, paths.dir));
  }
}

// Trains (or resumes) one row and evaluates it. Returns nullopt when training was interrupted.
std::optional<RowResult> train_row(const std::string& row, const Config& scaled, const std::string& row_dir,
                                   const ScaleRule& rule) {
  const RunPaths paths(row_dir);
  const bool resume = latest_checkpoint(paths).has_value();
  if (resume) check_resumable(paths, scaled);
  prepare_run_dir(paths, resume, /*overwrite=*/!resume);
  fs::create_directories(row_dir);
  std::ofstream train_log(fs::path(row_dir) / "train.log", std::ios::app);
  TrainOptions options;
  options.out_dir = row_dir;
  options.resume = resume;
  options.log = &train_log;
  options.final_evaluation = false;  // the table evaluates the final parameters, not the best ones
  TrainSummary summary;
  {
    Trainer trainer(scaled, options);
    summary = trainer.run();
  }
  if (summary.reason == StopReason::Interrupted) return std::nullopt;

  const auto eval_start = std::chrono::steady_clock::now();
  InferenceModel inference = load_inference_model(summary.last_checkpoint, default_device());
  const Split dev = load_split(scaled.data, "dev", inference.codecs, scaled.model.max_len - 1, train_log);
  EvalResult eval = evaluate_nll(inference.model, dev, scaled.train.max_tokens);
  evaluate_bleu(inference.model, dev, inference.codecs, scaled.decode, rule.bleu_sentences, eval);
  const double eval_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - eval_start).count();
  train_log << eval.summary() << " | final parameters, step " << summary.step << "\n";

  RowResult result;
  result.row = row;
  result.config = scaled;
  for (const auto& p : inference.model->parameters()) result.params += p.numel();
  result.steps = summary.step;
  result.dev_ppl = eval.ppl();
  result.dev_bleu = eval.bleu->score;
  result.bleu_sentences = eval.bleu_sentences;
  result.wall_seconds = summary.seconds + eval_seconds;
  result.curve = read_curve(paths.metrics);
  std::ofstream(result_path(row_dir)) << result.to_json().dump(1) << "\n";
  return result;
}

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  if (!out) throw std::runtime_error(fmt::format("{}: cannot write", path.string()));
}

void write_outputs(const ReproduceOptions& options, const ScaleRule& rule,
                   const std::vector<RowResult>& results, const Config& scaled_base, std::ostream& log) {
  const fs::path dir(options.out_dir);
  std::string md = "# Table 3 of \"Attention Is All You Need\", scaled to the toy task\n\n";
  md += fmt::format("Made by `{}`. Scaling rule: {}.\n\n", options.command, rule.to_json().dump());
  md += fmt::format(
      "Ours: the toy task's dev set; perplexity per target token (unsmoothed) on all {} sentences, BLEU "
      "(sacreBLEU 13a) with beam 4 and α 0.6 on the first {}; the final parameters, no averaging. Paper: "
      "newstest2013, perplexity per wordpiece. Blank = as base.\n\n",
      rule.dev_size, rule.bleu_sentences);
  md += table3_markdown(results, scaled_base);
  write_text(dir / "table3.md", md);
  write_text(dir / "table3.csv", table3_csv(results));
  write_text(dir / "curves.csv", curves_csv(results));
  write_text(dir / "rule.json", rule.to_json().dump(2) + "\n");
  log << fmt::format("[table3] wrote {}, table3.csv, curves.csv ({} rows)\n", (dir / "table3.md").string(),
                     results.size());
  if (!options.plot) return;
  run_python_script(find_tool_script("plot_curves.py"),
                    {(dir / "curves.csv").string(), (dir / "table3_curves.png").string()});
}

}  // namespace

std::vector<Config> load_full_rows(const std::string& configs_dir) {
  std::vector<Config> rows;
  for (const auto& row : table3_rows()) {
    const std::string path = row_config_path(configs_dir, row.name);
    if (!fs::exists(path)) {
      throw ConfigError(
          fmt::format("{}: missing; --configs must name the directory of the paper's configs "
                      "(configs/aiayn in the repository)",
                      path));
    }
    rows.push_back(resolve_config(path));
  }
  return rows;
}

std::vector<RowResult> run_table3(const ReproduceOptions& options) {
  std::ostream& log = options.log != nullptr ? *options.log : std::cout;
  ScaleRule rule = options.rule;
  rule.data_dir = (fs::path(options.out_dir) / "data").string();
  const std::vector<Config> full = load_full_rows(options.configs_dir);
  const Config& paper_base = full.front();
  const Config scaled_base = scale_config(paper_base, paper_base, rule);
  const std::vector<std::string> rows = options.rows.empty() ? parse_row_list("") : options.rows;

  bool interrupted = false;
  for (size_t i = 0; i < rows.size() && !interrupted; ++i) {
    const std::string& row = rows[i];
    const size_t index = static_cast<size_t>(&table3_row(row) - &table3_rows().front());
    const Config scaled = scale_config(full[index], paper_base, rule);
    const std::string row_dir = (fs::path(options.out_dir) / "rows" / row).string();
    if (const auto done = read_result(row_dir)) {
      if (config_to_json(done->config) != config_to_json(scaled)) {
        throw ConfigError(fmt::format(
            "{} was trained with another scaling ({} steps; now {}): pass the --budget-minutes it was made "
            "with, use another --out, or delete {} to retrain it",
            result_path(row_dir), done->steps, scaled.train.steps, row_dir));
      }
      log << fmt::format("[table3] {} ({}/{}): finished already, dev ppl {:.3f}, BLEU {:.2f}\n", row, i + 1,
                         rows.size(), done->dev_ppl, done->dev_bleu);
      continue;
    }
    log << fmt::format("[table3] {} ({}/{}): {}; log in {}/train.log\n", row, i + 1, rows.size(),
                       describe_scaled(scaled), row_dir);
    log.flush();
    const auto result = train_row(row, scaled, row_dir, rule);
    if (!result) {
      log << fmt::format("[table3] interrupted during {}; run the same command again to continue\n", row);
      interrupted = true;
      break;
    }
    log << fmt::format("[table3] {}: {} parameters, dev ppl {:.3f}, BLEU {:.2f} ({} sentences), {}\n", row,
                       result->params, result->dev_ppl, result->dev_bleu, result->bleu_sentences,
                       format_duration(result->wall_seconds));
  }

  // The tables hold every finished row in DIR made with this rule, whichever run trained it.
  std::vector<RowResult> results;
  for (size_t i = 0; i < table3_rows().size(); ++i) {
    const std::string& row = table3_rows()[i].name;
    auto done = read_result((fs::path(options.out_dir) / "rows" / row).string());
    if (!done) continue;
    if (config_to_json(done->config) != config_to_json(scale_config(full[i], paper_base, rule))) {
      log << fmt::format("[table3] {}: left out of the tables, trained with another scaling rule\n", row);
      continue;
    }
    results.push_back(std::move(*done));
  }
  if (!results.empty()) write_outputs(options, rule, results, scaled_base, log);
  return results;
}

}  // namespace qkv
