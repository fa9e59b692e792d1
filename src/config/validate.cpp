// validate(): the checks a config must pass before anything is built from it. Per-key types and
// ranges come from the key table (so a config built in code is held to the same rules as a file);
// the cross-key invariants below refuse impossible shapes and contradictory settings, each with a
// message naming the keys and how to fix them; sizes whose parameter count overflows 64 bits are
// refused too (config/resources.h; what this machine can hold is checked later, by the commands).
#include <algorithm>
#include <cmath>
#include <limits>

#include <fmt/format.h>

#include "base/error.h"
#include "config/json_input.h"
#include "config/load.h"
#include "config/resources.h"
#include "config/schema.h"

namespace qkv {
namespace {

void check_model(const Config& c, const std::string& source) {
  const ModelConfig& m = c.model;
  if ((m.d_k == 0 || m.d_v == 0) && m.d_model % m.heads != 0) {
    throw ConfigError(fmt::format(
        "{}: model.heads ({}) must divide model.d_model ({}) when model.d_k or model.d_v is 0 (which means "
        "d_model / heads); pick heads dividing d_model, or set both d_k and d_v",
        source, m.heads, m.d_model));
  }
  if (m.share_embeddings && !c.data.shared_vocab) {
    throw ConfigError(fmt::format(
        "{}: model.share_embeddings = true needs data.shared_vocab = true (one vocabulary for source and "
        "target); set data.shared_vocab to true or model.share_embeddings to false",
        source));
  }
  if (m.share_embeddings && !m.tie_output_projection) {
    throw ConfigError(fmt::format(
        "{}: model.share_embeddings = true ties both embeddings and the pre-softmax projection, so "
        "model.tie_output_projection cannot be false; set model.share_embeddings to false to untie",
        source));
  }
  // Sequences get <s> or </s> added around their data.max_len tokens; the positional table must cover them.
  if (c.data.max_len + 2 > m.max_len) {
    throw ConfigError(fmt::format(
        "{}: model.max_len ({}) must be at least data.max_len + 2 ({}, room for <s> and </s>); raise "
        "model.max_len or lower data.max_len",
        source, m.max_len, c.data.max_len + 2));
  }
}

void check_data(const Config& c, const std::string& source) {
  if (c.data.tokenizer == Tokenizer::SentencePiece && c.data.spm_model.empty()) {
    throw ConfigError(
        fmt::format("{}: data.tokenizer is \"sentencepiece\" but data.spm_model is empty; train a model with "
                    "`qkv data spm --input train.de,train.en --out DIR` and set data.spm_model=DIR/spm.model",
                    source));
  }
}

void check_train_decode(const Config& c, const std::string& source) {
  // Training pairs and evaluation sentences hold at most model.max_len - 1 tokens, plus </s>: one of
  // them must fit a batch.
  if (c.train.max_tokens < c.model.max_len) {
    throw ConfigError(fmt::format(
        "{}: train.max_tokens ({}) must be at least model.max_len ({}), so that a batch holds the longest "
        "sentence the model reads; raise train.max_tokens or lower model.max_len",
        source, c.train.max_tokens, c.model.max_len));
  }
  if (c.train.lr_schedule != LrSchedule::Constant && c.train.warmup < 1) {
    throw ConfigError(
        fmt::format("{}: train.warmup must be >= 1 with train.lr_schedule \"{}\" (got {}); use "
                    "train.lr_schedule \"constant\" for no warmup",
                    source, to_string(c.train.lr_schedule), c.train.warmup));
  }
  // The schedule's peak (train/schedule.h: noam peaks at step = warmup; the others at train.lr) must be
  // a step float32 parameters can take: beyond float32's range every update is infinite, and training
  // would only fail later, as a divergence.
  const double peak = c.train.lr_schedule == LrSchedule::Noam
                          ? c.train.lr / std::sqrt(static_cast<double>(c.model.d_model)) /
                                std::sqrt(static_cast<double>(std::max<int64_t>(c.train.warmup, 1)))
                          : c.train.lr;
  if (!(peak < static_cast<double>(std::numeric_limits<float>::max()))) {
    throw ConfigError(fmt::format(
        "{}: train.lr = {} makes the peak learning rate {:.3g} (train.lr_schedule \"{}\"), beyond "
        "float32's range (3.4e38): every update would overflow; lower train.lr (the paper's peak "
        "is 7e-4)",
        source, c.train.lr, peak, to_string(c.train.lr_schedule)));
  }
  if (c.decode.nbest > c.decode.beam) {
    throw ConfigError(fmt::format("{}: decode.nbest ({}) must be <= decode.beam ({})", source, c.decode.nbest,
                                  c.decode.beam));
  }
}

}  // namespace

void validate(const Config& config, const std::string& source) {
  for (const auto& key : config_table()) {
    Config scratch;
    const nlohmann::json value = key.write(config);
    if (!key.read(scratch, value)) {
      throw ConfigError(
          fmt::format("{}: {} must be {}, got {}", source, key.path(), key.allowed, excerpt_json(value)));
    }
  }
  check_model(config, source);
  check_parameter_count(config, source);
  check_data(config, source);
  check_train_decode(config, source);
}

void validate_device(const Config& config, bool cuda, const std::string& source) {
  // The CPU has no fast float16 products (oneDNN's low-precision GEMM there is bfloat16, which keeps
  // fp32's exponent range and so needs no loss scaling either).
  if (config.train.precision == Precision::Fp16 && !cuda) {
    throw ConfigError(fmt::format(
        "{}: train.precision \"fp16\" needs a CUDA device, and this run is on the CPU; use \"bf16\" (the "
        "CPU's low precision, no loss scaling needed) or \"fp32\"",
        source));
  }
}

}  // namespace qkv
