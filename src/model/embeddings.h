// Input embeddings (Vaswani et al. 2017, §3.4 and §3.5): token embeddings multiplied by √d_model, plus
// positional information, then dropout on the sum.
//
// Positions are either the paper's sinusoids, interleaved PE(pos, 2i) = sin(pos / 10000^(2i/C)),
// PE(pos, 2i+1) = cos(pos / 10000^(2i/C)) (a buffer, no parameters), or learned (Table 3 row E: a
// [max_len, C] parameter). Sequences longer than max_len are refused: the table has no row for them.
// The sinusoid table is not a parameter or buffer (nothing to save): it is computed in float64 and
// cached in the weight's dtype and device at the first forward, exact to that dtype's precision.
//
// Dimensions: B = batch, T = sequence length, C = d_model, V = vocabulary, L = max_len.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include "base/config.h"

namespace qkv {

// The interleaved sinusoid table [L, C] in float64 (callers cast it).
torch::Tensor sinusoidal_positions(int64_t max_len, int64_t d_model);

struct EmbeddingsOptions {
  int64_t vocab = 0;
  int64_t d_model = 512;
  Positional positional = Positional::Sinusoidal;
  int64_t max_len = 256;
  double dropout = 0.1;
};

class EmbeddingsImpl : public torch::nn::Module {
 public:
  // shared_weight: a [V, C] matrix registered by another module (tied embeddings); it is used here
  // but not registered again, so that it is counted, saved and optimised once. Undefined: this module
  // owns and registers its own "weight".
  explicit EmbeddingsImpl(const EmbeddingsOptions& options, torch::Tensor shared_weight = {});

  // tokens [B, T] at positions offset .. offset + T - 1 -> [B, T, C].
  torch::Tensor forward(const torch::Tensor& tokens, int64_t offset = 0);

  // Xavier-uniform, or N(0, C^-0.5) for InitScheme::Normal; applies to the weight only when owned, and
  // to learned positions.
  void reset_parameters(InitScheme init);

  bool owns_weight() const { return owns_weight_; }
  const EmbeddingsOptions& options() const { return options_; }

  torch::Tensor weight;     // [V, C]
  torch::Tensor positions;  // [L, C]: parameter "positions" (learned), or the cached sinusoid table

 private:
  EmbeddingsOptions options_;
  bool owns_weight_;
  double scale_;  // √C
};
TORCH_MODULE(Embeddings);

// Initialises a [rows, C] embedding-like matrix by the scheme (shared with the output projection).
void init_embedding_matrix(torch::Tensor& matrix, InitScheme init);

}  // namespace qkv
