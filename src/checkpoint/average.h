// Checkpoint averaging (Vaswani et al. 2017, §6.1): the base model is the element-wise mean of the
// parameters of the last 5 checkpoints, the big model of the last 20.
#pragma once

#include <string>
#include <vector>

#include <torch/nn/module.h>

#include "checkpoint/meta.h"

namespace qkv {

// Loads each checkpoint into `model` and leaves `model` holding the mean of their parameters and
// floating-point buffers. All checkpoints must hold the same architecture (their configs' model
// sections must agree). Returns the last checkpoint's record, with averaged_from listing `paths`.
// Throws CheckpointError.
CheckpointMeta average_checkpoints(torch::nn::Module& model, const std::vector<std::string>& paths);

}  // namespace qkv
