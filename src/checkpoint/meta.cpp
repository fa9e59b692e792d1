// The checkpoint record (meta.h): to and from JSON, with the checks that make a crafted or newer
// record an error naming the file rather than a model built from nonsense.
#include "checkpoint/meta.h"

#include <fmt/format.h>

#include "base/error.h"
#include "checkpoint/checkpoint.h"
#include "config/load.h"
#include "data/codec.h"
#include "data/vocab.h"

namespace qkv {
namespace {

constexpr const char* kFormat = "qkv-checkpoint";

std::vector<std::string> codec_tokens(const TextCodec& codec) {
  std::vector<std::string> tokens;
  tokens.reserve(static_cast<size_t>(codec.size()));
  for (int64_t i = 0; i < codec.size(); ++i) tokens.push_back(codec.piece(i));
  return tokens;
}

}  // namespace

nlohmann::json CheckpointMeta::to_json() const {
  nlohmann::json best_json = nullptr;
  if (best) best_json = {{"step", best->step}, {"bleu", best->bleu}, {"nll", best->nll}};
  nlohmann::json j = {{"format", kFormat},
                      {"version", kVersion},
                      {"config", config_to_json(config)},
                      {"step", step},
                      {"data_position", {{"epoch", data_position.epoch}, {"index", data_position.index}}},
                      {"codecs", codecs},
                      {"best", best_json},
                      {"evals_without_improvement", evals_without_improvement},
                      {"elapsed_s", elapsed_s},
                      {"flops", flops}};
  if (!averaged_from.empty()) j["averaged_from"] = averaged_from;
  if (loss_scale)
    j["loss_scale"] = {{"scale", loss_scale->scale},
                       {"clean_steps", loss_scale->clean_steps},
                       {"skipped_steps", loss_scale->skipped_steps}};
  return j;
}

CheckpointMeta CheckpointMeta::from_json(const nlohmann::json& j, const std::string& path) {
  if (!j.is_object() || j.value("format", "") != kFormat)
    throw CheckpointError(
        fmt::format("{}: not a qkv checkpoint (its record has no \"format\": \"{}\")", path, kFormat));
  CheckpointMeta meta;
  try {
    const int64_t version = j.at("version").get<int64_t>();
    if (version > kVersion || version < 1)
      throw CheckpointError(fmt::format(
          "{}: checkpoint format version {} is not one this qkv reads (1 to {}); a newer qkv wrote it", path,
          version, kVersion));
    meta.config = config_from_json(j.at("config"), path + " (saved config)");
    validate(meta.config, path + " (saved config)");
    meta.step = j.at("step").get<int64_t>();
    meta.data_position = {j.at("data_position").at("epoch").get<int64_t>(),
                          j.at("data_position").at("index").get<int64_t>()};
    meta.codecs = j.at("codecs");
    if (!j.at("best").is_null())
      meta.best = BestScore{j["best"].at("step").get<int64_t>(), j["best"].at("bleu").get<double>(),
                            j["best"].at("nll").get<double>()};
    meta.evals_without_improvement = j.at("evals_without_improvement").get<int64_t>();
    meta.elapsed_s = j.at("elapsed_s").get<double>();
    meta.flops = j.at("flops").get<double>();
    if (j.contains("averaged_from")) meta.averaged_from = j["averaged_from"].get<std::vector<std::string>>();
    if (j.contains("loss_scale"))
      meta.loss_scale = LossScaleRecord{j["loss_scale"].at("scale").get<double>(),
                                        j["loss_scale"].at("clean_steps").get<int64_t>(),
                                        j["loss_scale"].at("skipped_steps").get<int64_t>()};
  } catch (const nlohmann::json::exception& e) {
    throw CheckpointError(fmt::format("{}: unusable checkpoint record ({})", path, e.what()));
  } catch (const ConfigError& e) {
    throw CheckpointError(e.what());  // already names the file
  }
  if (meta.step < 0 || meta.data_position.epoch < 0 || meta.data_position.index < 0)
    throw CheckpointError(fmt::format("{}: negative step or data position in the checkpoint record", path));
  if (meta.loss_scale && (!(meta.loss_scale->scale > 0) || meta.loss_scale->clean_steps < 0 ||
                          meta.loss_scale->skipped_steps < 0))
    throw CheckpointError(fmt::format("{}: invalid loss scale in the checkpoint record", path));
  return meta;
}

CheckpointMeta CheckpointMeta::read(const LoadedCheckpoint& checkpoint) {
  return from_json(checkpoint.meta_json(), checkpoint.path());
}

nlohmann::json CheckpointMeta::codecs_record(const DataConfig& data, const CodecPair& codecs) {
  if (data.tokenizer == Tokenizer::SentencePiece)
    return {{"kind", "sentencepiece"}, {"model", data.spm_model}, {"fingerprint", codecs.src->fingerprint()}};
  nlohmann::json record = {{"kind", "word"}, {"shared", codecs.src == codecs.tgt}};
  record["src"] = codec_tokens(*codecs.src);
  if (codecs.src != codecs.tgt) record["tgt"] = codec_tokens(*codecs.tgt);
  return record;
}

CodecPair CheckpointMeta::make_codecs(const std::string& path) const {
  const DataConfig& data = config.data;
  try {
    const std::string kind = codecs.at("kind").get<std::string>();
    if (kind == "sentencepiece") {
      auto made = make_sentencepiece_codecs(data);
      if (made.src->fingerprint() != codecs.at("fingerprint").get<uint64_t>())
        throw CheckpointError(fmt::format(
            "{}: the SentencePiece model {} differs from the one this checkpoint was trained with "
            "(fingerprint mismatch)",
            path, data.spm_model));
      return made;
    }
    if (kind != "word")
      throw CheckpointError(
          fmt::format("{}: unknown vocabulary kind \"{}\" (expected \"word\" or "
                      "\"sentencepiece\")",
                      path, kind));
    const std::string source = path + " (vocabulary)";
    auto src = Vocab::from_tokens(codecs.at("src").get<std::vector<std::string>>(), source);
    if (codecs.at("shared").get<bool>()) return make_word_codecs(std::move(src));
    return make_word_codecs(std::move(src),
                            Vocab::from_tokens(codecs.at("tgt").get<std::vector<std::string>>(), source));
  } catch (const nlohmann::json::exception& e) {
    throw CheckpointError(fmt::format("{}: the vocabulary record is unusable ({})", path, e.what()));
  } catch (const DataError& e) {
    throw CheckpointError(fmt::format("{}: the vocabulary is invalid ({})", path, e.what()));
  }
}

}  // namespace qkv
