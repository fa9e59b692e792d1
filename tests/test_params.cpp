// Parameter counts (aiayn.md, "Parameter counts"): the arithmetic count_parameters() for the paper's
// base model and its parts, the tells of a wrong tying, and the same count from the model actually
// built (for every tying, norm and positional option). Table 3's rows and the paper's column are
// checked once, against the shipped configs, in test_aiayn_configs.
//
// Expected numbers were worked out from the formula in aiayn.md, not from our code:
//   attention = 2·d·(h·d_k) + 2·d·(h·d_v) + 2·h·d_k + h·d_v + d, FFN = 2·d·d_ff + d_ff + d,
//   LayerNorm = 2·d; encoder layer = attention + FFN + 2 LN, decoder layer = 2 attention + FFN + 3 LN;
//   plus V·d for the three-way tied embeddings (V = 37000).
#include <string>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "base/enums.h"
#include "base/error.h"
#include "config/load.h"
#include "model/transformer.h"

namespace qkv {
namespace {

constexpr int64_t kV = 37000;

ModelConfig base() {
  ModelConfig m;  // the defaults are the paper's base model
  m.d_model = 512;
  m.d_ff = 2048;
  m.heads = 8;
  m.encoder_layers = m.decoder_layers = 6;
  return m;
}

// The base model's count and its parts, from aiayn.md's worked example (the whole of Table 3, read
// from configs/aiayn/, is test_aiayn_configs' to check).
TEST(Params, BasePartsMatchThePaperArithmetic) {
  EXPECT_EQ(count_parameters(base(), kV, kV), 63082496);
  auto parts = count_parameter_parts(base(), kV, kV);
  EXPECT_EQ(parts.encoder, 6 * 3152384);  // aiayn.md: encoder layer 3,152,384
  EXPECT_EQ(parts.decoder, 6 * 4204032);  // decoder layer 4,204,032
  EXPECT_EQ(parts.embeddings, 18944000);
  EXPECT_EQ(parts.output_projection, 0);
}

// aiayn.md's tells of a wrong build at V = 37000.
TEST(Params, TyingTells) {
  ModelConfig untied = base();
  untied.share_embeddings = false, untied.tie_output_projection = false;
  EXPECT_EQ(count_parameters(untied, kV, kV), 100970496);  // "101.0M"
  ModelConfig separate_softmax = base();
  separate_softmax.tie_output_projection = false;
  EXPECT_EQ(count_parameters(separate_softmax, kV, kV), 82026496);  // "82.0M"
}

int64_t built(const ModelConfig& config, int64_t src_vocab, int64_t tgt_vocab) {
  return Transformer(config, src_vocab, tgt_vocab)->num_parameters();
}

// The arithmetic equals what the model registers, for every option that changes the count.
TEST(Params, ArithmeticEqualsTheBuiltModel) {
  ModelConfig small;
  small.d_model = 24, small.d_ff = 40, small.heads = 3, small.encoder_layers = 2, small.decoder_layers = 3;
  small.max_len = 32;
  for (bool share : {true, false}) {
    for (bool tie : {true, false}) {
      for (auto norm : {NormOrder::Post, NormOrder::Pre}) {
        for (auto positional : {Positional::Sinusoidal, Positional::Learned}) {
          ModelConfig m = small;
          m.share_embeddings = share, m.tie_output_projection = tie, m.norm = norm, m.positional = positional;
          const int64_t src_vocab = 50, tgt_vocab = share ? 50 : 61;
          EXPECT_EQ(built(m, src_vocab, tgt_vocab), count_parameters(m, src_vocab, tgt_vocab))
              << "share " << share << " tie " << tie << " norm " << to_string(norm) << " "
              << to_string(positional);
        }
      }
    }
  }
  ModelConfig rows_ab = small;  // d_k != d_v and h·d_k != d_model
  rows_ab.d_k = 5, rows_ab.d_v = 7;
  EXPECT_EQ(built(rows_ab, 50, 50), count_parameters(rows_ab, 50, 50));
}

TEST(Params, BuiltBaseModelHasThePaperCount) {
  EXPECT_EQ(built(base(), kV, kV), 63082496);
}

// Impossible shapes: validate() names the config key; the model's parts refuse their arguments.
TEST(Params, ImpossibleShapesAreRefused) {
  auto config_message = [](const ModelConfig& m) {
    Config config;
    config.model = m;
    try {
      validate(config);
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  ModelConfig m = base();
  m.heads = 7;
  EXPECT_NE(config_message(m).find("model.heads"), std::string::npos) << config_message(m);
  EXPECT_THROW(Transformer(m, kV, kV), c10::Error);
  m.d_k = m.d_v = 64;  // 7 heads of width 64 are fine once the widths are given
  EXPECT_EQ(config_message(m), "no error");
  EXPECT_NO_THROW(count_parameters(m, kV, kV));
  m = base();
  EXPECT_THROW(count_parameters(m, 100, 120), c10::Error);  // tied embeddings need one vocabulary size
  m.d_ff = 0;
  EXPECT_NE(config_message(m).find("model.d_ff"), std::string::npos);
  m = base();
  m.dropout = 1.0;
  EXPECT_NE(config_message(m).find("model.dropout"), std::string::npos);
}

}  // namespace
}  // namespace qkv
