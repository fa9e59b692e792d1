// The Transformer's parameter count by arithmetic (aiayn.md, "Parameter counts"), from the config alone:
//   attention = 2·C·(H·Dk) + 2·C·(H·Dv) + 2·H·Dk + H·Dv + C   (W_Q, W_K, W_V, W_O and their biases)
//   FFN       = 2·C·F + F + C
//   LayerNorm = 2·C
//   encoder layer = attention + FFN + 2 LayerNorms; decoder layer = 2 attentions + FFN + 3 LayerNorms
// plus one final LayerNorm per stack in pre-norm order, the embedding matrices (each tied matrix
// once), learned positional tables, and an untied pre-softmax matrix.
//
// Plain arithmetic, so that both the model (model/transformer.h, which checks its arguments first) and
// the config's resource checks (config/resources.h) use this one formula. A config may hold any
// positive int64, so the arithmetic is checked (base/checked.h).
#pragma once

#include <cstdint>

#include "base/checked.h"
#include "base/config.h"

namespace qkv {

struct ParameterCount {
  int64_t embeddings = 0;         // token embedding matrices, each tied matrix once
  int64_t positions = 0;          // learned positional tables (0 for sinusoids)
  int64_t encoder = 0;            // encoder layers + final LayerNorm (pre-norm)
  int64_t decoder = 0;            // decoder layers + final LayerNorm (pre-norm)
  int64_t output_projection = 0;  // an untied pre-softmax matrix
  bool overflowed = false;        // the total exceeds int64: the parts are then meaningless
  int64_t total() const { return embeddings + positions + encoder + decoder + output_projection; }
};

inline ParameterCount parameter_count_formula(const ModelConfig& m, int64_t src_vocab, int64_t tgt_vocab) {
  using N = CheckedCount;
  const N c = m.d_model;
  const N f = m.d_ff;
  const N qk = N(m.heads) * m.head_dim_k();  // H·Dk
  const N vv = N(m.heads) * m.head_dim_v();  // H·Dv
  const N attention = N(2) * c * qk + N(2) * c * vv + N(2) * qk + vv + c;
  const N ffn = N(2) * c * f + f + c;
  const N norm = N(2) * c;
  const N final_norm = m.norm == NormOrder::Pre ? norm : N(0);
  const N encoder = N(m.encoder_layers) * (attention + ffn + N(2) * norm) + final_norm;
  const N decoder = N(m.decoder_layers) * (N(2) * attention + ffn + N(3) * norm) + final_norm;
  const N embeddings = N(tgt_vocab) * c + (m.share_embeddings ? N(0) : N(src_vocab) * c);
  const N positions = m.positional == Positional::Learned ? N(2) * m.max_len * c : N(0);
  const N output_projection = m.tie_output_projection ? N(0) : N(tgt_vocab) * c;

  ParameterCount count;
  count.encoder = encoder.value();
  count.decoder = decoder.value();
  count.embeddings = embeddings.value();
  count.positions = positions.value();
  count.output_projection = output_projection.value();
  count.overflowed = (encoder + decoder + embeddings + positions + output_projection).overflowed();
  return count;
}

}  // namespace qkv
