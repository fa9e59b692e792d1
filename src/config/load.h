// Config files: strict JSON loading of the typed config (base/config.h), `--set` overrides, and
// validation.
//
// A config file has four sections, `model`, `data`, `train` and `decode`, each mapped onto one struct
// of base/config.h. Loading rejects unknown keys (naming the nearest valid one), wrong types and
// out-of-range values; `validate()` checks the invariants that span several keys. Every key is
// documented in configs/README.md.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/config.h"
#include "base/enums.h"

namespace qkv {

// Loading. Every key is checked for its type and range as it is read (errors name `source` and the
// key); keys missing from the JSON, or whole missing sections, keep their defaults. A file may name a
// base file with a top-level "extends": "base.json" (relative to the file): the base is loaded first
// and this file's keys override it. Loading does not check cross-key invariants: call validate().
Config config_from_json(const nlohmann::json& j, const std::string& source = "<config>");
Config load_config(const std::string& path);
// The whole resolved config, every key present; config_from_json(config_to_json(c)) == c.
nlohmann::json config_to_json(const Config& config);

// Applies one `--set section.key=value` override; the value is parsed as the key's type.
void apply_override(Config& config, const std::string& assignment);

// Per-key ranges (for configs built in code) and cross-key invariants (e.g. heads divides d_model
// when d_k is unset). Throws ConfigError; `source` prefixes the message.
void validate(const Config& config, const std::string& source = "config");

// The checks that depend on the device the run uses (known only where the run is set up):
// train.precision "fp16" needs CUDA. Throws ConfigError; `source` prefixes the message.
void validate_device(const Config& config, bool cuda, const std::string& source = "config");

// What a subcommand calls: load_config(path), apply each override in order, validate.
Config resolve_config(const std::string& path, const std::vector<std::string>& overrides = {});

// Every key as "section.key", in declaration order.
std::vector<std::string> config_keys();

// `one of "a", "b", "c"`, for messages.
std::string describe_choices(const std::vector<std::string>& names);
// Throws ConfigError: `what` must be one of `names`, got `text`.
[[noreturn]] void throw_bad_choice(const std::string& what, const std::vector<std::string>& names,
                                   const std::string& text);

// The enum spelled `text`, or a ConfigError naming `what` and the allowed spellings.
template <class E>
E enum_from_string(const std::string& text, const std::string& what) {
  E out{};
  if (!parse_enum(text, out)) throw_bad_choice(what, enum_names<E>(), text);
  return out;
}

}  // namespace qkv
