// Learning-rate schedules (Vaswani et al. 2017, §5.3), as a pure function of the optimizer step
// (counted from 1), so that a resumed run continues on the same curve.
//
//   noam          lr · d_model^-0.5 · min(step^-0.5, step · warmup^-1.5)   (the paper's; lr = 1 there)
//   inverse_sqrt  lr · min(step / warmup, sqrt(warmup / step))  (fairseq's: linear warm-up to the peak lr
//                 at step = warmup, then decay with 1/sqrt(step); lr is the peak)
//   constant      lr at every step (warmup is ignored)
#pragma once

#include <cstdint>

#include "base/config.h"

namespace qkv {

// The learning rate for optimizer step `step` >= 1. Throws ConfigError on step < 1 or warmup < 1
// where the schedule needs one.
double learning_rate(LrSchedule schedule, double lr, int64_t warmup, int64_t d_model, int64_t step);

// The same, with the values read from a resolved config.
double learning_rate(const Config& config, int64_t step);

}  // namespace qkv
