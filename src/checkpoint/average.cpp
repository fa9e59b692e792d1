// Checkpoint averaging: see average.h. Sums are kept in double so that the mean of many float
// checkpoints does not depend on their order beyond the final rounding.
#include "checkpoint/average.h"

#include <map>

#include <fmt/format.h>
#include <torch/torch.h>

#include "base/error.h"
#include "checkpoint/checkpoint.h"
#include "config/load.h"

namespace qkv {
namespace {

// Parameters and floating-point buffers by name: the tensors that averaging touches.
std::map<std::string, torch::Tensor> averaged_tensors(torch::nn::Module& model) {
  std::map<std::string, torch::Tensor> tensors;
  for (const auto& p : model.named_parameters()) tensors[p.key()] = p.value();
  for (const auto& b : model.named_buffers())
    if (b.value().is_floating_point()) tensors[b.key()] = b.value();
  return tensors;
}

nlohmann::json model_section(const CheckpointMeta& meta) {
  return config_to_json(meta.config).at("model");
}

}  // namespace

CheckpointMeta average_checkpoints(torch::nn::Module& model, const std::vector<std::string>& paths) {
  if (paths.empty()) throw CheckpointError("average: no checkpoints given");
  torch::NoGradGuard no_grad;
  std::map<std::string, torch::Tensor> sums;
  CheckpointMeta meta;
  nlohmann::json first_model;
  for (size_t i = 0; i < paths.size(); ++i) {
    LoadedCheckpoint checkpoint(paths[i]);
    meta = CheckpointMeta::read(checkpoint);
    if (i == 0) first_model = model_section(meta);
    if (model_section(meta) != first_model)
      throw CheckpointError(fmt::format("average: {} has a different model section from {}: cannot average",
                                        paths[i], paths[0]));
    checkpoint.load_model(model);
    for (const auto& [name, tensor] : averaged_tensors(model)) {
      auto value = tensor.to(torch::kDouble);
      if (i == 0)
        sums[name] = value.clone();
      else
        sums[name].add_(value);
    }
  }
  const double n = static_cast<double>(paths.size());
  for (auto& [name, tensor] : averaged_tensors(model)) tensor.copy_(sums.at(name) / n);
  meta.averaged_from = paths;
  return meta;
}

}  // namespace qkv
