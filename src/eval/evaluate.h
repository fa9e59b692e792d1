// Validation and evaluation: per-token NLL and perplexity under teacher forcing (no label smoothing,
// no dropout), and corpus BLEU (sacreBLEU's default layout, bleu.h) of the configured search against
// the references.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/load.h"
#include "data/codec.h"
#include "data/dataset.h"
#include "eval/bleu.h"
#include "model/transformer.h"

namespace qkv {

struct EvalResult {
  std::string split;
  double nll = 0.0;  // per target token (</s> included)
  int64_t tokens = 0;
  std::optional<BleuScore> bleu;
  int64_t bleu_sentences = 0;           // how many sentences BLEU was computed on
  std::vector<std::string> hypotheses;  // detokenized, for the first bleu_sentences sentences
  double seconds = 0.0;

  double ppl() const;
  // {"split", "nll", "ppl", "tokens", "bleu", "bleu_sentences", "seconds"}
  nlohmann::json to_json() const;
  // "[eval] dev: nll 0.412 | ppl 1.51 | BLEU = 91.20 96.1/92.3/... (500 sentences, 12s)"
  std::string summary() const;
};

// Teacher-forced NLL over the whole split, in batches of at most max_tokens per side.
EvalResult evaluate_nll(Transformer& model, const Split& split, int64_t max_tokens);

// Adds BLEU (and the hypotheses) over the first `max_sentences` sentences (0 = all) to `result`.
void evaluate_bleu(Transformer& model, const Split& split, const CodecPair& codecs,
                   const DecodeConfig& decode, int64_t max_sentences, EvalResult& result);

// Both, timed.
EvalResult evaluate_split(Transformer& model, const Split& split, const CodecPair& codecs,
                          const Config& config, int64_t bleu_max_sentences);

}  // namespace qkv
