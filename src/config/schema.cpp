// The config key table. To add a key: add the member (with its default) to its struct in base/config.h,
// add one `.add(...)` line below with the rule saying what it accepts, and document it in
// configs/README.md (test_config checks that every key is documented there).
#include "config/schema.h"

#include "config/rules.h"

namespace qkv {
namespace {

using namespace config_rules;

// Adds the keys of one section: `Section<TrainConfig>{"train", &Config::train, table}.add(...)`.
template <class S>
struct Section {
  const char* name;
  S Config::*part;
  std::vector<ConfigKey>& table;

  template <class T, class Rule>
  Section& add(const char* key, T S::*member, Rule rule) {
    S Config::*p = part;
    ConfigKey k;
    k.section = name;
    k.name = key;
    k.allowed = rule.describe();
    k.read = [p, member, rule](Config& c, const nlohmann::json& j) {
      T value{};
      if (!rule.decode(j, value)) return false;
      c.*p.*member = value;
      return true;
    };
    k.write = [p, member, rule](const Config& c) { return rule.encode(c.*p.*member); };
    k.from_text = [rule](const std::string& text) { return rule.from_text(text); };
    table.push_back(std::move(k));
    return *this;
  }
};

std::vector<ConfigKey> build_table() {
  std::vector<ConfigKey> t;
  Section<ModelConfig>{"model", &Config::model, t}
      .add("d_model", &ModelConfig::d_model, int_at_least(1))
      .add("d_ff", &ModelConfig::d_ff, int_at_least(1))
      .add("heads", &ModelConfig::heads, int_at_least(1))
      .add("d_k", &ModelConfig::d_k, int_at_least(0))
      .add("d_v", &ModelConfig::d_v, int_at_least(0))
      .add("encoder_layers", &ModelConfig::encoder_layers, int_at_least(1))
      .add("decoder_layers", &ModelConfig::decoder_layers, int_at_least(1))
      .add("dropout", &ModelConfig::dropout, fraction())
      .add("attention_dropout", &ModelConfig::attention_dropout, fraction())
      .add("relu_dropout", &ModelConfig::relu_dropout, fraction())
      .add("positional", &ModelConfig::positional, EnumRule<Positional>{})
      .add("norm", &ModelConfig::norm, EnumRule<NormOrder>{})
      .add("share_embeddings", &ModelConfig::share_embeddings, BoolRule{})
      .add("tie_output_projection", &ModelConfig::tie_output_projection, BoolRule{})
      .add("attention", &ModelConfig::attention, EnumRule<AttentionKind>{})
      .add("max_len", &ModelConfig::max_len, int_at_least(1))
      .add("init", &ModelConfig::init, EnumRule<InitScheme>{})
      .add("layer_norm_eps", &ModelConfig::layer_norm_eps, positive());
  Section<DataConfig>{"data", &Config::data, t}
      .add("task", &DataConfig::task, EnumRule<DataTask>{})
      .add("dir", &DataConfig::dir, StringRule{})
      .add("src_lang", &DataConfig::src_lang, StringRule{})
      .add("tgt_lang", &DataConfig::tgt_lang, StringRule{})
      .add("train_prefix", &DataConfig::train_prefix, StringRule{})
      .add("dev_prefix", &DataConfig::dev_prefix, StringRule{})
      .add("test_prefix", &DataConfig::test_prefix, StringRule{})
      .add("train_size", &DataConfig::train_size, int_at_least(1))
      .add("dev_size", &DataConfig::dev_size, int_at_least(1))
      .add("test_size", &DataConfig::test_size, int_at_least(1))
      .add("seed", &DataConfig::seed, int_at_least(0))
      .add("shared_vocab", &DataConfig::shared_vocab, BoolRule{})
      .add("min_freq", &DataConfig::min_freq, int_at_least(1))
      .add("max_len", &DataConfig::max_len, int_at_least(1))
      .add("tokenizer", &DataConfig::tokenizer, EnumRule<Tokenizer>{})
      .add("spm_model", &DataConfig::spm_model, StringRule{});
  Section<TrainConfig>{"train", &Config::train, t}
      .add("steps", &TrainConfig::steps, int_at_least(1))
      .add("max_tokens", &TrainConfig::max_tokens, int_at_least(1))
      .add("update_freq", &TrainConfig::update_freq, int_at_least(1))
      .add("label_smoothing", &TrainConfig::label_smoothing, fraction())
      .add("warmup", &TrainConfig::warmup, int_at_least(0))
      .add("lr_schedule", &TrainConfig::lr_schedule, EnumRule<LrSchedule>{})
      .add("lr", &TrainConfig::lr, positive())
      .add("adam_betas", &TrainConfig::adam_betas, PairRule{fraction()})
      .add("adam_eps", &TrainConfig::adam_eps, positive())
      .add("clip_norm", &TrainConfig::clip_norm, non_negative())
      .add("seed", &TrainConfig::seed, int_at_least(0))
      .add("eval_every", &TrainConfig::eval_every, int_at_least(1))
      .add("checkpoint_every", &TrainConfig::checkpoint_every, int_at_least(1))
      .add("keep_checkpoints", &TrainConfig::keep_checkpoints, int_at_least(0))
      .add("log_every", &TrainConfig::log_every, int_at_least(1))
      .add("patience", &TrainConfig::patience, int_at_least(0))
      .add("eval_bleu_max_sentences", &TrainConfig::eval_bleu_max_sentences, int_at_least(0))
      .add("precision", &TrainConfig::precision, EnumRule<Precision>{})
      .add("dist_backend", &TrainConfig::dist_backend, EnumRule<DistBackend>{})
      .add("dist_timeout_s", &TrainConfig::dist_timeout_s, int_at_least(1));
  Section<DecodeConfig>{"decode", &Config::decode, t}
      .add("beam", &DecodeConfig::beam, int_at_least(1))
      .add("alpha", &DecodeConfig::alpha, non_negative())
      .add("max_len_a", &DecodeConfig::max_len_a, non_negative())
      .add("max_len_b", &DecodeConfig::max_len_b, int_at_least(0))
      .add("nbest", &DecodeConfig::nbest, int_at_least(1))
      .add("batch_size", &DecodeConfig::batch_size, int_at_least(1));
  return t;
}

}  // namespace

const std::vector<ConfigKey>& config_table() {
  static const std::vector<ConfigKey> table = build_table();
  return table;
}

const std::vector<std::string>& config_sections() {
  static const std::vector<std::string> sections{"model", "data", "train", "decode"};
  return sections;
}

const ConfigKey* find_config_key(const std::string& path) {
  for (const auto& key : config_table()) {
    if (key.path() == path) return &key;
  }
  return nullptr;
}

}  // namespace qkv
