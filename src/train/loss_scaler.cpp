// Dynamic loss scaling: see loss_scaler.h.
#include "train/loss_scaler.h"

#include <fmt/format.h>

namespace qkv {

LossScaler::LossScaler(const LossScalerOptions& options) : options_(options) {
  if (!(options_.init_scale > 0 && options_.growth_factor > 1 && options_.backoff_factor > 0 &&
        options_.backoff_factor < 1 && options_.growth_interval > 0 && options_.min_scale > 0))
    throw std::invalid_argument(fmt::format(
        "LossScaler: needs init_scale > 0, growth_factor > 1, 0 < backoff_factor < 1, growth_interval > 0 "
        "and min_scale > 0 (got {}, {}, {}, {}, {})",
        options_.init_scale, options_.growth_factor, options_.backoff_factor, options_.growth_interval,
        options_.min_scale));
  state_.scale = options_.init_scale;
}

bool LossScaler::update(bool overflow) {
  if (overflow) {
    ++state_.skipped_steps;
    state_.clean_steps = 0;
    const double backed_off = state_.scale * options_.backoff_factor;
    if (backed_off < options_.min_scale)
      throw LossScaleUnderflow(fmt::format(
          "the float16 loss scale would fall to {:g}, below its minimum {:g}: the gradients overflow at "
          "every scale, so training has diverged (try a lower train.lr, a longer train.warmup, "
          "train.clip_norm > 0, or train.precision \"bf16\")",
          backed_off, options_.min_scale));
    state_.scale = backed_off;
    return true;
  }
  if (++state_.clean_steps < options_.growth_interval) return false;
  state_.clean_steps = 0;
  state_.scale *= options_.growth_factor;
  return true;
}

void LossScaler::restore(const State& state) {
  if (!(state.scale > 0) || state.clean_steps < 0 || state.skipped_steps < 0)
    throw std::invalid_argument(
        fmt::format("LossScaler: invalid state (scale {}, clean steps {}, skipped {})", state.scale,
                    state.clean_steps, state.skipped_steps));
  state_ = state;
}

}  // namespace qkv
