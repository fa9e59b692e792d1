// Learning-rate schedules: see schedule.h for the formulas.
#include "train/schedule.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "base/error.h"

namespace qkv {

double learning_rate(LrSchedule schedule, double lr, int64_t warmup, int64_t d_model, int64_t step) {
  if (step < 1) throw ConfigError(fmt::format("learning_rate: step counts from 1, got {}", step));
  const double s = static_cast<double>(step);
  switch (schedule) {
    case LrSchedule::Constant:
      return lr;
    case LrSchedule::Noam: {
      if (warmup < 1) throw ConfigError("train.warmup must be >= 1 for the noam schedule");
      const double w = static_cast<double>(warmup);
      return lr * std::pow(static_cast<double>(d_model), -0.5) *
             std::min(std::pow(s, -0.5), s * std::pow(w, -1.5));
    }
    case LrSchedule::InverseSqrt: {
      if (warmup < 1) throw ConfigError("train.warmup must be >= 1 for the inverse_sqrt schedule");
      const double w = static_cast<double>(warmup);
      return lr * std::min(s / w, std::sqrt(w / s));
    }
  }
  throw ConfigError("learning_rate: unknown schedule");
}

double learning_rate(const Config& config, int64_t step) {
  return learning_rate(config.train.lr_schedule, config.train.lr, config.train.warmup, config.model.d_model,
                       step);
}

}  // namespace qkv
