// Input embeddings: token lookup × √d_model + positions, then dropout (§3.4, §3.5). See embeddings.h.
//
// Dimensions: B = batch, T = sequence length, C = d_model, V = vocabulary, L = max_len.
#include "model/embeddings.h"

#include <cmath>

#include <fmt/format.h>
#include <torch/nn/init.h>

#include "ops/dropout.h"

namespace qkv {

torch::Tensor sinusoidal_positions(int64_t max_len, int64_t d_model) {
  auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
  auto pos = torch::arange(max_len, f64).unsqueeze(1);                    // [L, 1]
  auto two_i = torch::arange(0, d_model, 2, f64);                         // [ceil(C/2)]
  auto angle = pos * torch::exp(two_i * (-std::log(10000.0) / d_model));  // [L, ceil(C/2)]
  auto table = torch::empty({max_len, d_model}, f64);                     // [L, C]
  using torch::indexing::None;
  using torch::indexing::Slice;
  table.index_put_({Slice(), Slice(0, None, 2)}, torch::sin(angle));                            // 2i
  table.index_put_({Slice(), Slice(1, None, 2)}, torch::cos(angle).narrow(1, 0, d_model / 2));  // 2i + 1
  return table;
}

void init_embedding_matrix(torch::Tensor& matrix, InitScheme init) {
  torch::NoGradGuard no_grad;
  if (init == InitScheme::Normal) {
    matrix.normal_(0.0, std::pow(static_cast<double>(matrix.size(1)), -0.5));
  } else {
    torch::nn::init::xavier_uniform_(matrix);
  }
}

EmbeddingsImpl::EmbeddingsImpl(const EmbeddingsOptions& options, torch::Tensor shared_weight)
    : options_(options),
      owns_weight_(!shared_weight.defined()),
      scale_(std::sqrt(static_cast<double>(options.d_model))) {
  TORCH_CHECK(options_.vocab > 0 && options_.d_model > 0 && options_.max_len > 0,
              fmt::format("embeddings need vocab, d_model and max_len > 0 (got {}, {}, {})", options_.vocab,
                          options_.d_model, options_.max_len));
  if (owns_weight_) {
    weight = register_parameter("weight", torch::empty({options_.vocab, options_.d_model}));
  } else {
    TORCH_CHECK(shared_weight.dim() == 2 && shared_weight.size(0) == options_.vocab &&
                    shared_weight.size(1) == options_.d_model,
                fmt::format("a shared embedding must be [{}, {}], got {}", options_.vocab, options_.d_model,
                            c10::str(shared_weight.sizes())));
    weight = shared_weight;
  }
  if (options_.positional == Positional::Learned) {
    positions = register_parameter("positions", torch::empty({options_.max_len, options_.d_model}));
  }
  reset_parameters(InitScheme::XavierUniform);
}

void EmbeddingsImpl::reset_parameters(InitScheme init) {
  if (owns_weight_) init_embedding_matrix(weight, init);
  if (options_.positional == Positional::Learned) init_embedding_matrix(positions, init);
}

torch::Tensor EmbeddingsImpl::forward(const torch::Tensor& tokens, int64_t offset) {
  TORCH_CHECK(tokens.dim() == 2,
              fmt::format("embeddings expect token ids [B, T], got {}", c10::str(tokens.sizes())));
  const int64_t length = tokens.size(1);
  TORCH_CHECK(offset + length <= options_.max_len,
              fmt::format("a sequence of {} positions does not fit model.max_len = {}; shorten the input or "
                          "raise model.max_len",
                          offset + length, options_.max_len));
  if (options_.positional == Positional::Sinusoidal &&
      (!positions.defined() || positions.dtype() != weight.dtype() ||
       positions.device() != weight.device())) {
    positions = sinusoidal_positions(options_.max_len, options_.d_model).to(weight.options());  // [L, C]
  }
  auto x = torch::embedding(weight, tokens) * scale_;  // [B, T, C]
  x = x + positions.narrow(0, offset, length);         // + [T, C], broadcast over B
  return qkv::counter_dropout(x, options_.dropout, is_training());
}

}  // namespace qkv
