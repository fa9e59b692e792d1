// Bucketed gradient exchange: see reducer.h.
#include "dist/reducer.h"

#include <chrono>

#include <fmt/format.h>
#include <torch/torch.h>

namespace qkv::dist {

GradientReducer::GradientReducer(World& world, std::vector<torch::Tensor> parameters, int64_t bucket_bytes,
                                 int64_t first_bucket_bytes)
    : world_(world), parameters_(std::move(parameters)) {
  if (!active()) return;
  const size_t n = parameters_.size();
  bucket_of_.assign(n, 0);
  slot_of_.assign(n, 0);
  gradient_in_.assign(n, false);
  // Reverse registration order; a bucket closes once it holds `limit` bytes.
  int64_t filled = 0;
  for (size_t k = 0; k < n; ++k) {
    const size_t i = n - 1 - k;
    const auto& p = parameters_[i];
    TORCH_CHECK(
        p.scalar_type() == parameters_.front().scalar_type() && p.device() == parameters_.front().device(),
        "GradientReducer: all parameters must share one dtype and device");
    const int64_t limit = buckets_.size() <= 1 ? first_bucket_bytes : bucket_bytes;
    if (buckets_.empty() || filled >= limit) {
      buckets_.emplace_back();
      filled = 0;
    }
    Bucket& bucket = buckets_.back();
    bucket_of_[i] = buckets_.size() - 1;
    slot_of_[i] = bucket.members.size();
    bucket.offsets.push_back(filled / static_cast<int64_t>(p.element_size()));
    bucket.members.push_back(i);
    filled += p.numel() * static_cast<int64_t>(p.element_size());
  }
  for (auto& bucket : buckets_) {
    const auto& last = parameters_[bucket.members.back()];
    bucket.flat = torch::zeros({bucket.offsets.back() + last.numel()}, last.options());
  }
  for (size_t i = 0; i < n; ++i) {
    hook_handles_.push_back(
        parameters_[i].register_hook([this, i](const torch::Tensor& grad) { on_gradient(i, grad); }));
  }
}

GradientReducer::~GradientReducer() {
  for (size_t i = 0; i < hook_handles_.size(); ++i) parameters_[i].remove_hook(hook_handles_[i]);
}

void GradientReducer::begin_backward(bool exchange) {
  exchanging_ = active() && exchange;
  if (!exchanging_) return;
  for (auto& bucket : buckets_) {
    bucket.ready = 0;
    bucket.started = false;
  }
  std::fill(gradient_in_.begin(), gradient_in_.end(), false);
  next_to_start_ = 0;
}

// Autograd calls this with a parameter's gradient of this backward, before adding it to .grad: the
// bucket gets what .grad will hold, the local sum over the step's batches.
void GradientReducer::on_gradient(size_t index, const torch::Tensor& grad) {
  if (!exchanging_ || gradient_in_[index]) return;
  torch::NoGradGuard no_grad;
  Bucket& bucket = buckets_[bucket_of_[index]];
  const auto& p = parameters_[index];
  auto slot = bucket.flat.narrow(0, bucket.offsets[slot_of_[index]], p.numel());  // [numel]
  slot.copy_(grad.reshape({-1}));
  if (p.grad().defined()) slot.add_(p.grad().reshape({-1}));
  gradient_in_[index] = true;
  if (++bucket.ready == bucket.members.size()) start_ready_buckets();
}

void GradientReducer::start_ready_buckets() {
  while (next_to_start_ < buckets_.size() &&
         buckets_[next_to_start_].ready == buckets_[next_to_start_].members.size()) {
    Bucket& bucket = buckets_[next_to_start_++];
    bucket.reduction = world_.all_reduce_sum_async(bucket.flat);
    bucket.started = true;
  }
}

void GradientReducer::finish() {
  if (!exchanging_) return;
  torch::NoGradGuard no_grad;
  // Parameters that took no part in this backward contribute what they hold (or zeros).
  for (size_t i = 0; i < parameters_.size(); ++i) {
    if (gradient_in_[i]) continue;
    Bucket& bucket = buckets_[bucket_of_[i]];
    auto slot = bucket.flat.narrow(0, bucket.offsets[slot_of_[i]], parameters_[i].numel());
    if (parameters_[i].grad().defined())
      slot.copy_(parameters_[i].grad().reshape({-1}));
    else
      slot.zero_();
    gradient_in_[i] = true;
    ++bucket.ready;
  }
  start_ready_buckets();
  const auto start = std::chrono::steady_clock::now();
  for (auto& bucket : buckets_) bucket.reduction.wait();
  wait_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  for (size_t i = 0; i < parameters_.size(); ++i) {
    const Bucket& bucket = buckets_[bucket_of_[i]];
    auto& p = parameters_[i];
    auto sum = bucket.flat.narrow(0, bucket.offsets[slot_of_[i]], p.numel()).view(p.sizes());
    if (p.grad().defined())
      p.mutable_grad().copy_(sum);
    else
      p.mutable_grad() = sum.clone();
  }
  exchanging_ = false;
}

double GradientReducer::take_wait_seconds() {
  const double seconds = wait_seconds_;
  wait_seconds_ = 0.0;
  return seconds;
}

}  // namespace qkv::dist
