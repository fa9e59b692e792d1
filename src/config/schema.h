// The config key table: every key is declared once (schema.cpp) with its section, name,
// member and value rule, and this one table drives loading, `--set` overrides, config_to_json,
// per-key validation and the "did you mean" suggestions. Internal to src/config/.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/load.h"

namespace qkv {

struct ConfigKey {
  std::string section;  // "train"
  std::string name;     // "warmup"
  std::string allowed;  // what the key accepts, for errors: "an integer >= 0"
  // Stores the JSON value into the config; false (config untouched) for a wrong type or range.
  std::function<bool(Config&, const nlohmann::json&)> read;
  std::function<nlohmann::json(const Config&)> write;
  // The text of `--set path=text` as a JSON value of the key's type (or a string, to be refused).
  std::function<nlohmann::json(const std::string&)> from_text;

  std::string path() const { return section + "." + name; }
};

// All keys, grouped by section in the order model, data, train, decode.
const std::vector<ConfigKey>& config_table();

// The section names, in file order.
const std::vector<std::string>& config_sections();

// The key at "section.key", or nullptr.
const ConfigKey* find_config_key(const std::string& path);

}  // namespace qkv
