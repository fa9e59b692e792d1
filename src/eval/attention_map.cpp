// Attention pictures: see attention_map.h.
#include "eval/attention_map.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include "base/error.h"
#include "base/special_tokens.h"

namespace qkv {
namespace {

std::vector<std::string> pieces(const TextCodec& codec, const std::vector<int64_t>& ids) {
  std::vector<std::string> out;
  for (int64_t id : ids) out.push_back(codec.piece(id));
  return out;
}

// [1, H, Tq, Tk] -> rows of the chosen heads: heads × Tq × Tk nested lists.
nlohmann::json heads_json(const torch::Tensor& map, const std::vector<int64_t>& heads) {
  const torch::Tensor probs = map.squeeze(0).to(torch::kCPU, torch::kDouble);  // [H, Tq, Tk]
  nlohmann::json out = nlohmann::json::array();
  for (int64_t h : heads) {
    nlohmann::json grid = nlohmann::json::array();
    for (int64_t q = 0; q < probs.size(1); ++q) {
      std::vector<double> row(static_cast<size_t>(probs.size(2)));
      for (int64_t k = 0; k < probs.size(2); ++k)
        row[static_cast<size_t>(k)] = probs[h - 1][q][k].item<double>();
      grid.push_back(row);
    }
    out.push_back(grid);
  }
  return out;
}

}  // namespace

AttentionPicture collect_attention(InferenceModel& loaded, const std::string& sentence) {
  Transformer& model = loaded.model;
  const TextCodec& src_codec = *loaded.codecs.src;
  const TextCodec& tgt_codec = *loaded.codecs.tgt;
  const std::vector<int64_t> src_ids = src_codec.encode(sentence);
  if (src_ids.empty()) throw ConfigError("--sentence: the sentence is empty");
  const int64_t max_len = loaded.config.model.max_len;
  if (static_cast<int64_t>(src_ids.size()) + 1 > max_len) {
    throw DataError(fmt::format("--sentence: {} tokens, more than the model's positional table holds ({})",
                                src_ids.size(), max_len - 1));
  }
  torch::NoGradGuard no_grad;
  model->eval();
  const auto device = model->parameters().front().device();
  const auto hyp = translate_ids(model, {src_ids}, search_options(loaded.config.decode), 1).front();

  AttentionPicture picture;
  picture.sentence = sentence;
  picture.translation = tgt_codec.decode(hyp);
  picture.src_tokens = pieces(src_codec, src_ids);
  picture.src_tokens.push_back(src_codec.piece(kEosId));
  std::vector<int64_t> tgt_in = {kBosId};
  tgt_in.insert(tgt_in.end(), hyp.begin(), hyp.end());
  picture.tgt_in_tokens = pieces(tgt_codec, tgt_in);
  picture.tgt_out_tokens = pieces(tgt_codec, hyp);
  picture.tgt_out_tokens.push_back(tgt_codec.piece(kEosId));

  const torch::Tensor src = source_batch({src_ids}, {0}, device);                         // [1, S]
  const torch::Tensor tgt = torch::tensor(tgt_in, torch::kLong).unsqueeze(0).to(device);  // [1, T]
  model->set_record_attention(true);
  model->forward(src, tgt);  // [1, T, V], kept only for the probabilities it records
  picture.maps = model->attention_maps();
  model->set_record_attention(false);
  return picture;
}

nlohmann::json attention_json(const AttentionPicture& picture, int64_t layer, std::optional<int64_t> head) {
  const auto encoder_layers = static_cast<int64_t>(picture.maps.encoder_self.size());
  const auto decoder_layers = static_cast<int64_t>(picture.maps.decoder_self.size());
  const int64_t depth = std::min(encoder_layers, decoder_layers);
  if (layer < 1 || layer > depth) {
    throw ConfigError(fmt::format("--layer {}: the model has {} encoder and {} decoder layers (1..{})", layer,
                                  encoder_layers, decoder_layers, depth));
  }
  const auto& encoder = picture.maps.encoder_self[static_cast<size_t>(layer - 1)];  // [1, H, S, S]
  const int64_t heads = encoder.size(1);
  if (head && (*head < 1 || *head > heads))
    throw ConfigError(fmt::format("--head {}: the model has {} heads (1..{})", *head, heads, heads));
  std::vector<int64_t> chosen;
  for (int64_t h = 1; h <= heads; ++h) {
    if (!head || *head == h) chosen.push_back(h);
  }
  const size_t i = static_cast<size_t>(layer - 1);
  return {{"sentence", picture.sentence},
          {"translation", picture.translation},
          {"layer", layer},
          {"layers", depth},
          {"heads", chosen},
          {"src_tokens", picture.src_tokens},
          {"tgt_in_tokens", picture.tgt_in_tokens},
          {"tgt_out_tokens", picture.tgt_out_tokens},
          {"encoder_self", heads_json(encoder, chosen)},
          {"decoder_self", heads_json(picture.maps.decoder_self[i], chosen)},
          {"decoder_cross", heads_json(picture.maps.decoder_cross[i], chosen)}};
}

}  // namespace qkv
