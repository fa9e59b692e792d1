// The encoder-decoder Transformer (Vaswani et al. 2017, §3): embeddings, the two stacks and the tied
// pre-softmax projection, built from ModelConfig. See transformer.h for the tying rules.
//
// Dimensions: B = batch, S = source length, T = target length, C = d_model, V = vocabulary.
#include "model/transformer.h"

#include <fmt/format.h>
#include <torch/nn/init.h>

#include "base/special_tokens.h"
#include "ops/gemm.h"

namespace qkv {
namespace {

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

void check_model_arguments(const ModelConfig& c, int64_t src_vocab, int64_t tgt_vocab) {
  // The layers check their own widths, heads and dropout rates; what only the whole model knows is
  // how the vocabularies fit the special tokens and the tying.
  TORCH_CHECK(c.encoder_layers > 0 && c.decoder_layers > 0,
              fmt::format("Transformer: layer counts must be positive, got {} encoder and {} decoder layers",
                          c.encoder_layers, c.decoder_layers));
  TORCH_CHECK(
      src_vocab > kUnkId && tgt_vocab > kUnkId,
      fmt::format("Transformer: vocabularies of {} (source) and {} (target) tokens cannot hold the {} "
                  "special tokens",
                  src_vocab, tgt_vocab, kUnkId + 1));
  TORCH_CHECK(!c.share_embeddings || src_vocab == tgt_vocab,
              fmt::format("Transformer: shared embeddings need vocabularies of one size, got {} (source) and "
                          "{} (target)",
                          src_vocab, tgt_vocab));
}

void DecoderState::reorder(const torch::Tensor& rows) {
  for (auto& cache : self) cache.reorder(rows);
}

void DecoderState::select_sources(const torch::Tensor& sources) {
  for (auto& cache : cross) cache.reorder(sources);
}

TransformerImpl::TransformerImpl(const ModelConfig& config, int64_t src_vocab, int64_t tgt_vocab)
    : config_(config), src_vocab_(src_vocab), tgt_vocab_(tgt_vocab) {
  check_model_arguments(config_, src_vocab_, tgt_vocab_);
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
