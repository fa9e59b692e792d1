// Beam search (Vaswani et al. 2017, §6.1: beam 4, length penalty α = 0.6), batched over sentences on
// the incremental caches. The selection rule follows fairseq (see decoding.h): per sentence, the best
// 2·K of the K·V extensions are ranked; one ending in </s> among the first K finishes a hypothesis,
// scored log P(Y) / lp(|Y|); the best K others become the next beam.
//
// Dimensions: B = batch (sentences), N = sentences still decoding, K = beam, V = target vocabulary,
// t = tokens produced so far. Rows are sentence-major: row n·K + k is beam k of sentence n.
#include <algorithm>
#include <limits>

#include <fmt/format.h>

#include "base/special_tokens.h"
#include "model/decoding_steps.h"

namespace qkv {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// The next beams of the sentences still decoding, gathered on the CPU.
struct NextBeams {
  std::vector<int64_t> sentences;  // [N'] sentence of each kept group of K rows
  std::vector<int64_t> rows;       // [N'·K] row (in the current numbering) each new beam extends
  std::vector<int64_t> tokens;     // [N'·K] the token it appends
  std::vector<double> scores;      // [N'·K] its log-probability (-inf for an unused beam)
};

Hypothesis finish(const torch::Tensor& history_row, double log_prob, double alpha) {
  Hypothesis h;
  const auto* data = history_row.data_ptr<int64_t>();
  h.tokens.assign(data + 1, data + history_row.size(0));  // without <s>
  h.log_prob = log_prob;
  h.score = log_prob / length_penalty(static_cast<int64_t>(h.tokens.size()) + 1, alpha);
  return h;
}

// Sorts one step's candidates into finished hypotheses and next beams. top_scores, top_index [N, 2K]
// (CPU) are the best extensions of each sentence, index = k·V + token.
NextBeams select_beams(const torch::Tensor& top_scores, const torch::Tensor& top_index,
                       const torch::Tensor& history, const std::vector<int64_t>& alive, int64_t beam,
                       int64_t vocab, double alpha, std::vector<std::vector<Hypothesis>>& finished) {
  NextBeams next;
  auto scores = top_scores.accessor<double, 2>();
  auto index = top_index.accessor<int64_t, 2>();
  for (int64_t n = 0; n < static_cast<int64_t>(alive.size()); ++n) {
    auto& done = finished[alive[n]];
    const size_t first = next.rows.size();
    for (int64_t j = 0; j < top_scores.size(1) && scores[n][j] > -kInf; ++j) {
      const int64_t row = n * beam + index[n][j] / vocab;
      const int64_t token = index[n][j] % vocab;
      if (token == kEosId) {
        if (j < beam) done.push_back(finish(history[row], scores[n][j], alpha));
      } else if (static_cast<int64_t>(next.rows.size() - first) < beam) {
        next.rows.push_back(row);
        next.tokens.push_back(token);
        next.scores.push_back(scores[n][j]);
      }
    }
    const auto live = static_cast<int64_t>(next.rows.size() - first);
    if (static_cast<int64_t>(done.size()) >= beam || live == 0) {  // early stop: this sentence is done
      next.rows.resize(first);
      next.tokens.resize(first);
      next.scores.resize(first);
      continue;
    }
    for (int64_t k = live; k < beam; ++k) {  // fill an incomplete beam with dead rows
      next.rows.push_back(n * beam);
      next.tokens.push_back(kPadId);
      next.scores.push_back(-kInf);
    }
    next.sentences.push_back(alive[n]);
  }
  return next;
}

}  // namespace

std::vector<std::vector<Hypothesis>> beam_search(Transformer& model, const torch::Tensor& src_in,
                                                 const SearchOptions& options) {
  TORCH_CHECK(options.beam >= 1, fmt::format("beam_search: beam = {} must be at least 1", options.beam));
  TORCH_CHECK(
      options.nbest >= 1 && options.nbest <= options.beam,
      fmt::format("beam_search: nbest = {} must be between 1 and beam = {}", options.nbest, options.beam));
  decoding::EvalGuard guard(model);
  auto prepared = decoding::prepare_source(model, src_in, options);
  const int64_t batch = prepared.src.size(0);
  const int64_t beam = options.beam;
  const auto device = prepared.src.device();

  // Every sentence starts as K identical rows, of which only beam 0 is alive (the others score -inf).
  // The K rows of a sentence share its encoder output (the Stepper's G = K).
  auto expand = torch::arange(batch, torch::TensorOptions().dtype(torch::kInt64).device(device))
                    .repeat_interleave(beam);  // [B·K]
  decoding::Stepper stepper(model, model->encode(prepared.src), prepared.src, options.incremental);
  auto limits = prepared.limits.index_select(0, expand);                 // [N·K]
  auto history = torch::full({batch * beam, 1}, kBosId, torch::kInt64);  // [N·K, 1] on the CPU
  auto scores = torch::full({batch, beam}, -kInf, torch::kFloat64);      // [N, K]
  scores.select(1, 0).fill_(0.0);
  std::vector<int64_t> alive(batch);  // sentence of each group of K rows
  for (int64_t b = 0; b < batch; ++b) alive[b] = b;
  std::vector<std::vector<Hypothesis>> finished(batch);

  for (int64_t t = 0; !alive.empty(); ++t) {
    const auto n = static_cast<int64_t>(alive.size());
    auto lp = stepper.log_probs(history);  // [N·K, V]
    decoding::apply_length_rules_(lp, t, limits, options.min_len);
    const int64_t vocab = lp.size(1);
    // In place: lp is this step's own tensor, and one [N·K, V] pass fewer is a few percent of a step.
    auto candidates =
        lp.add_(scores.to(lp.options()).view({n * beam, 1})).view({n, beam * vocab});     // [N, K·V]
    auto [top_scores, top_index] = candidates.topk(std::min(2 * beam, beam * vocab), 1);  // [N, 2K]
    auto next = select_beams(top_scores.to(torch::kCPU, torch::kFloat64), top_index.cpu(), history, alive,
                             beam, vocab, options.alpha, finished);
    if (next.sentences.empty()) break;
    auto rows = torch::tensor(next.rows, torch::kInt64);  // [N'·K] on the CPU
    auto rows_device = rows.to(device);
    // The source of each kept group in the current numbering: its first row's group.
    auto sources = rows.view({-1, beam}).select(1, 0).div(beam, "floor");  // [N']
    stepper.select(rows_device, sources.to(device));
    limits = limits.index_select(0, rows_device);
    history =
        torch::cat({history.index_select(0, rows), torch::tensor(next.tokens, torch::kInt64).unsqueeze(1)},
                   1);                                                      // [N'·K, t + 2]
    scores = torch::tensor(next.scores, torch::kFloat64).view({-1, beam});  // [N', K]
    alive = std::move(next.sentences);
  }

  for (auto& list : finished) {
    std::stable_sort(list.begin(), list.end(),
                     [](const Hypothesis& a, const Hypothesis& b) { return a.score > b.score; });
    if (static_cast<int64_t>(list.size()) > options.nbest) list.resize(options.nbest);
  }
  return finished;
}

}  // namespace qkv
