// Gradient exchange for data-parallel training, on the model of PyTorch's DDP (its design note:
// buckets filled in the order gradients become ready, each all-reduced as soon as it is full):
//
//   - the parameters are laid out in flat buckets in reverse registration order, because backward
//     produces gradients roughly from the last layer to the first: a small first bucket (1 MiB, so
//     communication starts early) and then about 25 MiB each;
//   - a hook on every parameter copies its gradient into its bucket the moment autograd has it;
//   - a bucket whose gradients are all in is all-reduced (summed) asynchronously at once, while
//     backward goes on; buckets are started strictly in index order, the same on every rank, which
//     is what the collectives need (and what makes the result reproducible);
//   - finish() starts what is left (a parameter that got no gradient contributes zeros), waits for
//     every bucket and writes the sums back into the parameters' .grad.
//
// With gradient accumulation only the last backward of a step exchanges: earlier ones accumulate
// into .grad locally, and the hook adds that local sum to the last batch's gradient. In a world of
// one process nothing is exchanged and no hook is installed.
#pragma once

#include <cstdint>
#include <vector>

#include <torch/types.h>

#include "dist/world.h"

namespace qkv::dist {

class GradientReducer {
 public:
  static constexpr int64_t kBucketBytes = 25 << 20;
  static constexpr int64_t kFirstBucketBytes = 1 << 20;

  GradientReducer(World& world, std::vector<torch::Tensor> parameters, int64_t bucket_bytes = kBucketBytes,
                  int64_t first_bucket_bytes = kFirstBucketBytes);
  ~GradientReducer();
  GradientReducer(const GradientReducer&) = delete;
  GradientReducer& operator=(const GradientReducer&) = delete;

  // Call before each backward of a step; `exchange` is true for the step's last backward.
  void begin_backward(bool exchange);
  // After the last backward: every parameter's .grad holds the sum over all ranks.
  void finish();

  bool active() const { return world_.size() > 1; }
  int64_t buckets() const { return static_cast<int64_t>(buckets_.size()); }
  // Seconds spent in finish() waiting for communication (not hidden behind backward), since the
  // last call; resets it.
  double take_wait_seconds();

 private:
  struct Bucket {
    torch::Tensor flat;            // [n] the bucket's gradients, back to back
    std::vector<size_t> members;   // indices into parameters_
    std::vector<int64_t> offsets;  // where each member starts in `flat`
    size_t ready = 0;              // members whose gradient is in
    bool started = false;
    Pending reduction;
  };

  void on_gradient(size_t index, const torch::Tensor& grad);
  void start_ready_buckets();

  World& world_;
  std::vector<torch::Tensor> parameters_;
  std::vector<Bucket> buckets_;
  std::vector<size_t> bucket_of_;       // parameter index -> bucket index
  std::vector<size_t> slot_of_;         // parameter index -> member position in its bucket
  std::vector<bool> gradient_in_;       // parameter index -> its gradient reached the bucket this step
  std::vector<unsigned> hook_handles_;  // per parameter
  size_t next_to_start_ = 0;
  bool exchanging_ = false;
  double wait_seconds_ = 0.0;
};

}  // namespace qkv::dist
