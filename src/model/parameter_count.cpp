// The parameter count by arithmetic without building the model: the formula (base/parameter_count.h)
// applied to arguments the model accepts. tests/test_params.cpp checks that it equals what
// TransformerImpl registers.
#include <fmt/format.h>

#include "model/transformer.h"

namespace qkv {

ParameterCount count_parameter_parts(const ModelConfig& config, int64_t src_vocab, int64_t tgt_vocab) {
  check_model_arguments(config, src_vocab, tgt_vocab);
  return parameter_count_formula(config, src_vocab, tgt_vocab);
}

int64_t count_parameters(const ModelConfig& config, int64_t src_vocab, int64_t tgt_vocab) {
  const ParameterCount count = count_parameter_parts(config, src_vocab, tgt_vocab);
  TORCH_CHECK(!count.overflowed,
              fmt::format("Transformer: the parameter count of d_model {}, d_ff {}, {}+{} layers "
                          "does not fit in 64 bits",
                          config.d_model, config.d_ff, config.encoder_layers, config.decoder_layers));
  return count.total();
}

}  // namespace qkv
