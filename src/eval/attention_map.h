// Attention pictures (Vaswani et al. 2017, Figures 3-5): the attention probabilities of every head
// for one sentence, recorded from a trained checkpoint while it re-reads its own translation.
//
// The sentence is translated with the checkpoint's search (beam 4, α 0.6 for the paper's configs);
// then one teacher-forced forward pass over (sentence, translation) records, per layer, the encoder
// self-attention [H, S, S], the decoder self-attention [H, T, T] and the cross-attention [H, T, S]
// (TransformerImpl::set_record_attention). S counts the source tokens and </s>; T the decoder inputs
// <s> y_1 .. y_n, whose outputs are y_1 .. y_n </s>.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eval/translate.h"
#include "model/transformer.h"

namespace qkv {

struct AttentionPicture {
  std::string sentence;
  std::string translation;                  // detokenized
  std::vector<std::string> src_tokens;      // S: the source's pieces, then </s>
  std::vector<std::string> tgt_in_tokens;   // T: <s>, then the translation's pieces
  std::vector<std::string> tgt_out_tokens;  // T: the translation's pieces, then </s>
  TransformerImpl::AttentionMaps maps;      // per layer, [H, Tq, Tk] (the batch dimension removed)
};

// Translates `sentence` and records the attention of the pass over it. Throws ConfigError for an
// empty sentence and DataError for one longer than the model's positional table.
AttentionPicture collect_attention(InferenceModel& loaded, const std::string& sentence);

// The JSON that tools/plot_attention.py draws: one layer (1-based, of each stack), and either one
// head (1-based) or all of them. Throws ConfigError for a layer or head out of range.
nlohmann::json attention_json(const AttentionPicture& picture, int64_t layer, std::optional<int64_t> head);

}  // namespace qkv
