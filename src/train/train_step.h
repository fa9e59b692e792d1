// One optimizer step (Vaswani et al. 2017, §5.3): forward and backward over `update_freq` batches,
// gradients accumulated and normalised by the total number of target tokens (so two half batches give
// the gradient of the whole batch), the gradient norm measured (and clipped when clip_norm > 0), then
// Adam at the step's learning rate. A non-finite loss or gradient skips the update: parameters and
// optimizer state stay exactly as they were.
//
// Mixed precision: forward and backward run under a PrecisionScope of `precision` (ops/precision.h).
// With a loss scale S != 1 (float16's dynamic loss scaling, loss_scaler.h) the loss is multiplied by S
// before backward and the gradients divided by S before clipping and Adam; a finite loss with
// non-finite scaled gradients is an overflow, reported for the scaler and skipped like any non-finite
// step.
//
// In data-parallel training (dist/) each process runs this on its own batches of the update: the
// token count is summed over all processes before backward (so every gradient is normalised by the
// update's global token count), the gradients are summed by the reducer during the last backward,
// and the statistics are summed after it. Every process then holds the same gradient, so clipping,
// the non-finite guard and Adam take the same decision everywhere. W processes with update_freq k
// compute what one process computes with update_freq W·k, up to float summation order.
#pragma once

#include <cstdint>
#include <vector>

#include <torch/optim/adam.h>

#include "base/config.h"
#include "data/batching.h"
#include "dist/reducer.h"
#include "dist/world.h"
#include "model/transformer.h"

namespace qkv {

struct StepOptions {
  double label_smoothing = 0.1;
  double clip_norm = 0.0;  // 0 = no clipping
  double lr = 1e-3;
  Precision precision = Precision::Fp32;  // of the matrix products
  double loss_scale = 1.0;                // S: 1 except under float16
  // The other processes of a data-parallel run; both null for a process on its own.
  dist::World* world = nullptr;
  dist::GradientReducer* reducer = nullptr;
  bool stop_requested = false;  // this process was asked to stop (StepResult::stop says if any was)
};

struct StepResult {
  double loss_sum = 0.0;  // smoothed loss over the step's target tokens
  double nll_sum = 0.0;
  int64_t tokens = 0;  // non-padding target tokens
  int64_t sentences = 0;
  double grad_norm = 0.0;  // L2 norm of the whole gradient, before clipping
  bool finite = true;      // false: the update was skipped
  bool overflow = false;   // the scaled gradients overflowed (finite loss, S != 1): skipped too
  double flops = 0.0;      // training FLOPs of the step's batches (flops.h)
  bool stop = false;       // some process was asked to stop: all stop after this step
};

// `batches` all go into one update (this process's share of it). The model is put in training mode.
// Sums, counts and the gradient norm in the result are over all processes.
StepResult train_step(Transformer& model, torch::optim::Adam& optimizer, const std::vector<Batch>& batches,
                      const StepOptions& options);

// Sets the learning rate of every parameter group.
void set_learning_rate(torch::optim::Adam& optimizer, double lr);

}  // namespace qkv
