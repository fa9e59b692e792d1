// Resource estimates and the checks that refuse configs this machine cannot hold: see resources.h.
#include "config/resources.h"

#include <cmath>
#include <functional>
#include <vector>

#include <fmt/format.h>

#include "base/error.h"
#include "base/parameter_count.h"
#include "base/special_tokens.h"
#include "config/load.h"
#include "config/schema.h"
#include "runtime/memory.h"

namespace qkv {
namespace {

using N = CheckedCount;
constexpr int64_t kSmallestVocab = kUnkId + 1;  // the special tokens alone
constexpr int64_t kFloat = 4;                   // bytes of a float32

// The integer keys that size a model, a batch or a search: the candidates for blame.
const std::vector<std::string>& sizing_keys() {
  static const std::vector<std::string> keys = {
      "model.d_model",    "model.d_ff",           "model.heads",          "model.d_k",
      "model.d_v",        "model.encoder_layers", "model.decoder_layers", "model.max_len",
      "train.max_tokens", "train.update_freq",    "decode.beam",          "decode.batch_size"};
  return keys;
}

N total_parameters(const Config& config, int64_t src_vocab, int64_t tgt_vocab) {
  const ParameterCount count = parameter_count_formula(config.model, src_vocab, tgt_vocab);
  if (count.overflowed) return N(-1);  // a negative operand marks an overflow (base/checked.h)
  return N(count.total());
}

// The key to blame for `measure` being too large. First among the keys the config changed from their
// defaults: the one whose default shrinks it most (with max_len and max_tokens both raised, either
// may be named, never the d_model they multiply). A config of defaults on a small machine: the key
// that, set to 1, shrinks it most. When nothing helps alone (several keys overflow on their own): the
// key furthest above its default.
std::string culprit(const Config& config, const std::function<N(const Config&)>& measure) {
  const Config defaults;
  const double now = measure(config).approx();
  auto shrink_most = [&](bool to_default) {
    std::string best;
    double best_after = now;
    for (const auto& path : sizing_keys()) {
      const ConfigKey* key = find_config_key(path);
      const nlohmann::json value = key->write(config), default_value = key->write(defaults);
      const nlohmann::json target = to_default ? default_value : nlohmann::json(1);
      if (value == target || (to_default && value.get<double>() < default_value.get<double>())) continue;
      Config changed = config;
      key->read(changed, target);
      const double after = measure(changed).approx();
      if (after < best_after) best = path, best_after = after;
    }
    return best;
  };
  if (std::string key = shrink_most(true); !key.empty()) return key;
  if (std::string key = shrink_most(false); !key.empty()) return key;
  std::string furthest;
  double furthest_ratio = 1.0;
  for (const auto& path : sizing_keys()) {
    const ConfigKey* key = find_config_key(path);
    const double ratio = key->write(config).get<double>() / std::max(1.0, key->write(defaults).get<double>());
    if (ratio > furthest_ratio) furthest = path, furthest_ratio = ratio;
  }
  return furthest;
}

std::string key_value(const Config& config, const std::string& path) {
  return fmt::format("{} = {}", path, find_config_key(path)->write(config).dump());
}

}  // namespace

std::string format_bytes(CheckedCount bytes) {
  if (bytes.overflowed()) return "more than 8 EiB";
  static const char* units[] = {"bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double v = static_cast<double>(bytes.value());
  size_t unit = 0;
  while (v >= 1024.0 && unit + 1 < std::size(units)) v /= 1024.0, ++unit;
  return unit == 0 ? fmt::format("{} bytes", bytes.value()) : fmt::format("{:.1f} {}", v, units[unit]);
}

ResourceEstimate estimate_resources(const Config& config, int64_t src_vocab, int64_t tgt_vocab) {
  const ModelConfig& m = config.model;
  const N p = total_parameters(config, src_vocab, tgt_vocab);
  const N c = m.d_model, v = tgt_vocab, n = config.train.max_tokens;
  const N layers = N(m.encoder_layers) + m.decoder_layers;
  const N positions = N(kFloat) * m.max_len * c;
  ResourceEstimate e;
  e.parameters = p;
  e.training_bytes = N(4 * kFloat) * p + positions + N(24) * config.train.update_freq * n +
                     N(kFloat) * n * (N(4) * c * layers + N(2) * v);
  const N rows = N(config.decode.batch_size) * config.decode.beam;
  e.decoding_bytes = N(kFloat) * p + positions + rows * (N(8) * v + N(4 * kFloat) * c * m.decoder_layers);
  return e;
}

void check_parameter_count(const Config& config, const std::string& source) {
  auto count = [](const Config& c) { return total_parameters(c, kSmallestVocab, kSmallestVocab); };
  if (!count(config).overflowed()) return;
  const std::string key = culprit(config, count);
  throw ConfigError(fmt::format("{}: {} makes the parameter count overflow 64 bits; lower it", source,
                                key.empty() ? "the model's size" : key_value(config, key)));
}

void check_fits_in_memory(const Config& config, int64_t src_vocab, int64_t tgt_vocab, bool training,
                          const std::string& source, uint64_t available_bytes) {
  const auto available = static_cast<double>(available_bytes);
  const ResourceEstimate e = estimate_resources(config, src_vocab, tgt_vocab);
  const bool training_fits = !training || e.training_bytes.approx() <= available;
  const bool decoding_fits = e.decoding_bytes.approx() <= available;
  if (training_fits && decoding_fits) return;
  const bool blame_training = !training_fits;
  const auto measure = [&](const Config& c) {
    const ResourceEstimate changed = estimate_resources(c, src_vocab, tgt_vocab);
    return blame_training ? changed.training_bytes : changed.decoding_bytes;
  };
  const std::string key = culprit(config, measure);
  const std::string what =
      blame_training ? "training" : "decoding (decode.batch_size x decode.beam hypotheses)";
  const std::string vocab = tgt_vocab > kSmallestVocab ? fmt::format("a vocabulary of {} tokens", tgt_vocab)
                                                       : "the vocabulary not counted yet";
  throw ConfigError(fmt::format(
      "{}: {}: {} needs at least {} of memory ({} parameters, {}), more than the {} available on this "
      "machine; lower {}",
      source, key.empty() ? vocab : key_value(config, key), what,
      format_bytes(blame_training ? e.training_bytes : e.decoding_bytes),
      e.parameters.overflowed() ? "more than 2^63" : fmt::format("{}", e.parameters.value()), vocab,
      format_bytes(N(static_cast<int64_t>(std::min<uint64_t>(available_bytes, INT64_MAX)))),
      key.empty() ? "the vocabulary size" : key));
}

void check_fits_in_memory(const Config& config, int64_t src_vocab, int64_t tgt_vocab, bool training,
                          const std::string& source) {
  check_fits_in_memory(config, src_vocab, tgt_vocab, training, source, available_memory_bytes());
}

}  // namespace qkv
