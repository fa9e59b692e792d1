// Keys and values of past decoding steps, for one attention layer (multihead_attention.h).
//
// Two uses:
//   - self-attention appends the newest step's keys and values at every step. They are written into
//     time-major buffers [capacity, B, H, D] whose capacity doubles when full, so a step copies only
//     its own position (not the whole prefix, as concatenating would), and a beam reorder gathers just
//     the filled prefix, which is contiguous in that layout. k() and v() are [B, H, T, D] views of it
//     (rows of D contiguous, rows of one head B·H·D apart), which the attention kernels read in place.
//   - cross-attention assigns the keys and values of the encoder output once and reads them as they are.
//
// The views that k() and v() return stay valid until the next append() or reorder().
//
// Dimensions: B = rows (sentences, or hypotheses in beam search), H = heads, T = cached steps,
// D = per-head width (Dk for keys, Dv for values).
#pragma once

#include <torch/types.h>

namespace qkv {

class KVCache {
 public:
  bool defined() const { return k_.defined(); }
  torch::Tensor k() const;  // [B, H, T, Dk]
  torch::Tensor v() const;  // [B, H, T, Dv]

  // Self-attention: appends k [B, H, T', Dk] and v [B, H, T', Dv] after the cached steps.
  void append(const torch::Tensor& k, const torch::Tensor& v);
  // Cross-attention: holds k [B, H, S, Dk] and v [B, H, S, Dv] (made contiguous once).
  void assign(const torch::Tensor& k, const torch::Tensor& v);
  // Keeps the rows named by `index` [B'] (beam search reorders and prunes hypotheses).
  void reorder(const torch::Tensor& index);

 private:
  // One of k and v as time-major storage: buffer [capacity, B, H, D], the first length_ steps filled.
  static torch::Tensor grow(const torch::Tensor& buffer, int64_t length, int64_t needed);

  torch::Tensor k_, v_;              // time-major buffers (appended) or [B, H, S, D] (assigned)
  torch::Tensor k_spare_, v_spare_;  // the buffers a reorder writes into next (reused, not reallocated)
  int64_t length_ = 0;               // steps filled (time-major only)
  bool time_major_ = false;
};

}  // namespace qkv
