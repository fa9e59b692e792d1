// qkv reproduce table3: Table 3 of Vaswani et al. 2017 ("Variations on the Transformer
// architecture"), every row scaled down to the toy task (src/reproduce/reproduce.h has the rule).
//
//   qkv reproduce table3 --out runs/table3                       # the whole table, about an hour
//   qkv reproduce table3 --out runs/table3 --rows base,A1,A4     # some rows (same steps as in the table)
//   qkv reproduce table3 --out runs/table3 --budget-minutes 20   # a smaller budget: fewer steps per row
//   qkv reproduce table3 --out runs/t3w4 --width-divisor 4 --budget-minutes 300   # wider, longer
//   qkv reproduce table3 --out runs/table3 --dry-run             # the scaled rows and their cost
//
// Rerunning the same command skips the finished rows and resumes an interrupted one.
#include <memory>
#include <string>

#include <fmt/format.h>

#include "base/error.h"
#include "cli.h"
#include "reproduce/reproduce.h"

namespace qkv::cli {
namespace {

struct ReproduceArgs {
  std::string out;
  std::string rows;
  std::string configs = "configs/aiayn";
  double budget_minutes = 60.0;
  int64_t width_divisor = ScaleRule{}.width_divisor;
  bool dry_run = false;
  std::string command;
};

void run_reproduce_table3(const ReproduceArgs& args) {
  ReproduceOptions options;
  options.out_dir = args.out;
  options.configs_dir = args.configs;
  options.rows = parse_row_list(args.rows);
  const std::vector<Config> full = load_full_rows(args.configs);
  ScaleRule shape;
  shape.width_divisor = args.width_divisor;
  options.rule = rule_for_budget(args.budget_minutes, full, full.front(), shape);
  options.command = args.command;
  fmt::print(
      "[table3] budget {} minutes on 2 cores, widths / {} (base d_model {}) -> base row {} steps (big {}); "
      "{} "
      "rows to do in {}\n",
      args.budget_minutes, args.width_divisor, full.front().model.d_model / args.width_divisor,
      options.rule.base_steps, 3 * options.rule.base_steps, options.rows.size(), args.out);
  if (!args.dry_run) {
    run_table3(options);
    return;
  }
  double total = 0;
  for (const auto& row : options.rows) {
    const size_t index = static_cast<size_t>(&table3_row(row) - &table3_rows().front());
    const Config scaled = scale_config(full[index], full.front(), options.rule);
    const double seconds = static_cast<double>(scaled.train.steps) * estimated_step_seconds(scaled);
    total += seconds;
    fmt::print("[table3] {:>4}: {}; ~{:.0f}s of training\n", row, describe_scaled(scaled), seconds);
  }
  fmt::print("[table3] ~{:.0f} minutes of training in all, plus evaluation (dry run: nothing trained)\n",
             total / 60);
}

void setup_reproduce(CLI::App& app) {
  auto args = std::make_shared<ReproduceArgs>();
  auto* reproduce = app.add_subcommand("reproduce", "Reproduce results of Vaswani et al. 2017");
  reproduce->require_subcommand(1);
  auto* table3 = reproduce->add_subcommand(
      "table3",
      "Train every row of Table 3, scaled to the toy task, and write DIR/table3.md, .csv and curves");
  table3->add_option("--out", args->out, "Output directory (rerun with the same one to resume)")->required();
  table3->add_option("--rows", args->rows, "Rows to train, e.g. base,A1,C4 (default: all 20)");
  table3
      ->add_option("--budget-minutes", args->budget_minutes,
                   "Wall time for the whole table on 2 cores; sets the steps of every row")
      ->check(CLI::PositiveNumber);
  table3
      ->add_option("--width-divisor", args->width_divisor,
                   "Divide d_model, d_ff, d_k, d_v by this (8: base d_model 64; 4 needs a larger budget)")
      ->check(CLI::PositiveNumber);
  table3->add_flag("--dry-run", args->dry_run,
                   "Print each row's scaled config and estimated time, train nothing");
  table3->add_option("--configs", args->configs, "Directory of the paper's configs")
      ->check(CLI::ExistingDirectory);
  table3->callback([args, table3] {
    args->command = "qkv reproduce table3 --out " + args->out;
    if (!args->rows.empty()) args->command += " --rows " + args->rows;
    if (table3->count("--width-divisor") > 0)
      args->command += fmt::format(" --width-divisor {}", args->width_divisor);
    if (table3->count("--budget-minutes") > 0)
      args->command += fmt::format(" --budget-minutes {}", args->budget_minutes);
    run_reproduce_table3(*args);
  });
}

RegisterCommand reg{"reproduce", 80, setup_reproduce};

}  // namespace
}  // namespace qkv::cli
