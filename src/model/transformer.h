// The encoder-decoder Transformer of Vaswani et al. 2017 (§3): embeddings scaled by √d_model plus
// positions, N encoder layers (self-attention, FFN), N decoder layers (causal self-attention,
// cross-attention, FFN), and a pre-softmax projection tied to the embeddings.
//
// Dimensions: B = batch, S = source length, T = target length, C = d_model, V = vocabulary.
#pragma once

#include <vector>

#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include "model/multihead_attention.h"
#include "train/config.h"

namespace qkv {

// Per-layer caches for incremental decoding: self-attention grows one step per call; cross-attention
// keys/values are computed from the encoder output once.
struct DecoderState {
  std::vector<KVCache> self;   // one per decoder layer
  std::vector<KVCache> cross;  // one per decoder layer
  int64_t steps = 0;           // target positions already decoded
  void reorder(const torch::Tensor& index);  // index [B'] selects rows (beam search)
};

class TransformerImpl : public torch::nn::Module {
 public:
  // share_embeddings (three-way tying) requires src_vocab == tgt_vocab.
  TransformerImpl(const ModelConfig& config, int64_t src_vocab, int64_t tgt_vocab);

  // src [B, S] token ids (kPadId = padding) -> memory [B, S, C].
  torch::Tensor encode(const torch::Tensor& src);
  // tgt_in [B, T] (starts with kBosId), memory [B, S, C], src [B, S] (for its padding) -> logits [B, T, V].
  torch::Tensor decode(const torch::Tensor& tgt_in, const torch::Tensor& memory, const torch::Tensor& src);
  // Teacher-forced training pass: logits [B, T, V].
  torch::Tensor forward(const torch::Tensor& src, const torch::Tensor& tgt_in);

  // One incremental decoding step: tokens [B] (the newest target token of each row) -> logits [B, V],
  // appending to `state`. memory and src as for decode().
  torch::Tensor decode_step(const torch::Tensor& tokens, const torch::Tensor& memory,
                            const torch::Tensor& src, DecoderState& state);
  DecoderState start_state() const;

  // Attention probabilities of the last forward, for pictures: records when enabled.
  void set_record_attention(bool on);

  const ModelConfig& config() const { return config_; }
  int64_t src_vocab() const { return src_vocab_; }
  int64_t tgt_vocab() const { return tgt_vocab_; }

 private:
  ModelConfig config_;
  int64_t src_vocab_;
  int64_t tgt_vocab_;
};
TORCH_MODULE(Transformer);

// The arithmetic parameter count (aiayn.md, "Parameter counts") without building the model.
int64_t count_parameters(const ModelConfig& config, int64_t src_vocab, int64_t tgt_vocab);

}  // namespace qkv
