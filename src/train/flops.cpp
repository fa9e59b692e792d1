// FLOP counts: see flops.h for what is counted.
#include "train/flops.h"

#include <fmt/format.h>

namespace qkv {
namespace {

// 2·m·k·n for an [m, k] × [k, n] product.
double matmul(double m, double k, double n) {
  return 2.0 * m * k * n;
}

// Attention of `tq` queries over `tk` keys, per sentence: projections and the two batched products.
// Keys and values are projected from the tk positions they come from (the encoder output for
// cross-attention).
double attention_flops(const ModelConfig& model, double tq, double tk) {
  const double c = static_cast<double>(model.d_model);
  const double h = static_cast<double>(model.heads);
  const double dk = static_cast<double>(model.head_dim_k());
  const double dv = static_cast<double>(model.head_dim_v());
  return matmul(tq, c, h * dk)     // Q = x W_Q
         + matmul(tk, c, h * dk)   // K = m W_K
         + matmul(tk, c, h * dv)   // V = m W_V
         + h * matmul(tq, dk, tk)  // Q Kᵀ per head
         + h * matmul(tq, tk, dv)  // P V per head
         + matmul(tq, h * dv, c);  // Concat(heads) W_O
}

double ffn_flops(const ModelConfig& model, double t) {
  const double c = static_cast<double>(model.d_model);
  const double f = static_cast<double>(model.d_ff);
  return matmul(t, c, f) + matmul(t, f, c);
}

}  // namespace

double forward_flops(const ModelConfig& model, int64_t tgt_vocab, int64_t batch, int64_t src_len,
                     int64_t tgt_len) {
  const double s = static_cast<double>(src_len);
  const double t = static_cast<double>(tgt_len);
  const double encoder_layer = attention_flops(model, s, s) + ffn_flops(model, s);
  const double decoder_layer =
      attention_flops(model, t, t) + attention_flops(model, t, s) + ffn_flops(model, t);
  const double output = matmul(t, static_cast<double>(model.d_model), static_cast<double>(tgt_vocab));
  const double per_sentence = static_cast<double>(model.encoder_layers) * encoder_layer +
                              static_cast<double>(model.decoder_layers) * decoder_layer + output;
  return static_cast<double>(batch) * per_sentence;
}

double training_flops(const ModelConfig& model, int64_t tgt_vocab, int64_t batch, int64_t src_len,
                      int64_t tgt_len) {
  return 3.0 * forward_flops(model, tgt_vocab, batch, src_len, tgt_len);
}

std::string format_flops(double flops) {
  return fmt::format("{:.2e}", flops);
}

}  // namespace qkv
