// Dynamic loss scaling for float16 training (Micikevicius et al. 2018, "Mixed Precision Training",
// §3.2), the schedule of fairseq's DynamicLossScaler and PyTorch's GradScaler.
//
// float16 keeps 5 exponent bits: gradients below 2^-24 flush to zero. Multiplying the loss by a large
// scale S before backward lifts them into range; the optimizer sees the gradients divided by S again.
// S is chosen on line: a step whose scaled gradients overflow (inf or NaN) is skipped, parameters and
// Adam's state untouched, and S is halved; after `growth_interval` clean steps in a row S doubles, to
// probe whether a larger scale has become safe. A scale that falls below `min_scale` means the
// gradients are not finite at any scale: training has diverged (LossScaleUnderflow).
//
// bfloat16 has fp32's 8 exponent bits and needs none of this (precision.h).
#pragma once

#include <cstdint>
#include <stdexcept>

namespace qkv {

struct LossScalerOptions {
  double init_scale = 128.0;       // 2^7, fairseq's --fp16-init-scale
  double growth_factor = 2.0;      // fairseq and PyTorch
  double backoff_factor = 0.5;     // fairseq and PyTorch
  int64_t growth_interval = 2000;  // clean steps before growing: PyTorch's default
  double min_scale = 1e-4;         // fairseq's --min-loss-scale
};

// Thrown when an overflow would take the scale below LossScalerOptions::min_scale.
struct LossScaleUnderflow : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class LossScaler {
 public:
  // What a checkpoint keeps, so that a resumed run continues with the same scale and counts.
  struct State {
    double scale = 0.0;
    int64_t clean_steps = 0;    // clean steps since the scale last changed
    int64_t skipped_steps = 0;  // overflowed (skipped) steps, over the whole run
  };

  explicit LossScaler(const LossScalerOptions& options = {});

  // The factor for the next step's loss.
  double scale() const { return state_.scale; }
  int64_t skipped_steps() const { return state_.skipped_steps; }

  // Records the outcome of a step taken at scale(): an overflow skips the step (counted) and backs
  // the scale off; growth_interval clean steps in a row grow it. Returns true when the scale changed.
  bool update(bool overflow);

  const State& state() const { return state_; }
  void restore(const State& state);

 private:
  LossScalerOptions options_;
  State state_;
};

}  // namespace qkv
