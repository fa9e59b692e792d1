// Validation and evaluation: see evaluate.h.
#include "eval/evaluate.h"

#include <chrono>

#include <fmt/format.h>
#include <torch/torch.h>

#include "base/special_tokens.h"
#include "data/batching.h"
#include "eval/translate.h"
#include "train/loss.h"
#include "train/metrics.h"

namespace qkv {

double EvalResult::ppl() const {
  return perplexity(nll);
}

nlohmann::json EvalResult::to_json() const {
  nlohmann::json j = {
      {"split", split}, {"nll", nll}, {"ppl", ppl()}, {"tokens", tokens}, {"seconds", seconds}};
  if (bleu) {
    j["bleu"] = bleu->score;
    j["bleu_sentences"] = bleu_sentences;
  }
  return j;
}

std::string EvalResult::summary() const {
  std::string text = fmt::format("[eval] {}: nll {:.4f} | ppl {:.3f}", split, nll, ppl());
  if (bleu) text += fmt::format(" | {} ({} sentences)", bleu->format(), bleu_sentences);
  return text + fmt::format(" | {}", format_duration(seconds));
}

EvalResult evaluate_nll(Transformer& model, const Split& split, int64_t max_tokens) {
  torch::NoGradGuard no_grad;
  model->eval();
  const auto device = model->parameters().front().device();
  EvalResult result;
  result.split = split.name;
  double nll_sum = 0.0;
  for (const auto& rows : eval_batches(split.examples, max_tokens)) {
    const Batch batch = make_batch(split.examples, rows).to(device);
    auto logits = model->forward(batch.src, batch.tgt_in);  // [B, T, V]
    auto loss = label_smoothed_cross_entropy(logits, batch.tgt_out, 0.0, kPadId);
    nll_sum += loss.nll.item<double>();
    result.tokens += loss.tokens;
  }
  result.nll = result.tokens > 0 ? nll_sum / static_cast<double>(result.tokens) : 0.0;
  return result;
}

void evaluate_bleu(Transformer& model, const Split& split, const CodecPair& codecs,
                   const DecodeConfig& decode, int64_t max_sentences, EvalResult& result) {
  const size_t n = max_sentences > 0 ? std::min(split.examples.size(), static_cast<size_t>(max_sentences))
                                     : split.examples.size();
  std::vector<std::vector<int64_t>> sources;
  sources.reserve(n);
  for (size_t i = 0; i < n; ++i) sources.push_back(split.examples[i].src);
  const auto outputs = translate_ids(model, sources, search_options(decode), decode.batch_size);
  result.hypotheses.clear();
  for (const auto& ids : outputs) result.hypotheses.push_back(codecs.tgt->decode(ids));
  const std::vector<std::string> refs(split.ref_text.begin(),
                                      split.ref_text.begin() + static_cast<std::ptrdiff_t>(n));
  result.bleu = corpus_bleu(result.hypotheses, refs);
  result.bleu_sentences = static_cast<int64_t>(n);
}

EvalResult evaluate_split(Transformer& model, const Split& split, const CodecPair& codecs,
                          const Config& config, int64_t bleu_max_sentences) {
  const auto start = std::chrono::steady_clock::now();
  EvalResult result = evaluate_nll(model, split, config.train.max_tokens);
  evaluate_bleu(model, split, codecs, config.decode, bleu_max_sentences, result);
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace qkv
