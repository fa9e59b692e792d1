// The float16 loss scaler (src/train/loss_scaler.h): its state machine (overflow → skip and back off,
// growth after N clean steps, the minimum, restoring a state, the state in the checkpoint record),
// then the scaler driving real training steps (train_step.h) on the CPU through overflows injected
// by an oversized scale.
#include <limits>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "base/error.h"
#include "checkpoint/meta.h"
#include "data/batching.h"
#include "train/fused_adam.h"
#include "train/loss_scaler.h"
#include "train/train_step.h"

namespace qkv {
namespace {

LossScalerOptions every(int64_t interval) {
  LossScalerOptions o;
  o.growth_interval = interval;
  return o;
}

TEST(LossScaler, StartsAtTheInitialScale) {
  const LossScaler scaler;
  EXPECT_EQ(scaler.scale(), 128.0);
  EXPECT_EQ(scaler.skipped_steps(), 0);
}

TEST(LossScaler, OverflowSkipsTheStepAndBacksOff) {
  LossScaler scaler;
  EXPECT_TRUE(scaler.update(/*overflow=*/true));
  EXPECT_EQ(scaler.scale(), 64.0);
  EXPECT_EQ(scaler.skipped_steps(), 1);
  EXPECT_TRUE(scaler.update(true));
  EXPECT_EQ(scaler.scale(), 32.0);
  EXPECT_EQ(scaler.skipped_steps(), 2);
}

TEST(LossScaler, GrowsAfterNCleanStepsInARow) {
  LossScaler scaler(every(3));
  EXPECT_FALSE(scaler.update(false));
  EXPECT_FALSE(scaler.update(false));
  EXPECT_EQ(scaler.scale(), 128.0);
  EXPECT_TRUE(scaler.update(false));  // the third clean step
  EXPECT_EQ(scaler.scale(), 256.0);
  EXPECT_EQ(scaler.state().clean_steps, 0);  // and the count starts again
  EXPECT_FALSE(scaler.update(false));
  EXPECT_FALSE(scaler.update(false));
  EXPECT_TRUE(scaler.update(false));
  EXPECT_EQ(scaler.scale(), 512.0);
  EXPECT_EQ(scaler.skipped_steps(), 0);
}

TEST(LossScaler, AnOverflowRestartsTheCleanCount) {
  LossScaler scaler(every(3));
  scaler.update(false);
  scaler.update(false);
  scaler.update(true);  // 128 -> 64
  scaler.update(false);
  EXPECT_FALSE(scaler.update(false));  // only two clean steps since the overflow
  EXPECT_EQ(scaler.scale(), 64.0);
  EXPECT_TRUE(scaler.update(false));
  EXPECT_EQ(scaler.scale(), 128.0);
  EXPECT_EQ(scaler.skipped_steps(), 1);
}

TEST(LossScaler, FallingBelowTheMinimumIsDivergence) {
  LossScalerOptions o;
  o.init_scale = 1.0;
  o.min_scale = 0.25;
  LossScaler scaler(o);
  scaler.update(true);  // 0.5
  scaler.update(true);  // 0.25: still allowed
  EXPECT_EQ(scaler.scale(), 0.25);
  EXPECT_THROW(scaler.update(true), LossScaleUnderflow);
}

TEST(LossScaler, RestoredStateContinuesWhereItStopped) {
  LossScaler scaler(every(3));
  scaler.update(false);
  scaler.update(false);
  scaler.update(true);
  scaler.update(false);
  LossScaler resumed(every(3));
  resumed.restore(scaler.state());
  for (auto* s : {&scaler, &resumed}) {
    s->update(false);
    s->update(false);
  }
  EXPECT_EQ(resumed.scale(), scaler.scale());
  EXPECT_EQ(resumed.scale(), 128.0);  // grew after its third clean step, counted across the restore
  EXPECT_EQ(resumed.skipped_steps(), 1);
  EXPECT_THROW(resumed.restore({-1.0, 0, 0}), std::invalid_argument);
}

// A float16 run's checkpoint keeps the scaler's state; other runs' records have none.
TEST(LossScaler, StateTravelsInTheCheckpointRecord) {
  CheckpointMeta meta;
  EXPECT_FALSE(CheckpointMeta::from_json(meta.to_json(), "x.pt").loss_scale.has_value());
  meta.loss_scale = LossScaleRecord{512.0, 17, 3};
  const auto read = CheckpointMeta::from_json(meta.to_json(), "x.pt");
  ASSERT_TRUE(read.loss_scale.has_value());
  EXPECT_EQ(read.loss_scale->scale, 512.0);
  EXPECT_EQ(read.loss_scale->clean_steps, 17);
  EXPECT_EQ(read.loss_scale->skipped_steps, 3);
  auto bad = meta.to_json();
  bad["loss_scale"]["scale"] = -1.0;
  EXPECT_THROW(CheckpointMeta::from_json(bad, "x.pt"), CheckpointError);
}

TEST(LossScaler, RefusesNonsenseOptions) {
  LossScalerOptions o;
  o.backoff_factor = 1.5;
  EXPECT_THROW(LossScaler{o}, std::invalid_argument);
}

// --- the scaler driving train_step ------------------------------------------------------------------

ModelConfig tiny_model() {
  ModelConfig m;
  m.d_model = 32;
  m.d_ff = 64;
  m.heads = 4;
  m.encoder_layers = 1;
  m.decoder_layers = 1;
  m.dropout = 0.0;
  m.max_len = 32;
  return m;
}

Batch fixed_batch() {
  torch::manual_seed(7);
  std::vector<Example> examples;
  for (int i = 0; i < 6; ++i) {
    auto t = torch::randint(4, 20, {6}, torch::kLong);
    std::vector<int64_t> ids(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + 6);
    examples.push_back({ids, ids});
  }
  return make_batch(examples, {0, 1, 2, 3, 4, 5});
}

std::vector<torch::Tensor> snapshot(Transformer& model) {
  std::vector<torch::Tensor> out;
  for (const auto& p : model->parameters()) out.push_back(p.detach().clone());
  return out;
}

bool same_parameters(Transformer& model, const std::vector<torch::Tensor>& expected) {
  const auto params = model->parameters();
  for (size_t i = 0; i < params.size(); ++i)
    if (!torch::equal(params[i], expected[i])) return false;
  return true;
}

// The float16 loop of the trainer, on the CPU in fp32: the scale starts far too high, so the scaled
// gradients overflow fp32 itself (3·10^38 times a loss of order 1 is past fp32's 3.4·10^38 once
// backward multiplies it by anything above 1). Each overflow must leave the parameters and Adam
// untouched and halve the scale, until the scale fits; the first clean step must then be the step an
// unscaled run takes, bit for bit: the scale is a power of two by then, and scaling by a power of two
// commutes with every rounding (no value here is near fp32's overflow or underflow after unscaling).
TEST(LossScaler, DrivesTrainStepThroughInjectedOverflows) {
  const Batch batch = fixed_batch();
  torch::manual_seed(1);
  Transformer model(tiny_model(), 20, 20);
  torch::manual_seed(1);
  Transformer unscaled(tiny_model(), 20, 20);
  FusedAdam adam(model->parameters()), adam_unscaled(unscaled->parameters());

  LossScalerOptions o;
  o.init_scale = std::ldexp(1.0, 127);  // 2^127 ≈ 1.7·10^38
  o.growth_interval = 2;
  LossScaler scaler(o);
  const auto initial = snapshot(model);
  int64_t overflows = 0;
  StepResult r;
  for (int attempt = 0; attempt < 200; ++attempt) {
    r = train_step(model, adam, {batch}, {0.1, 0.0, 1e-3, Precision::Fp32, scaler.scale()});
    if (!r.overflow) break;
    ++overflows;
    EXPECT_FALSE(r.finite);
    EXPECT_TRUE(adam.state().empty()) << "Adam stepped on an overflowed gradient";
    EXPECT_TRUE(same_parameters(model, initial)) << "an overflowed step changed the parameters";
    scaler.update(true);
  }
  ASSERT_TRUE(r.finite) << "the scale never came down to a finite gradient";
  EXPECT_GT(overflows, 0) << "the injected scale did not overflow";
  EXPECT_EQ(scaler.skipped_steps(), overflows);
  EXPECT_EQ(scaler.scale(), std::ldexp(1.0, 127 - static_cast<int>(overflows)));
  scaler.update(false);

  const StepResult plain = train_step(unscaled, adam_unscaled, {batch}, {0.1, 0.0, 1e-3});
  EXPECT_EQ(r.grad_norm, plain.grad_norm);  // the reported norm is the unscaled one
  EXPECT_EQ(r.loss_sum, plain.loss_sum);
  EXPECT_TRUE(same_parameters(model, snapshot(unscaled))) << "the loss scale leaked into the update";

  // Two clean steps grow the scale back towards the overflow, which then backs it off again.
  const double fitted = scaler.scale();
  r = train_step(model, adam, {batch}, {0.1, 0.0, 1e-3, Precision::Fp32, scaler.scale()});
  scaler.update(r.overflow);
  EXPECT_EQ(scaler.scale(), r.overflow ? fitted / 2 : fitted * 2);
}

// A non-finite loss is not an overflow: no scale can fix it, so it goes to the trainer's divergence
// guard rather than to the scaler.
TEST(LossScaler, ANonFiniteLossIsNotAnOverflow) {
  const Batch batch = fixed_batch();
  Transformer model(tiny_model(), 20, 20);
  FusedAdam adam(model->parameters());
  {
    torch::NoGradGuard no_grad;
    model->named_parameters()["tgt_embed.weight"].fill_(std::numeric_limits<float>::quiet_NaN());
  }
  const StepResult r = train_step(model, adam, {batch}, {0.1, 0.0, 1e-3, Precision::Fp32, 1024.0});
  EXPECT_FALSE(r.finite);
  EXPECT_FALSE(r.overflow);
}

}  // namespace
}  // namespace qkv
