// Translation with a trained model: source lines -> ids -> beam (or greedy) search in batches of
// similar length -> detokenized best hypotheses, in input order. Also loads a model for inference from
// a checkpoint alone (its resolved config and vocabulary travel inside it).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "config/load.h"
#include "data/codec.h"
#include "model/decoding.h"
#include "model/transformer.h"

namespace qkv {

SearchOptions search_options(const DecodeConfig& decode);

// Best hypothesis per source (ids without <s>/</s>), in input order. Sources are decoded in groups of
// `batch_size` sentences of similar length; beam 1 runs greedy search.
std::vector<std::vector<int64_t>> translate_ids(Transformer& model,
                                                const std::vector<std::vector<int64_t>>& sources,
                                                const SearchOptions& options, int64_t batch_size);

// Lines in, detokenized lines out.
std::vector<std::string> translate_lines(Transformer& model, const CodecPair& codecs,
                                         const std::vector<std::string>& lines, const SearchOptions& options,
                                         int64_t batch_size);

// A padded source batch: each row its ids then </s>, then <pad>: [B, S].
torch::Tensor source_batch(const std::vector<std::vector<int64_t>>& sources, const std::vector<size_t>& rows,
                           const torch::Device& device);

struct InferenceModel {
  std::string path;
  Config config;
  CodecPair codecs;
  Transformer model{nullptr};
  int64_t step = 0;
};

// Builds the model its checkpoint describes and loads its parameters (evaluation mode). Throws
// CheckpointError.
InferenceModel load_inference_model(const std::string& path, const torch::Device& device);

// CUDA when available, else the CPU.
torch::Device default_device();

}  // namespace qkv
