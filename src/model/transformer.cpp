// The encoder-decoder Transformer (Vaswani et al. 2017, §3): embeddings, the two stacks and the tied
// pre-softmax projection, built from ModelConfig. See transformer.h for the tying rules.
//
// Dimensions: B = batch, S = source length, T = target length, C = d_model, V = vocabulary.
#include "model/transformer.h"

#include <fmt/format.h>
#include <torch/nn/init.h>

#include "data/special_tokens.h"
#include "error.h"
#include "model/gemm.h"

namespace qkv {
namespace {

void require(bool ok, const std::string& message) {
  if (!ok) throw ConfigError(message);
}

void validate_dropout(double p, const char* key) {
  require(p >= 0.0 && p < 1.0, fmt::format("{} = {} is not a probability in [0, 1)", key, p));
}

EmbeddingsOptions embeddings_options(const ModelConfig& config, int64_t vocab) {
  EmbeddingsOptions o;
  o.vocab = vocab;
  o.d_model = config.d_model;
  o.positional = config.positional;
  o.max_len = config.max_len;
  o.dropout = config.dropout;
  return o;
}

}  // namespace

void validate_model(const ModelConfig& c, int64_t src_vocab, int64_t tgt_vocab) {
  require(c.d_model > 0, fmt::format("model.d_model = {} must be positive", c.d_model));
  require(c.d_ff > 0, fmt::format("model.d_ff = {} must be positive", c.d_ff));
  require(c.heads > 0, fmt::format("model.heads = {} must be positive", c.heads));
  require(c.d_k >= 0, fmt::format("model.d_k = {} must be positive (or 0 for d_model / heads)", c.d_k));
  require(c.d_v >= 0, fmt::format("model.d_v = {} must be positive (or 0 for d_model / heads)", c.d_v));
  require((c.d_k > 0 && c.d_v > 0) || c.d_model % c.heads == 0,
          fmt::format("model.heads = {} does not divide model.d_model = {}: choose a divisor or set "
                      "model.d_k and model.d_v explicitly",
                      c.heads, c.d_model));
  require(c.encoder_layers > 0, fmt::format("model.encoder_layers = {} must be positive", c.encoder_layers));
  require(c.decoder_layers > 0, fmt::format("model.decoder_layers = {} must be positive", c.decoder_layers));
  require(c.max_len > 1, fmt::format("model.max_len = {} must be at least 2", c.max_len));
  require(c.layer_norm_eps > 0, fmt::format("model.layer_norm_eps = {} must be positive", c.layer_norm_eps));
  validate_dropout(c.dropout, "model.dropout");
  validate_dropout(c.attention_dropout, "model.attention_dropout");
  validate_dropout(c.relu_dropout, "model.relu_dropout");
  require(src_vocab > kUnkId && tgt_vocab > kUnkId,
          fmt::format("vocabularies of {} (source) and {} (target) tokens cannot hold the {} special tokens",
                      src_vocab, tgt_vocab, kUnkId + 1));
  require(!c.share_embeddings || src_vocab == tgt_vocab,
          fmt::format("model.share_embeddings = true needs one shared vocabulary, but the source has {} "
                      "tokens and the target {}: set data.shared_vocab = true or model.share_embeddings = "
                      "false",
                      src_vocab, tgt_vocab));
}

void DecoderState::reorder(const torch::Tensor& index) {
  for (auto& cache : self) cache.reorder(index);
  for (auto& cache : cross) cache.reorder(index);
}

TransformerImpl::TransformerImpl(const ModelConfig& config, int64_t src_vocab, int64_t tgt_vocab)
    : config_(config), src_vocab_(src_vocab), tgt_vocab_(tgt_vocab) {
  validate_model(config_, src_vocab_, tgt_vocab_);
  // The target embedding owns its matrix; the source embedding shares it under three-way tying.
  Embeddings tgt(embeddings_options(config_, tgt_vocab_));
  Embeddings src = config_.share_embeddings ? Embeddings(embeddings_options(config_, src_vocab_), tgt->weight)
                                            : Embeddings(embeddings_options(config_, src_vocab_));
  src_embed = register_module("src_embed", src);
  tgt_embed = register_module("tgt_embed", tgt);
  const auto layer_options = LayerOptions::from(config_);
  encoder = register_module("encoder", Encoder(layer_options, config_.encoder_layers));
  decoder = register_module("decoder", Decoder(layer_options, config_.decoder_layers));
  if (!config_.tie_output_projection) {
    out_proj = register_module(
        "out_proj", torch::nn::Linear(torch::nn::LinearOptions(config_.d_model, tgt_vocab_).bias(false)));
  }
  reset_parameters();
}

void TransformerImpl::reset_parameters() {
  torch::NoGradGuard no_grad;
  src_embed->reset_parameters(config_.init);
  tgt_embed->reset_parameters(config_.init);
  if (out_proj) init_embedding_matrix(out_proj->weight, config_.init);
  for (auto& module : modules(/*include_self=*/false)) {
    if (auto* mha = module->as<MultiheadAttentionImpl>()) mha->reset_parameters();
    if (auto* ffn = module->as<FeedForwardImpl>()) ffn->reset_parameters();
    if (auto* norm = module->as<torch::nn::LayerNormImpl>()) norm->reset_parameters();
  }
}

int64_t TransformerImpl::num_parameters() const {
  int64_t n = 0;
  for (const auto& p : parameters()) n += p.numel();
  return n;
}

torch::Tensor TransformerImpl::output_weight() const {
  return out_proj ? out_proj->weight : tgt_embed->weight;
}

torch::Tensor TransformerImpl::project(const torch::Tensor& y) const {
  return qkv::gemm_linear(y, output_weight());  // [..., C] -> [..., V]
}

torch::Tensor TransformerImpl::encode(const torch::Tensor& src) {
  TORCH_CHECK(src.dim() == 2, fmt::format("encode expects source ids [B, S], got {}", c10::str(src.sizes())));
  auto padding_mask = src.eq(kPadId);                              // [B, S]
  return encoder->forward(src_embed->forward(src), padding_mask);  // [B, S, C]
}

torch::Tensor TransformerImpl::decode(const torch::Tensor& tgt_in, const torch::Tensor& memory,
                                      const torch::Tensor& src) {
  TORCH_CHECK(tgt_in.dim() == 2,
              fmt::format("decode expects target ids [B, T], got {}", c10::str(tgt_in.sizes())));
  // Causal masking keeps every real position away from the target padding that follows it, so only
  // the source needs a padding mask.
  auto y = decoder->forward(tgt_embed->forward(tgt_in), memory, src.eq(kPadId));  // [B, T, C]
  return project(y);                                                              // [B, T, V]
}

torch::Tensor TransformerImpl::forward(const torch::Tensor& src, const torch::Tensor& tgt_in) {
  return decode(tgt_in, encode(src), src);  // [B, T, V]
}

DecoderState TransformerImpl::start_state() const {
  DecoderState state;
  state.self.resize(decoder->layers.size());
  state.cross.resize(decoder->layers.size());
  return state;
}

torch::Tensor TransformerImpl::decode_step(const torch::Tensor& tokens, const torch::Tensor& memory,
                                           const torch::Tensor& src, DecoderState& state) {
  TORCH_CHECK(tokens.dim() == 1,
              fmt::format("decode_step expects tokens [B], got {}", c10::str(tokens.sizes())));
  auto y = tgt_embed->forward(tokens.unsqueeze(1), state.steps);               // [B, 1, C]
  y = decoder->forward(y, memory, src.eq(kPadId), &state.self, &state.cross);  // [B, 1, C]
  state.steps += 1;
  return project(y.squeeze(1));  // [B, V]
}

void TransformerImpl::set_record_attention(bool on) {
  for (auto& module : modules(/*include_self=*/false)) {
    if (auto* mha = module->as<MultiheadAttentionImpl>()) mha->set_record_attention(on);
  }
}

TransformerImpl::AttentionMaps TransformerImpl::attention_maps() const {
  AttentionMaps maps;
  for (const auto& layer : encoder->layers) maps.encoder_self.push_back(layer->self_attn->last_attention());
  for (const auto& layer : decoder->layers) {
    maps.decoder_self.push_back(layer->self_attn->last_attention());
    maps.decoder_cross.push_back(layer->cross_attn->last_attention());
  }
  return maps;
}

}  // namespace qkv
