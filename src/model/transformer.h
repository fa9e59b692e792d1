// The encoder-decoder Transformer of Vaswani et al. 2017 (§3): embeddings scaled by √d_model plus
// positions, N encoder layers (self-attention, FFN), N decoder layers (causal self-attention,
// cross-attention, FFN), and a pre-softmax projection tied to the embeddings.
//
// Embedding sharing (§3.4): the target embedding "tgt_embed.weight" always exists; with
// share_embeddings it also serves the source (no "src_embed.weight"), and with tie_output_projection it
// is the pre-softmax projection (no "out_proj.weight"). Both on is the paper's three-way tying. A tied
// matrix is registered once, so it is counted, saved and optimised once.
//
// Lengths: encode(), decode() and decode_step() refuse (c10::Error naming model.max_len) sequences
// longer than model.max_len, the positional table's size; the search functions in decoding.h truncate
// over-long sources with a warning instead.
//
// Dimensions: B = batch, S = source length, T = target length, C = d_model, V = vocabulary.
#pragma once

#include <vector>

#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include "base/config.h"
#include "base/parameter_count.h"
#include "model/embeddings.h"
#include "model/layers.h"
#include "model/multihead_attention.h"

namespace qkv {

// Per-layer caches for incremental decoding: self-attention grows one step per call, a row per decoded
// row; cross-attention keys/values are computed from the encoder output once, a row per source
// sentence (the hypotheses of a sentence share them in beam search).
struct DecoderState {
  std::vector<KVCache> self;   // one per decoder layer, [N, ...]
  std::vector<KVCache> cross;  // one per decoder layer, [B, ...]
  int64_t steps = 0;           // target positions already decoded
  // Keeps the decoded rows `rows` [N'] in the self-attention caches (beam search reorders and prunes).
  void reorder(const torch::Tensor& rows);
  // Keeps the source sentences `sources` [B'] in the cross-attention caches.
  void select_sources(const torch::Tensor& sources);
};

class TransformerImpl : public torch::nn::Module {
 public:
  // share_embeddings (three-way tying) requires src_vocab == tgt_vocab.
  TransformerImpl(const ModelConfig& config, int64_t src_vocab, int64_t tgt_vocab);

  // src [B, S] token ids (kPadId = padding) -> memory [B, S, C].
  torch::Tensor encode(const torch::Tensor& src);
  // tgt_in [B, T] (starts with kBosId), memory [B, S, C], src [B, S] (for its padding) -> logits [B, T, V].
  // tgt_in may also hold G rows per source, [B·G, T], as decode_step's tokens do.
  torch::Tensor decode(const torch::Tensor& tgt_in, const torch::Tensor& memory, const torch::Tensor& src);
  // Teacher-forced training pass: logits [B, T, V].
  torch::Tensor forward(const torch::Tensor& src, const torch::Tensor& tgt_in);

  // One incremental decoding step: tokens [N] (the newest target token of each row) -> logits [N, V],
  // appending to `state`. memory [B, S, C] and src [B, S] as for decode(), with N = G·B: the G
  // consecutive rows b·G .. b·G + G - 1 decode from source b (G = 1 but for beam search's hypotheses).
  torch::Tensor decode_step(const torch::Tensor& tokens, const torch::Tensor& memory,
                            const torch::Tensor& src, DecoderState& state);
  DecoderState start_state() const;

  // Attention probabilities of the last forward, for pictures: records when enabled.
  void set_record_attention(bool on);
  // Per layer, [B, H, Tq, Tk] each, from the last forward while recording (empty tensors otherwise).
  struct AttentionMaps {
    std::vector<torch::Tensor> encoder_self;
    std::vector<torch::Tensor> decoder_self;
    std::vector<torch::Tensor> decoder_cross;
  };
  AttentionMaps attention_maps() const;

  // Decoder output y [..., C] -> logits [..., V] with the (possibly tied) pre-softmax projection.
  torch::Tensor project(const torch::Tensor& y) const;
  // The [V, C] pre-softmax matrix: tgt_embed.weight when tied, out_proj.weight otherwise.
  torch::Tensor output_weight() const;

  // Re-initialises every parameter: Xavier-uniform linear layers with zero biases, LayerNorm γ = 1 and
  // β = 0, embeddings (and an untied projection, and learned positions) Xavier-uniform or, with
  // model.init = normal, N(0, d_model^-0.5). Called by the constructor.
  void reset_parameters();

  // The number of parameters actually registered (each tied matrix once).
  int64_t num_parameters() const;

  const ModelConfig& config() const { return config_; }
  int64_t src_vocab() const { return src_vocab_; }
  int64_t tgt_vocab() const { return tgt_vocab_; }

  Embeddings src_embed{nullptr};
  Embeddings tgt_embed{nullptr};
  Encoder encoder{nullptr};
  Decoder decoder{nullptr};
  torch::nn::Linear out_proj{nullptr};  // [V, C] without bias; only when tie_output_projection = false

 private:
  ModelConfig config_;
  int64_t src_vocab_;
  int64_t tgt_vocab_;
};
TORCH_MODULE(Transformer);

// Refuses what cannot be built before anything is (c10::Error naming the argument): layer counts,
// vocabularies too small for the special tokens, tying across vocabularies of different sizes. The
// config's keys are checked earlier, by validate() (config/load.h). Sizes include the special tokens.
void check_model_arguments(const ModelConfig& config, int64_t src_vocab, int64_t tgt_vocab);

// The arithmetic parameter count (base/parameter_count.h) of a model these arguments build, by part.
// count_parameters() refuses (c10::Error) a count that overflows 64 bits.
ParameterCount count_parameter_parts(const ModelConfig& config, int64_t src_vocab, int64_t tgt_vocab);
int64_t count_parameters(const ModelConfig& config, int64_t src_vocab, int64_t tgt_vocab);

}  // namespace qkv
