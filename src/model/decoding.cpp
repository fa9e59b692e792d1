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

namespace {

// <pad> and <s> never come next.
torch::Tensor rule_out_specials(torch::Tensor x) {
  const double inf = std::numeric_limits<double>::infinity();
  x.select(1, kPadId).fill_(-inf);
  x.select(1, kBosId).fill_(-inf);
  return x;
}

}  // namespace

torch::Tensor Stepper::log_probs(const torch::Tensor& history) {
  return rule_out_specials(torch::log_softmax(logits(history), -1));  // [N, V]
}

torch::Tensor Stepper::scores(const torch::Tensor& history) {
  return rule_out_specials(logits(history));  // [N, V]
}

torch::Tensor Stepper::logits(const torch::Tensor& history) {
  const auto device = src_.device();
  torch::Tensor logits;  // [N, V]
  if (incremental_) {
    auto newest = history.select(1, history.size(1) - 1).to(device);  // [N]
    logits = model_->decode_step(newest, memory_, src_, state_);      // [N, V]
    memory_ = torch::Tensor();  // the cross-attention caches now hold its keys and values
  } else {
    // The whole prefix through the decoder stack; only the newest position is projected, as the
    // cached path does, so that the two differ in the stack's work alone. The G rows of a source
    // share its memory row here too (MultiheadAttention::forward_cross).
    auto y = model_->decoder->forward(model_->tgt_embed->forward(history.to(device)), memory_,
                                      src_.eq(kPadId));          // [N, t + 1, C]
    logits = model_->project(y.select(1, history.size(1) - 1));  // [N, V]
  }
  return logits;
}

void Stepper::select(const torch::Tensor& rows, const torch::Tensor& sources) {
  state_.reorder(rows);
  // The sources come in increasing order, so as many as before means all of them, unmoved: the
  // cross-attention caches stay as they are.
  if (sources.size(0) == src_.size(0)) return;
  if (memory_.defined()) memory_ = memory_.index_select(0, sources);  // [B', S, C]
  src_ = src_.index_select(0, sources);                               // [B', S]
  state_.select_sources(sources);
}

void apply_length_rules_(torch::Tensor& lp, int64_t t, const torch::Tensor& limits, int64_t min_len) {
  // Columns and the rows at their limit only: a mask over the whole [N, V] would cost passes over
  // every log-probability at every step.
  const double inf = std::numeric_limits<double>::infinity();
  auto at_limit = limits.le(t);     // [N]
  auto eos = lp.select(1, kEosId);  // [N], a view
  // Before min_len </s> is ruled out, except at the limit, where it alone remains (with its own
  // log-probability).
  if (t < min_len) eos.masked_fill_(at_limit.logical_not(), -inf);
  if (!at_limit.any().item<bool>()) return;
  auto rows = at_limit.nonzero().squeeze(1);  // [R] rows at their limit
  auto kept = eos.index_select(0, rows);      // [R]
  lp.index_fill_(0, rows, -inf);
  eos.index_copy_(0, rows, kept);
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
    auto scores = stepper.scores(history);  // [N, V] logits: their argmax is the log-probabilities'
    decoding::apply_length_rules_(scores, t, limits, options.min_len);
    auto next = scores.argmax(1).cpu();  // [N]
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
      stepper.select(rows_device, rows_device);  // one row per source
      limits = limits.index_select(0, rows_device);
      history = history.index_select(0, rows);
      next = next.index_select(0, rows);
    }
    history = torch::cat({history, next.unsqueeze(1)}, 1);  // [N, t + 2]
  }
  return outputs;
}

}  // namespace qkv
