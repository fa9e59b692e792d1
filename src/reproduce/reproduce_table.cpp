// Table 3 writers: the markdown table in the paper's layout, the CSV with every value, and the
// learning curves' CSV. See reproduce.h.
#include <algorithm>
#include <map>

#include <fmt/format.h>

#include "base/enums.h"
#include "reproduce/reproduce.h"
#include "train/metrics.h"

namespace qkv {
namespace {

// The results in the paper's row order.
std::vector<const RowResult*> in_paper_order(const std::vector<RowResult>& results) {
  std::map<std::string, const RowResult*> by_name;
  for (const auto& r : results) by_name[r.row] = &r;
  std::vector<const RowResult*> ordered;
  for (const auto& row : table3_rows()) {
    auto it = by_name.find(row.name);
    if (it != by_name.end()) ordered.push_back(it->second);
  }
  return ordered;
}

// The scaled architecture columns of a row, in the paper's order.
std::vector<std::string> columns(const Config& c) {
  const ModelConfig& m = c.model;
  return {fmt::format("{}", m.encoder_layers),
          fmt::format("{}", m.d_model),
          fmt::format("{}", m.d_ff),
          fmt::format("{}", m.heads),
          fmt::format("{}", m.head_dim_k()),
          fmt::format("{}", m.head_dim_v()),
          fmt::format("{:.1f}", m.dropout),
          fmt::format("{:.1f}", c.train.label_smoothing),
          m.positional == Positional::Sinusoidal ? "sin" : "learned",
          fmt::format("{}", c.train.steps)};
}

// 394432 -> "394,432"
std::string grouped(int64_t n) {
  std::string digits = std::to_string(n);
  for (int i = static_cast<int>(digits.size()) - 3; i > 0; i -= 3) digits.insert(static_cast<size_t>(i), ",");
  return digits;
}

std::string paper_params(const PaperRow& paper) {
  return paper.params_m > 0 ? fmt::format("{:g}", paper.params_m) : "";
}

}  // namespace

std::string table3_markdown(const std::vector<RowResult>& results, const Config& scaled_base) {
  std::string out =
      "| row | N | d_model | d_ff | h | d_k | d_v | P_drop | ε_ls | pos | steps | params | dev PPL | dev "
      "BLEU "
      "| paper PPL | paper BLEU | paper params ×10⁶ | time |\n"
      "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
  const auto base_columns = columns(scaled_base);
  for (const RowResult* r : in_paper_order(results)) {
    const PaperRow& paper = table3_row(r->row);
    auto cells = columns(r->config);
    if (r->row != "base") {
      // Blank = as base, as in the paper.
      for (size_t i = 0; i < cells.size(); ++i) {
        if (cells[i] == base_columns[i]) cells[i].clear();
      }
    }
    out += "| " + r->row;
    for (const auto& cell : cells) out += " | " + cell;
    out += fmt::format(" | {} | {:.2f} | {:.2f} | {:.2f} | {:.1f} | {} | {} |\n", grouped(r->params),
                       r->dev_ppl, r->dev_bleu, paper.ppl, paper.bleu, paper_params(paper),
                       format_duration(r->wall_seconds));
  }
  return out;
}

std::string table3_csv(const std::vector<RowResult>& results) {
  std::string out =
      "row,N,d_model,d_ff,heads,d_k,d_v,dropout,label_smoothing,positional,steps,params,dev_ppl,dev_bleu,"
      "bleu_sentences,wall_seconds,paper_ppl,paper_bleu,paper_params_m\n";
  for (const RowResult* r : in_paper_order(results)) {
    const PaperRow& paper = table3_row(r->row);
    const ModelConfig& m = r->config.model;
    out += fmt::format("{},{},{},{},{},{},{},{},{},{},{},{},{:.4f},{:.2f},{},{:.1f},{:.2f},{:.1f},{}\n",
                       r->row, m.encoder_layers, m.d_model, m.d_ff, m.heads, m.head_dim_k(), m.head_dim_v(),
                       m.dropout, r->config.train.label_smoothing, to_string(m.positional), r->steps,
                       r->params, r->dev_ppl, r->dev_bleu, r->bleu_sentences, r->wall_seconds, paper.ppl,
                       paper.bleu, paper_params(paper));
  }
  return out;
}

std::string curves_csv(const std::vector<RowResult>& results) {
  std::string out = "row,step,dev_ppl\n";
  for (const RowResult* r : in_paper_order(results)) {
    for (const auto& p : r->curve) out += fmt::format("{},{},{:.4f}\n", r->row, p.step, p.dev_ppl);
  }
  return out;
}

}  // namespace qkv
