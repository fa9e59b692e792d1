// Learning-rate schedules (src/train/schedule.h) against hand computation and the paper's figures.
#include <cmath>

#include <gtest/gtest.h>

#include "base/error.h"
#include "train/schedule.h"

namespace qkv {
namespace {

TEST(Schedule, NoamMatchesThePaper) {
  // aiayn.md: base (d_model 512, warmup 4000) peaks at 6.99e-4 at step 4000 and is 1.40e-4 at 100K.
  // 1e-7: the expected values are written to 5 significant digits (half a unit of the last is 5e-9;
  // 1e-7 is still 0.015% of the value). The formula checks below are exact but for rounding: 1e-15.
  EXPECT_NEAR(learning_rate(LrSchedule::Noam, 1.0, 4000, 512, 4000), 6.9877e-4, 1e-7);
  EXPECT_NEAR(learning_rate(LrSchedule::Noam, 1.0, 4000, 512, 100000), 1.3975e-4, 1e-7);
  // During warm-up: 512^-0.5 · step · 4000^-1.5 at step 1.
  EXPECT_NEAR(learning_rate(LrSchedule::Noam, 1.0, 4000, 512, 1),
              1.0 / std::sqrt(512.0) / std::pow(4000.0, 1.5), 1e-15);
  // The factor scales the whole curve.
  EXPECT_NEAR(learning_rate(LrSchedule::Noam, 2.0, 4000, 512, 4000),
              2 * learning_rate(LrSchedule::Noam, 1.0, 4000, 512, 4000), 1e-15);
}

TEST(Schedule, NoamIsContinuousAtTheWarmupEdge) {
  const double before = learning_rate(LrSchedule::Noam, 1.0, 100, 64, 99);
  const double at = learning_rate(LrSchedule::Noam, 1.0, 100, 64, 100);
  const double after = learning_rate(LrSchedule::Noam, 1.0, 100, 64, 101);
  EXPECT_LT(before, at);
  EXPECT_LT(after, at);
  EXPECT_NEAR(at, 1.0 / 8.0 / 10.0, 1e-15);  // 64^-0.5 · 100^-0.5
}

TEST(Schedule, InverseSqrtWarmsUpLinearlyToThePeak) {
  EXPECT_DOUBLE_EQ(learning_rate(LrSchedule::InverseSqrt, 5e-4, 1000, 512, 500), 2.5e-4);
  EXPECT_DOUBLE_EQ(learning_rate(LrSchedule::InverseSqrt, 5e-4, 1000, 512, 1000), 5e-4);
  EXPECT_DOUBLE_EQ(learning_rate(LrSchedule::InverseSqrt, 5e-4, 1000, 512, 4000), 2.5e-4);
}

TEST(Schedule, ConstantIgnoresWarmup) {
  EXPECT_DOUBLE_EQ(learning_rate(LrSchedule::Constant, 3e-4, 0, 512, 1), 3e-4);
  EXPECT_DOUBLE_EQ(learning_rate(LrSchedule::Constant, 3e-4, 4000, 512, 123456), 3e-4);
}

TEST(Schedule, RejectsStepZeroAndMissingWarmup) {
  EXPECT_THROW(learning_rate(LrSchedule::Noam, 1.0, 4000, 512, 0), ConfigError);
  EXPECT_THROW(learning_rate(LrSchedule::Noam, 1.0, 0, 512, 10), ConfigError);
  EXPECT_THROW(learning_rate(LrSchedule::InverseSqrt, 1.0, 0, 512, 10), ConfigError);
}

}  // namespace
}  // namespace qkv
