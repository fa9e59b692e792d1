// The plain configuration: one struct per concern with its defaults, and the enums of its choices.
// No JSON here: this is the floor every part of qkv may include (the model, the data pipeline, the
// trainer). Loading, `--set` overrides and validation live on the training side, in config/load.h;
// every key is documented in configs/README.md.
#pragma once

#include <array>
#include <cstdint>
#include <string>

namespace qkv {

enum class Positional { Sinusoidal, Learned };                      // "sinusoidal" | "learned"
enum class NormOrder { Post, Pre };                                 // "post" | "pre"
enum class AttentionKind { Standard, MemoryEfficient, Reference };  // "standard" | ...
enum class InitScheme { XavierUniform, Normal };                    // "xavier_uniform" | "normal"
enum class LrSchedule { Noam, InverseSqrt, Constant };              // "noam" | "inverse_sqrt" | "constant"
enum class DataTask { Toy, Copy, Reverse, Files };                  // "toy" | "copy" | "reverse" | "files"
enum class Tokenizer { Word, SentencePiece };                       // "word" | "sentencepiece"
enum class Precision { Fp32, Bf16, Fp16 };                          // "fp32" | "bf16" | "fp16"
enum class DistBackend { Auto, Gloo, Nccl };                        // "auto" | "gloo" | "nccl"

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
  int64_t eval_bleu_max_sentences = 0;    // 0 = the whole dev set
  Precision precision = Precision::Fp32;  // of the matrix products (ops/precision.h); fp16 needs CUDA
  // Data-parallel training (several processes): how their gradients travel, and how long a collective
  // may wait for the others before the job is declared failed.
  DistBackend dist_backend = DistBackend::Auto;
  int64_t dist_timeout_s = 600;
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

}  // namespace qkv
