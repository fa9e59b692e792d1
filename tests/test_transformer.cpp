// The Transformer (src/model/transformer.h): agreement with torch::nn::Transformer's stacks in float64,
// decoder causality, padding invariance, finite-difference gradients of a tiny whole model, the
// incremental decoding step against a full recompute, embedding tying, positions and the length limit.
//
// Dimensions: B = batch, S = source length, T = target length, C = d_model, V = vocabulary.
#include <cmath>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "base/enums.h"
#include "base/special_tokens.h"
#include "model/transformer.h"
#include "support.h"

namespace qkv {
namespace {

using test::expect_close;

constexpr int64_t kVocab = 13;

ModelConfig tiny(NormOrder norm = NormOrder::Post) {
  ModelConfig m;
  m.d_model = 16, m.d_ff = 24, m.heads = 4, m.encoder_layers = 2, m.decoder_layers = 3;
  m.dropout = 0.0, m.max_len = 32, m.layer_norm_eps = 1e-5, m.norm = norm;
  return m;
}

Transformer make(const ModelConfig& config, int64_t seed = 0) {
  torch::manual_seed(seed);
  Transformer model(config, kVocab, kVocab);
  model->to(torch::kDouble);
  model->eval();
  // LayerNorm and biases start at 1 and 0; perturb everything so that a swapped or skipped
  // parameter cannot go unnoticed.
  torch::NoGradGuard no_grad;
  for (auto& p : model->parameters()) p.add_(torch::randn_like(p) * 0.1);
  return model;
}

// Random ordinary tokens [B, T] (ids after the specials).
torch::Tensor tokens(int64_t batch, int64_t length) {
  return torch::randint(kUnkId + 1, kVocab, {batch, length});
}

// Target input: <s> then tokens.
torch::Tensor with_bos(const torch::Tensor& t) {
  return torch::cat({torch::full({t.size(0), 1}, kBosId), t}, 1);
}

// --- agreement with torch::nn::Transformer ------------------------------------------------------------

// Our parameter names -> torch's: the FFN is a submodule here, and cross-attention is "multihead_attn".
std::string torch_name(std::string name) {
  for (auto [ours, theirs] :
       {std::pair<std::string, std::string>{"ffn.", ""}, {"cross_attn", "multihead_attn"}}) {
    auto at = name.find(ours);
    if (at != std::string::npos) name.replace(at, ours.size(), theirs);
  }
  return name;
}

TEST(Transformer, StacksMatchTorchTransformer) {
  auto config = tiny(NormOrder::Post);
  auto model = make(config, 1);
  torch::nn::Transformer theirs(torch::nn::TransformerOptions(config.d_model, config.heads)
                                    .num_encoder_layers(config.encoder_layers)
                                    .num_decoder_layers(config.decoder_layers)
                                    .dim_feedforward(config.d_ff)
                                    .dropout(0.0));
  theirs->to(torch::kDouble);
  theirs->eval();
  auto their_params = theirs->named_parameters();
  int64_t copied = 0;
  {
    torch::NoGradGuard no_grad;
    for (const auto& item : model->named_parameters()) {
      const auto& name = item.key();
      const auto& p = item.value();
      if (name.rfind("encoder.", 0) != 0 && name.rfind("decoder.", 0) != 0) continue;
      auto* target = their_params.find(torch_name(name));
      ASSERT_NE(target, nullptr) << "no torch parameter for " << name;
      target->copy_(p);
      ++copied;
    }
    for (const char* name :
         {"encoder.norm.weight", "encoder.norm.bias", "decoder.norm.weight", "decoder.norm.bias"}) {
      auto* p = their_params.find(name);  // torch's final norms, which our post-norm stacks lack
      ASSERT_NE(p, nullptr) << name;
      p->add_(torch::randn_like(*p) * 0.1);
    }
  }
  EXPECT_EQ(copied + 4, static_cast<int64_t>(their_params.size()));  // every other torch parameter copied
  auto encoder = theirs->encoder.get<torch::nn::TransformerEncoder>();
  auto decoder = theirs->decoder.get<torch::nn::TransformerDecoder>();

  torch::manual_seed(2);
  auto x = torch::randn({3, 7, config.d_model}, torch::kDouble);  // [B, S, C] embedded source
  auto y = torch::randn({3, 5, config.d_model}, torch::kDouble);  // [B, T, C] embedded target
  auto mask = torch::zeros({3, 7}, torch::kBool);                 // [B, S]
  mask[1].slice(0, 4).fill_(true);
  mask[2].slice(0, 6).fill_(true);
  // torch is sequence-first ([S, B, C]) and ends each stack with a LayerNorm; ours (post-norm) does
  // not, so its final norm is applied to our output before comparing.
  auto ours_memory = model->encoder->forward(x, mask);                                // [B, S, C]
  auto their_memory = encoder->forward(x.transpose(0, 1), {}, mask).transpose(0, 1);  // [B, S, C]
  // 1e-9: float64 through 2 layers; the sums differ only in order (errors ~1e-14).
  EXPECT_TRUE(expect_close(encoder->norm.forward(ours_memory), their_memory, 1e-9, 0, "encoder"));

  auto causal = torch::nn::TransformerImpl::generate_square_subsequent_mask(5).to(torch::kDouble);  // [T, T]
  auto ours_out = model->decoder->forward(y, ours_memory, mask);  // [B, T, C]
  auto their_out = decoder->forward(y.transpose(0, 1), ours_memory.transpose(0, 1), causal, {}, {}, mask)
                       .transpose(0, 1);                                                      // [B, T, C]
  EXPECT_TRUE(expect_close(decoder->norm.forward(ours_out), their_out, 1e-9, 0, "decoder"));  // as above
}

// --- contracts of the whole model ---------------------------------------------------------------------

TEST(Transformer, DecoderIsCausal) {
  for (auto norm : {NormOrder::Post, NormOrder::Pre}) {
    auto model = make(tiny(norm));
    auto src = tokens(2, 6);
    auto tgt = with_bos(tokens(2, 6));       // [B, 7]
    auto logits = model->forward(src, tgt);  // [B, 7, V]
    for (int64_t t = 0; t < 6; ++t) {
      auto changed = tgt.clone();
      changed.slice(1, t + 1).fill_(kUnkId);  // every target token after position t
      auto other = model->forward(src, changed);
      // Exactly equal would be too strict only if the kernels changed order with the content; 1e-12.
      EXPECT_TRUE(expect_close(other.slice(1, 0, t + 1), logits.slice(1, 0, t + 1), 1e-12, 0,
                               "positions <= " + std::to_string(t)));
      // ... while the later positions do change (by far more than float64 rounding: 1e-6).
      EXPECT_GT((other.slice(1, t + 1) - logits.slice(1, t + 1)).abs().max().item<double>(), 1e-6);
    }
  }
}

TEST(Transformer, PaddingInvariance) {
  for (auto norm : {NormOrder::Post, NormOrder::Pre}) {
    auto model = make(tiny(norm), 3);
    const std::vector<int64_t> src_len{5, 2, 7}, tgt_len{3, 6, 1};
    auto src = torch::full({3, 7}, kPadId), tgt = torch::full({3, 7}, kPadId);  // [B, S], [B, T]
    for (int64_t b = 0; b < 3; ++b) {
      src[b].slice(0, 0, src_len[b]).copy_(tokens(1, src_len[b])[0]);
      tgt[b].slice(0, 0, tgt_len[b] + 1).copy_(with_bos(tokens(1, tgt_len[b]))[0]);
    }
    auto batched = model->forward(src, tgt);  // [B, T, V]
    for (int64_t b = 0; b < 3; ++b) {
      auto alone = model->forward(src[b].slice(0, 0, src_len[b]).unsqueeze(0),
                                  tgt[b].slice(0, 0, tgt_len[b] + 1).unsqueeze(0));  // [1, t, V]
      // 1e-10: float64; only the matmul blocking differs between batch shapes.
      EXPECT_TRUE(expect_close(batched[b].slice(0, 0, tgt_len[b] + 1), alone[0], 1e-10, 0,
                               "sentence " + std::to_string(b)));
    }
  }
}

TEST(Transformer, GradcheckTinyModel) {
  for (auto norm : {NormOrder::Post, NormOrder::Pre}) {
    auto model = make(tiny(norm), 4);
    auto src = tokens(2, 4);
    src[1][3] = kPadId;
    auto tgt = with_bos(tokens(2, 3));
    auto params = model->named_parameters();
    std::vector<torch::Tensor> sample;
    for (const char* name :
         {"tgt_embed.weight", "encoder.layers.0.self_attn.in_proj_weight",
          "encoder.layers.1.ffn.linear1.bias", "decoder.layers.0.cross_attn.out_proj.weight",
          "decoder.layers.2.norm2.weight", "decoder.layers.1.self_attn.in_proj_bias"}) {
      ASSERT_NE(params.find(name), nullptr) << name;
      sample.push_back(params[name]);
    }
    test::GradcheckOptions options;
    options.max_elements = 12;  // per parameter: a seeded sample keeps the test to a second
    options.atol = 1e-7;        // central differences in float64, eps 1e-6: errors ~1e-9
    EXPECT_TRUE(test::gradcheck([&](const std::vector<torch::Tensor>&) { return model->forward(src, tgt); },
                                sample, options))
        << to_string(norm);
  }
}

TEST(Transformer, DecodeStepEqualsFullDecode) {
  for (auto norm : {NormOrder::Post, NormOrder::Pre}) {
    auto model = make(tiny(norm), 5);
    auto src = tokens(3, 6);
    src[0].slice(0, 3).fill_(kPadId);
    auto tgt = with_bos(tokens(3, 5));  // [B, 6]
    auto memory = model->encode(src);
    auto full = model->decode(tgt, memory, src);  // [B, 6, V]
    auto state = model->start_state();
    for (int64_t t = 0; t < 6; ++t) {
      auto step = model->decode_step(tgt.select(1, t), memory, src, state);                       // [B, V]
      EXPECT_TRUE(expect_close(step, full.select(1, t), 1e-10, 0, "step " + std::to_string(t)));  // as above
    }
    EXPECT_EQ(state.steps, 6);
    EXPECT_EQ(state.self[0].k().size(2), 6);
    EXPECT_EQ(state.cross[0].k().size(2), 6);
  }
}

TEST(Transformer, EmbeddingTying) {
  auto names = [](const Transformer& m) {
    std::set<std::string> out;
    for (const auto& item : m->named_parameters()) out.insert(item.key());
    return out;
  };
  ModelConfig config = tiny();
  Transformer three_way(config, kVocab, kVocab);
  three_way->to(torch::kDouble);  // sharing survives moves and casts
  EXPECT_EQ(three_way->src_embed->weight.data_ptr(), three_way->tgt_embed->weight.data_ptr());
  EXPECT_EQ(three_way->output_weight().data_ptr(), three_way->tgt_embed->weight.data_ptr());
  EXPECT_TRUE(names(three_way).count("tgt_embed.weight"));
  EXPECT_FALSE(names(three_way).count("src_embed.weight"));
  EXPECT_FALSE(names(three_way).count("out_proj.weight"));

  config.share_embeddings = false;  // the default two-way tying with separate vocabularies
  Transformer two_way(config, kVocab, kVocab + 4);
  EXPECT_NE(two_way->src_embed->weight.data_ptr(), two_way->tgt_embed->weight.data_ptr());
  EXPECT_EQ(two_way->output_weight().data_ptr(), two_way->tgt_embed->weight.data_ptr());
  EXPECT_EQ(two_way->forward(tokens(1, 3), with_bos(tokens(1, 2))).size(2), kVocab + 4);

  config.tie_output_projection = false;
  Transformer untied(config, kVocab, kVocab);
  EXPECT_TRUE(names(untied).count("src_embed.weight") && names(untied).count("out_proj.weight"));
  EXPECT_NE(untied->output_weight().data_ptr(), untied->tgt_embed->weight.data_ptr());
}

// PE(pos, 2i) = sin(pos / 10000^(2i/C)), PE(pos, 2i+1) = cos(pos / 10000^(2i/C)), interleaved.
TEST(Transformer, SinusoidalPositionsAndScaledEmbeddings) {
  auto pe = sinusoidal_positions(10, 8);
  EXPECT_DOUBLE_EQ(pe[0][0].item<double>(), 0.0);
  EXPECT_DOUBLE_EQ(pe[0][1].item<double>(), 1.0);
  // 1e-15: values in [-1, 1] from the same sin/cos in double, the angle computed in another order.
  EXPECT_NEAR(pe[1][0].item<double>(), std::sin(1.0), 1e-15);
  EXPECT_NEAR(pe[1][1].item<double>(), std::cos(1.0), 1e-15);
  EXPECT_NEAR(pe[3][4].item<double>(), std::sin(3.0 / 100.0), 1e-15);  // 10000^(4/8) = 100
  EXPECT_NEAR(pe[7][7].item<double>(), std::cos(7.0 / std::pow(10000.0, 6.0 / 8.0)), 1e-15);

  auto model = make(tiny());
  auto t = torch::tensor({{5, 7}});
  auto x = model->tgt_embed->forward(t, /*offset=*/3);                    // [1, 2, C]
  auto expected = model->tgt_embed->weight.index_select(0, t[0]) * 4.0 +  // √16 = 4
                  sinusoidal_positions(32, 16).narrow(0, 3, 2);
  EXPECT_TRUE(expect_close(x[0], expected, 1e-12, 0, "embedding"));  // float64: one multiply, one add
}

TEST(Transformer, RefusesSequencesBeyondMaxLen) {
  auto model = make(tiny());  // max_len 32
  try {
    model->encode(tokens(1, 33));
    FAIL() << "no error";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.max_len = 32"), std::string::npos) << e.what();
  }
  EXPECT_NO_THROW(model->encode(tokens(1, 32)));
}

TEST(Transformer, DropoutOnlyWhileTraining) {
  auto config = tiny();
  config.dropout = 0.3, config.attention_dropout = 0.1, config.relu_dropout = 0.1;
  auto model = make(config);
  auto src = tokens(2, 5), tgt = with_bos(tokens(2, 4));
  EXPECT_TRUE(torch::equal(model->forward(src, tgt), model->forward(src, tgt)));
  model->train();
  EXPECT_FALSE(torch::equal(model->forward(src, tgt), model->forward(src, tgt)));
}

TEST(Transformer, RecordsAttentionMaps) {
  auto model = make(tiny());
  model->set_record_attention(true);
  model->forward(tokens(2, 5), with_bos(tokens(2, 3)));
  auto maps = model->attention_maps();
  ASSERT_EQ(maps.encoder_self.size(), 2u);
  ASSERT_EQ(maps.decoder_cross.size(), 3u);
  EXPECT_EQ(maps.encoder_self[1].sizes(), (std::vector<int64_t>{2, 4, 5, 5}));
  EXPECT_EQ(maps.decoder_self[0].sizes(), (std::vector<int64_t>{2, 4, 4, 4}));
  EXPECT_EQ(maps.decoder_cross[2].sizes(), (std::vector<int64_t>{2, 4, 4, 5}));
}

// model.attention picks the implementation by name; all of them give the same model.
TEST(Transformer, AttentionImplementationsAgree) {
  auto standard = make(tiny(NormOrder::Pre), 6);
  auto src = tokens(2, 6), tgt = with_bos(tokens(2, 4));
  src[1].slice(0, 4).fill_(kPadId);
  const auto expected = standard->forward(src, tgt);
  for (auto kind : {AttentionKind::MemoryEfficient, AttentionKind::Reference}) {
    auto config = tiny(NormOrder::Pre);
    config.attention = kind;
    Transformer other(config, kVocab, kVocab);
    other->to(torch::kDouble);
    other->eval();
    torch::NoGradGuard no_grad;
    auto theirs = other->named_parameters();
    for (const auto& item : standard->named_parameters()) theirs[item.key()].copy_(item.value());
    // 1e-10: float64; the implementations differ in summation order (blocked online softmax).
    EXPECT_TRUE(expect_close(other->forward(src, tgt), expected, 1e-10, 0, to_string(kind)));
  }
}

TEST(Transformer, InitSchemes) {
  ModelConfig config = tiny();
  config.d_model = 64;
  Transformer xavier(config, 2000, 2000);
  const double bound = std::sqrt(6.0 / (2000 + 64));  // Xavier-uniform on [V, C]
  // The weights are float: a draw just below the bound rounds to the nearest float, which may be
  // the bound rounded up. So no weight exceeds the bound as a float.
  const double float_bound = static_cast<float>(bound);
  EXPECT_LE(xavier->tgt_embed->weight.abs().max().item<double>(), float_bound);
  // Of 128,000 uniform draws, some land in the outer 10%: P(none) = 0.9^128000, i.e. never.
  EXPECT_GT(xavier->tgt_embed->weight.abs().max().item<double>(), 0.9 * bound);
  EXPECT_TRUE(torch::equal(xavier->encoder->layers[0]->norm1->weight, torch::ones({64})));
  EXPECT_EQ(xavier->decoder->layers[0]->ffn->linear1->bias.abs().max().item<double>(), 0.0);
  config.init = InitScheme::Normal;
  Transformer normal(config, 2000, 2000);
  // N(0, 64^-0.5 = 0.125) over 128,000 draws: the sample std is within 1% of 0.125.
  EXPECT_NEAR(normal->tgt_embed->weight.std().item<double>(), 0.125, 0.00125);
}

}  // namespace
}  // namespace qkv
