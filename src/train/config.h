// Typed configuration: one struct per concern, defaults in code, strict JSON loading.
//
// A config file has four sections, `model`, `data`, `train` and `decode`, each mapped onto one struct
// below. Loading rejects unknown keys (naming the nearest valid one), wrong types and out-of-range
// values; `validate()` checks the invariants that span several keys. Every key is documented in
// configs/README.md.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace qkv {

enum class Positional { Sinusoidal, Learned };                      // "sinusoidal" | "learned"
enum class NormOrder { Post, Pre };                                 // "post" | "pre"
enum class AttentionKind { Standard, MemoryEfficient, Reference };  // "standard" | ...
enum class InitScheme { XavierUniform, Normal };                    // "xavier_uniform" | "normal"
enum class LrSchedule { Noam, InverseSqrt, Constant };              // "noam" | "inverse_sqrt" | "constant"
enum class DataTask { Toy, Copy, Reverse, Files };                  // "toy" | "copy" | "reverse" | "files"
enum class Tokenizer { Word, SentencePiece };                       // "word" | "sentencepiece"

// The architecture. Key names are fixed by the product (see configs/README.md).
struct ModelConfig {
  int64_t d_model = 512;
  int64_t d_ff = 2048;
  int64_t heads = 8;
  int64_t d_k = 0;  // 0 means d_model / heads
  int64_t d_v = 0;  // 0 means d_model / heads
  int64_t encoder_layers = 6;
  int64_t decoder_layers = 6;
  double dropout = 0.1;            // residual dropout and dropout on embeddings + positions
  double attention_dropout = 0.0;  // on attention probabilities (0 in the paper)
  double relu_dropout = 0.0;       // inside the FFN, after the ReLU (0 in the paper)
  Positional positional = Positional::Sinusoidal;
  NormOrder norm = NormOrder::Post;
  bool share_embeddings = true;       // three-way tying; needs a shared vocabulary
  bool tie_output_projection = true;  // target embedding == pre-softmax projection
  AttentionKind attention = AttentionKind::Standard;
  int64_t max_len = 256;  // longest sequence the positional table covers
  InitScheme init = InitScheme::XavierUniform;
  double layer_norm_eps = 1e-6;

  int64_t head_dim_k() const { return d_k > 0 ? d_k : d_model / heads; }
  int64_t head_dim_v() const { return d_v > 0 ? d_v : d_model / heads; }
};

struct DataConfig {
  DataTask task = DataTask::Toy;
  std::string dir = "data/toy";  // where the corpus lives (generated here for built-in tasks)
  std::string src_lang = "src";  // files are {split}.{src_lang} / {split}.{tgt_lang}
  std::string tgt_lang = "tgt";
  std::string train_prefix = "train";
  std::string dev_prefix = "dev";
  std::string test_prefix = "test";
  // Built-in task generation (task != files).
  int64_t train_size = 20000;
  int64_t dev_size = 500;
  int64_t test_size = 500;
  int64_t seed = 1;
  // Vocabulary and filtering.
  bool shared_vocab = true;
  int64_t min_freq = 1;
  int64_t max_len = 100;  // pairs with a side longer than this (in tokens) are dropped from training
  Tokenizer tokenizer = Tokenizer::Word;
  std::string spm_model;  // path to a SentencePiece model when tokenizer == sentencepiece
};

struct TrainConfig {
  int64_t steps = 4000;
  int64_t max_tokens = 4096;  // per batch, per side, counting padding
  int64_t update_freq = 1;    // batches accumulated per optimizer step
  double label_smoothing = 0.1;
  int64_t warmup = 4000;
  LrSchedule lr_schedule = LrSchedule::Noam;
  double lr = 1.0;  // factor on the schedule
  std::array<double, 2> adam_betas = {0.9, 0.98};
  double adam_eps = 1e-9;
  double clip_norm = 0.0;  // 0 = no clipping
  int64_t seed = 1;
  int64_t eval_every = 1000;
  int64_t checkpoint_every = 1000;
  int64_t keep_checkpoints = 5;
  int64_t log_every = 100;
  int64_t patience = 0;  // early stopping after this many evaluations without improvement; 0 = off
  int64_t eval_bleu_max_sentences = 0;  // 0 = the whole dev set
};

struct DecodeConfig {
  int64_t beam = 4;
  double alpha = 0.6;      // GNMT length penalty exponent
  double max_len_a = 1.0;  // maximum output length = a * |source| + b
  int64_t max_len_b = 50;
  int64_t nbest = 1;
  int64_t batch_size = 64;  // sentences decoded together
};

struct Config {
  ModelConfig model;
  DataConfig data;
  TrainConfig train;
  DecodeConfig decode;
};

// Loading. Every key is checked for its type and range as it is read (errors name `source` and the
// key); keys missing from the JSON, or whole missing sections, keep their defaults. A file may name a
// base file with a top-level "extends": "base.json" (relative to the file): the base is loaded first
// and this file's keys override it. Loading does not check cross-key invariants: call validate().
Config config_from_json(const nlohmann::json& j, const std::string& source = "<config>");
Config load_config(const std::string& path);
// The whole resolved config, every key present; config_from_json(config_to_json(c)) == c.
nlohmann::json config_to_json(const Config& config);

// Applies one `--set section.key=value` override; the value is parsed as the key's type.
void apply_override(Config& config, const std::string& assignment);

// Per-key ranges (for configs built in code) and cross-key invariants (e.g. heads divides d_model
// when d_k is unset). Throws ConfigError; `source` prefixes the message.
void validate(const Config& config, const std::string& source = "config");

// What a subcommand calls: load_config(path), apply each override in order, validate.
Config resolve_config(const std::string& path, const std::vector<std::string>& overrides = {});

// Every key as "section.key", in declaration order.
std::vector<std::string> config_keys();

// Enum <-> string, for configs, logs and errors. enum_names<E>() lists the spellings in declaration
// order (to_string(E(i)) == enum_names<E>()[i]); enum_from_string throws ConfigError naming `what`
// and the allowed spellings. Both exist for the seven enums above.
template <class E>
const std::vector<std::string>& enum_names();
template <class E>
E enum_from_string(const std::string& text, const std::string& what);
std::string to_string(Positional v);
std::string to_string(NormOrder v);
std::string to_string(AttentionKind v);
std::string to_string(InitScheme v);
std::string to_string(LrSchedule v);
std::string to_string(DataTask v);
std::string to_string(Tokenizer v);

}  // namespace qkv
