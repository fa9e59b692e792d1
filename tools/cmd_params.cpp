// qkv params --config F [--set key=value ...] --vocab-size V [--tgt-vocab-size T]: the model's
// parameter count by arithmetic (aiayn.md, "Parameter counts"), part by part, without building it.
// The last line is a JSON object {"params": N, ...}. The paper's base settings with a shared
// vocabulary of 37000 give 63,082,496; big gives 214,245,376.
#include <iostream>
#include <memory>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "cli.h"
#include "config/load.h"
#include "model/transformer.h"

namespace {

struct ParamsArgs {
  std::string config;
  std::vector<std::string> sets;
  int64_t vocab_size = 0;
  int64_t tgt_vocab_size = 0;
};

// 63082496 -> "63,082,496"
std::string grouped(int64_t n) {
  std::string digits = std::to_string(n), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

std::string describe(const qkv::ModelConfig& m) {
  const char* tying = m.share_embeddings && m.tie_output_projection ? "three-way tied embeddings"
                      : m.share_embeddings                          ? "shared embeddings, separate projection"
                      : m.tie_output_projection ? "target embedding tied to the projection"
                                                : "untied embeddings";
  return fmt::format(
      "d_model {}, d_ff {}, heads {} (d_k {}, d_v {}), layers {}+{}, {}-norm, {} positions, {}", m.d_model,
      m.d_ff, m.heads, m.head_dim_k(), m.head_dim_v(), m.encoder_layers, m.decoder_layers,
      qkv::to_string(m.norm), qkv::to_string(m.positional), tying);
}

void run_params(const ParamsArgs& args) {
  if (args.vocab_size <= 0) {
    throw qkv::ConfigError(
        "qkv params needs --vocab-size V (the vocabulary size to count with, specials included), e.g. "
        "--vocab-size 37000 for the paper's shared EN-DE vocabulary");
  }
  const qkv::Config config = qkv::resolve_config(args.config, args.sets);
  const int64_t src_vocab = args.vocab_size;
  const int64_t tgt_vocab = args.tgt_vocab_size > 0 ? args.tgt_vocab_size : args.vocab_size;
  const auto parts = qkv::count_parameter_parts(config.model, src_vocab, tgt_vocab);

  std::cout << "[params] model: " << describe(config.model) << "\n";
  std::cout << (src_vocab == tgt_vocab
                    ? fmt::format("[params] vocabulary: {} shared\n", src_vocab)
                    : fmt::format("[params] vocabulary: {} source, {} target\n", src_vocab, tgt_vocab));
  const std::pair<const char*, int64_t> rows[] = {{"embeddings", parts.embeddings},
                                                  {"positions", parts.positions},
                                                  {"encoder", parts.encoder},
                                                  {"decoder", parts.decoder},
                                                  {"output projection", parts.output_projection},
                                                  {"total", parts.total()}};
  for (const auto& [name, n] : rows) std::cout << fmt::format("  {:<18} {:>13}\n", name, grouped(n));
  nlohmann::ordered_json line = {
      {"params", parts.total()},      {"embeddings", parts.embeddings},
      {"positions", parts.positions}, {"encoder", parts.encoder},
      {"decoder", parts.decoder},     {"output_projection", parts.output_projection},
      {"src_vocab", src_vocab},       {"tgt_vocab", tgt_vocab}};
  std::cout << line.dump() << "\n";
}

void setup_params(CLI::App& app) {
  auto args = std::make_shared<ParamsArgs>();
  auto* cmd = app.add_subcommand("params", "Count the model's parameters (arithmetic, without building it)");
  cmd->add_option("--config", args->config, "Config file (its model section is used)")->required();
  qkv::cli::add_set_option(*cmd, args->sets);
  cmd->add_option("--vocab-size", args->vocab_size,
                  "Vocabulary size to count with, specials included (shared, or the source's)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--tgt-vocab-size", args->tgt_vocab_size, "Target vocabulary size when not shared")
      ->check(CLI::PositiveNumber);
  cmd->callback([args] { run_params(*args); });
}

qkv::cli::RegisterCommand reg{"params", 60, setup_params};

}  // namespace
