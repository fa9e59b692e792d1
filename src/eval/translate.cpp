// Translation and inference-model loading: see translate.h.
#include "eval/translate.h"

#include <algorithm>
#include <numeric>

#include <fmt/format.h>
#include <torch/torch.h>

#include "base/error.h"
#include "base/special_tokens.h"
#include "checkpoint/checkpoint.h"
#include "checkpoint/meta.h"
#include "data/dataset.h"
#include "ops/gemm.h"

namespace qkv {

SearchOptions search_options(const DecodeConfig& decode) {
  SearchOptions options;
  options.beam = decode.beam;
  options.alpha = decode.alpha;
  options.max_len_a = decode.max_len_a;
  options.max_len_b = decode.max_len_b;
  options.nbest = 1;
  return options;
}

torch::Tensor source_batch(const std::vector<std::vector<int64_t>>& sources, const std::vector<size_t>& rows,
                           const torch::Device& device) {
  size_t longest = 0;
  for (const size_t r : rows) longest = std::max(longest, sources[r].size());
  auto src = torch::full({static_cast<int64_t>(rows.size()), static_cast<int64_t>(longest) + 1}, kPadId,
                         torch::kLong);  // [B, S]
  auto a = src.accessor<int64_t, 2>();
  for (size_t b = 0; b < rows.size(); ++b) {
    const auto& ids = sources[rows[b]];
    for (size_t s = 0; s < ids.size(); ++s) a[static_cast<int64_t>(b)][static_cast<int64_t>(s)] = ids[s];
    a[static_cast<int64_t>(b)][static_cast<int64_t>(ids.size())] = kEosId;
  }
  return src.to(device);
}

std::vector<std::vector<int64_t>> translate_ids(Transformer& model,
                                                const std::vector<std::vector<int64_t>>& sources,
                                                const SearchOptions& options, int64_t batch_size) {
  const auto device = model->parameters().front().device();
  // Longest first: similar lengths share a batch, and the slowest batch shows up at once.
  std::vector<size_t> order(sources.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return sources[a].size() > sources[b].size(); });
  std::vector<std::vector<int64_t>> outputs(sources.size());
  const FixedWeightsScope fixed_weights;  // one set of transposed weight copies for every batch (ops/gemm.h)
  const auto step = static_cast<size_t>(std::max<int64_t>(batch_size, 1));
  for (size_t start = 0; start < order.size(); start += step) {
    const std::vector<size_t> rows(
        order.begin() + static_cast<std::ptrdiff_t>(start),
        order.begin() + static_cast<std::ptrdiff_t>(std::min(start + step, order.size())));
    auto src = source_batch(sources, rows, device);  // [B, S]
    if (options.beam <= 1) {
      auto best = greedy_search(model, src, options);
      for (size_t b = 0; b < rows.size(); ++b) outputs[rows[b]] = std::move(best[b]);
    } else {
      auto nbest = beam_search(model, src, options);
      for (size_t b = 0; b < rows.size(); ++b)
        if (!nbest[b].empty()) outputs[rows[b]] = std::move(nbest[b].front().tokens);
    }
  }
  return outputs;
}

std::vector<std::string> translate_lines(Transformer& model, const CodecPair& codecs,
                                         const std::vector<std::string>& lines, const SearchOptions& options,
                                         int64_t batch_size) {
  std::vector<std::vector<int64_t>> sources;
  sources.reserve(lines.size());
  for (const auto& line : lines) sources.push_back(codecs.src->encode(line));
  const auto outputs = translate_ids(model, sources, options, batch_size);
  std::vector<std::string> text;
  text.reserve(outputs.size());
  for (const auto& ids : outputs) text.push_back(codecs.tgt->decode(ids));
  return text;
}

torch::Device default_device() {
  return torch::cuda::is_available() ? torch::Device(torch::kCUDA) : torch::kCPU;
}

InferenceModel load_inference_model(const std::string& path, const torch::Device& device) {
  LoadedCheckpoint checkpoint(path, device);
  const CheckpointMeta meta = CheckpointMeta::read(checkpoint);
  InferenceModel result;
  result.path = path;
  result.config = meta.config;
  result.step = meta.step;
  result.codecs = meta.make_codecs(path);
  result.model = Transformer(result.config.model, result.codecs.src->size(), result.codecs.tgt->size());
  result.model->to(device);
  checkpoint.load_model(*result.model);
  result.model->eval();
  return result;
}

}  // namespace qkv
