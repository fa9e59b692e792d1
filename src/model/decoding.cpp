// Decoding (Vaswani et al. 2017, §6.1): the shared step machinery (decoding_steps.h) and greedy search.
// Beam search is in beam_search.cpp.
//
// Dimensions: B = batch (sentences), N = rows being decoded, S = source length, t = tokens produced so
// far, C = d_model, V = target vocabulary.
#include <cmath>
#include <iostream>
#include <limits>

#include <fmt/format.h>

#include "base/special_tokens.h"
#include "model/decoding_steps.h"

namespace qkv {

double length_penalty(int64_t length, double alpha) {
  return alpha == 0.0 ? 1.0 : std::pow((5.0 + static_cast<double>(length)) / 6.0, alpha);
}

namespace decoding {

PreparedSource prepare_source(const Transformer& model, const torch::Tensor& src,
                              const SearchOptions& options) {
  TORCH_CHECK(src.dim() == 2,
              fmt::format("decoding expects source ids [B, S], got {}", c10::str(src.sizes())));
  TORCH_CHECK(options.max_len_a >= 0 && options.max_len_b >= 0,
              fmt::format("decoding: max_len_a = {} and max_len_b = {} must not be negative",
                          options.max_len_a, options.max_len_b));
  const int64_t max_len = model->config().max_len;
  const auto device = model->tgt_embed->weight.device();
  PreparedSource prepared;
  prepared.src = src.to(device);
  if (src.size(1) > max_len) {
    auto cut = prepared.src.narrow(1, max_len, src.size(1) - max_len).ne(kPadId).any(1);  // [B]
    const int64_t n = cut.sum().item<int64_t>();
    if (n > 0) {
      std::cerr << fmt::format(
          "[decode] warning: {} source sentence(s) longer than model.max_len = {} tokens "
          "truncated to {} tokens\n",
          n, max_len, max_len);
    }
    prepared.src = prepared.src.narrow(1, 0, max_len);
  }
  auto lengths = prepared.src.ne(kPadId).sum(1).to(torch::kFloat64);  // [B]
  // Clamped before the conversion: a huge max_len_a (1e308) must not overflow int64.
  prepared.limits = (lengths * options.max_len_a + static_cast<double>(options.max_len_b))
                        .clamp_max(static_cast<double>(max_len - 1))
                        .floor()
                        .to(torch::kInt64);  // [B]
  return prepared;
}

Stepper::Stepper(Transformer& model, torch::Tensor memory, torch::Tensor src, bool incremental)
    : model_(model),
      memory_(std::move(memory)),
      src_(std::move(src)),
      incremental_(incremental),
      state_(model->start_state()) {}

torch::Tensor Stepper::log_probs(const torch::Tensor& history) {
  const auto device = src_.device();
  torch::Tensor logits;  // [N, V]
  if (incremental_) {
    auto newest = history.select(1, history.size(1) - 1).to(device);  // [N]
    logits = model_->decode_step(newest, memory_, src_, state_);      // [N, V]
    memory_ = torch::Tensor();  // the cross-attention caches now hold its keys and values
  } else {
    // The whole prefix through the decoder stack; only the newest position is projected, as the
    // cached path does, so that the two differ in the stack's work alone.
    auto y = model_->decoder->forward(model_->tgt_embed->forward(history.to(device)), memory_,
                                      src_.eq(kPadId));          // [N, t + 1, C]
    logits = model_->project(y.select(1, history.size(1) - 1));  // [N, V]
  }
  auto lp = torch::log_softmax(logits, -1);  // [N, V]
  const double inf = std::numeric_limits<double>::infinity();
  lp.select(1, kPadId).fill_(-inf);
  lp.select(1, kBosId).fill_(-inf);
  return lp;
}

void Stepper::select(const torch::Tensor& rows) {
  if (memory_.defined()) memory_ = memory_.index_select(0, rows);  // [N', S, C]
  src_ = src_.index_select(0, rows);                               // [N', S]
  state_.reorder(rows);
}

torch::Tensor apply_length_rules(const torch::Tensor& lp, int64_t t, const torch::Tensor& limits,
                                 int64_t min_len) {
  auto is_eos = torch::zeros({1, lp.size(1)}, lp.options().dtype(torch::kBool));  // [1, V]
  is_eos[0][kEosId] = true;
  auto at_limit = limits.le(t).unsqueeze(1);  // [N, 1]
  // At the limit only </s> remains (with its own log-probability, even before min_len); elsewhere
  // </s> is ruled out while t < min_len.
  auto ruled_out = at_limit.logical_and(is_eos.logical_not());  // [N, V]
  if (t < min_len) ruled_out = ruled_out.logical_or(at_limit.logical_not().logical_and(is_eos));
  return lp.masked_fill(ruled_out, -std::numeric_limits<double>::infinity());  // [N, V]
}

}  // namespace decoding

std::vector<std::vector<int64_t>> greedy_search(Transformer& model, const torch::Tensor& src_in,
                                                const SearchOptions& options) {
  decoding::EvalGuard guard(model);
  auto prepared = decoding::prepare_source(model, src_in, options);
  const int64_t batch = prepared.src.size(0);
  decoding::Stepper stepper(model, model->encode(prepared.src), prepared.src, options.incremental);
  auto limits = prepared.limits;                                  // [N]
  auto history = torch::full({batch, 1}, kBosId, torch::kInt64);  // [N, 1] on the CPU
  std::vector<int64_t> alive(batch);                              // sentence of each row
  for (int64_t b = 0; b < batch; ++b) alive[b] = b;
  std::vector<std::vector<int64_t>> outputs(batch);

  for (int64_t t = 0; !alive.empty(); ++t) {
    auto lp = decoding::apply_length_rules(stepper.log_probs(history), t, limits, options.min_len);  // [N, V]
    auto next = lp.argmax(1).cpu();                                                                  // [N]
    const auto* next_data = next.data_ptr<int64_t>();
    std::vector<int64_t> keep;  // rows still decoding
    for (int64_t i = 0; i < static_cast<int64_t>(alive.size()); ++i) {
      if (next_data[i] == kEosId) continue;
      outputs[alive[i]].push_back(next_data[i]);
      keep.push_back(i);
    }
    if (keep.size() < alive.size()) {
      if (keep.empty()) break;
      auto rows = torch::tensor(keep, torch::kInt64);  // [N'] on the CPU
      std::vector<int64_t> still;
      for (auto i : keep) still.push_back(alive[i]);
      alive.swap(still);
      auto rows_device = rows.to(limits.device());
      stepper.select(rows_device);
      limits = limits.index_select(0, rows_device);
      history = history.index_select(0, rows);
      next = next.index_select(0, rows);
    }
    history = torch::cat({history, next.unsqueeze(1)}, 1);  // [N, t + 2]
  }
  return outputs;
}

}  // namespace qkv
