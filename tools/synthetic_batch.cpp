// The training benchmarks' fixed batch: see synthetic_batch.h.
#include "synthetic_batch.h"

#include <torch/torch.h>

namespace qkv::cli {

Batch synthetic_batch(int64_t batch, int64_t src_len, int64_t tgt_len, int64_t vocab) {
  auto src = torch::randint(4, vocab, {batch, src_len}, torch::kLong);  // [B, S-1]
  auto tgt = torch::randint(4, vocab, {batch, tgt_len}, torch::kLong);  // [B, T-1]
  std::vector<Example> examples;
  std::vector<int64_t> rows;
  for (int64_t b = 0; b < batch; ++b) {
    examples.push_back(
        {std::vector<int64_t>(src[b].data_ptr<int64_t>(), src[b].data_ptr<int64_t>() + src_len),
         std::vector<int64_t>(tgt[b].data_ptr<int64_t>(), tgt[b].data_ptr<int64_t>() + tgt_len)});
    rows.push_back(b);
  }
  return make_batch(examples, rows);
}

}  // namespace qkv::cli
