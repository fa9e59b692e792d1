// The key/value cache of incremental decoding: time-major growing buffers for self-attention, the
// encoder output's keys and values for cross-attention (see kv_cache.h).
//
// Dimensions: B = rows, H = heads, T = cached steps, D = per-head width; a buffer is [capacity, B, H, D].
#include "model/kv_cache.h"

#include <algorithm>

#include <fmt/format.h>
#include <torch/torch.h>

namespace qkv {
namespace {

// The capacity of a new buffer: decoding typically runs tens of steps; doubling from 16 copies each
// step's keys at most once more on average.
constexpr int64_t kInitialCapacity = 16;

// A buffer [capacity, B, H, D] laid over `spare`'s storage when it is large enough (reused across
// beam reorders instead of allocating and faulting in fresh pages every step), otherwise a new one.
torch::Tensor buffer_like(const torch::Tensor& spare, const torch::Tensor& model, int64_t capacity,
                          int64_t rows) {
  const std::vector<int64_t> shape{capacity, rows, model.size(2), model.size(3)};
  const int64_t numel = capacity * rows * model.size(2) * model.size(3);
  if (spare.defined() && spare.numel() >= numel && spare.options().type_equal(model.options()) &&
      spare.device() == model.device()) {
    return spare.view({-1}).narrow(0, 0, numel).view(shape);
  }
  return torch::empty(shape, model.options());
}

// Gathers rows `index` [B'] of the first `length` steps of `buffer` into a buffer over `spare`'s
// storage (of the same capacity); `spare` becomes the old buffer. A cache that autograd tracks (a
// test differentiating through decoding steps) gets a fresh buffer and a differentiable copy: out=
// functions have no gradient, and a buffer that the graph saved must not be overwritten.
torch::Tensor gather(torch::Tensor& buffer, torch::Tensor& spare, const torch::Tensor& index,
                     int64_t length) {
  const auto prefix = buffer.narrow(0, 0, length);  // [T, B, H, D]
  if (torch::GradMode::is_enabled() && buffer.requires_grad()) {
    auto out =
        torch::empty({buffer.size(0), index.size(0), buffer.size(2), buffer.size(3)}, buffer.options());
    out.narrow(0, 0, length).copy_(prefix.index_select(1, index));
    return out;
  }
  auto out = buffer_like(spare, buffer, buffer.size(0), index.size(0));  // [capacity, B', H, D]
  auto filled = out.narrow(0, 0, length);  // contiguous: the leading steps of a time-major buffer
  at::index_select_out(filled, prefix, 1, index);
  spare = buffer;
  return out;
}

}  // namespace

torch::Tensor KVCache::k() const {
  return time_major_ ? k_.narrow(0, 0, length_).permute({1, 2, 0, 3}) : k_;  // [B, H, T, Dk]
}

torch::Tensor KVCache::v() const {
  return time_major_ ? v_.narrow(0, 0, length_).permute({1, 2, 0, 3}) : v_;  // [B, H, T, Dv]
}

torch::Tensor KVCache::grow(const torch::Tensor& buffer, int64_t length, int64_t needed) {
  if (buffer.size(0) >= needed) return buffer;
  const int64_t capacity = std::max(2 * buffer.size(0), needed);
  auto bigger = torch::empty({capacity, buffer.size(1), buffer.size(2), buffer.size(3)}, buffer.options());
  bigger.narrow(0, 0, length).copy_(buffer.narrow(0, 0, length));
  return bigger;
}

void KVCache::append(const torch::Tensor& k, const torch::Tensor& v) {
  TORCH_CHECK(!defined() || time_major_, "KVCache: append() on a cache that assign() filled");
  TORCH_CHECK(k.dim() == 4 && v.dim() == 4 && v.size(0) == k.size(0) && v.size(2) == k.size(2),
              fmt::format("KVCache: append() expects k [B, H, T, Dk] and v [B, H, T, Dv], got {} and {}",
                          c10::str(k.sizes()), c10::str(v.sizes())));
  const int64_t steps = k.size(2);
  if (!defined()) {
    const int64_t capacity = std::max(kInitialCapacity, steps);
    k_ = torch::empty({capacity, k.size(0), k.size(1), k.size(3)}, k.options());
    v_ = torch::empty({capacity, v.size(0), v.size(1), v.size(3)}, v.options());
    time_major_ = true;
    length_ = 0;
  }
  TORCH_CHECK(k_.size(1) == k.size(0) && k_.size(2) == k.size(1) && k_.size(3) == k.size(3) &&
                  v_.size(3) == v.size(3),
              fmt::format("KVCache: append() of k {} to a cache of {} rows, {} heads, width {}",
                          c10::str(k.sizes()), k_.size(1), k_.size(2), k_.size(3)));
  k_ = grow(k_, length_, length_ + steps);
  v_ = grow(v_, length_, length_ + steps);
  k_.narrow(0, length_, steps).copy_(k.permute({2, 0, 1, 3}));  // [T', B, H, Dk]
  v_.narrow(0, length_, steps).copy_(v.permute({2, 0, 1, 3}));  // [T', B, H, Dv]
  length_ += steps;
}

void KVCache::assign(const torch::Tensor& k, const torch::Tensor& v) {
  k_ = k.contiguous();  // [B, H, S, Dk]: read at every step, so copied into place once
  v_ = v.contiguous();  // [B, H, S, Dv]
  time_major_ = false;
  length_ = 0;
}

void KVCache::reorder(const torch::Tensor& index) {
  if (!defined()) return;
  if (!time_major_) {
    k_ = k_.index_select(0, index);  // [B', H, S, Dk]
    v_ = v_.index_select(0, index);  // [B', H, S, Dv]
    return;
  }
  k_ = gather(k_, k_spare_, index, length_);  // [capacity, B', H, Dk]
  v_ = gather(v_, v_spare_, index, length_);  // [capacity, B', H, Dv]
}

}  // namespace qkv
