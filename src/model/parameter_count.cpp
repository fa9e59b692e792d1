// The parameter count by arithmetic (aiayn.md, "Parameter counts"), without building the model:
//   attention = 2·C·(H·Dk) + 2·C·(H·Dv) + 2·H·Dk + H·Dv + C   (W_Q, W_K, W_V, W_O and their biases)
//   FFN       = 2·C·F + F + C
//   LayerNorm = 2·C
//   encoder layer = attention + FFN + 2 LayerNorms; decoder layer = 2 attentions + FFN + 3 LayerNorms
// plus one final LayerNorm per stack in pre-norm order, the embedding matrices (each tied matrix
// once), learned positional tables, and an untied pre-softmax matrix. tests/test_params.cpp checks
// that this equals what TransformerImpl registers.
#include "model/transformer.h"

namespace qkv {

ParameterCount count_parameter_parts(const ModelConfig& config, int64_t src_vocab, int64_t tgt_vocab) {
  check_model_arguments(config, src_vocab, tgt_vocab);
  const int64_t c = config.d_model;
  const int64_t qk = config.heads * config.head_dim_k();  // H·Dk
  const int64_t vv = config.heads * config.head_dim_v();  // H·Dv
  const int64_t attention = 2 * c * qk + 2 * c * vv + 2 * qk + vv + c;
  const int64_t ffn = 2 * c * config.d_ff + config.d_ff + c;
  const int64_t norm = 2 * c;
  const int64_t final_norm = config.norm == NormOrder::Pre ? norm : 0;

  ParameterCount count;
  count.encoder = config.encoder_layers * (attention + ffn + 2 * norm) + final_norm;
  count.decoder = config.decoder_layers * (2 * attention + ffn + 3 * norm) + final_norm;
  count.embeddings = tgt_vocab * c + (config.share_embeddings ? 0 : src_vocab * c);
  count.positions = config.positional == Positional::Learned ? 2 * config.max_len * c : 0;
  count.output_projection = config.tie_output_projection ? 0 : tgt_vocab * c;
  return count;
}

int64_t count_parameters(const ModelConfig& config, int64_t src_vocab, int64_t tgt_vocab) {
  return count_parameter_parts(config, src_vocab, tgt_vocab).total();
}

}  // namespace qkv
