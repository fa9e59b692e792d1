// Strict config loading: JSON files (with "extends"), `--set` overrides, config_to_json, and the
// cross-key invariants. Every key comes from the one table in schema.cpp; an unknown key is
// refused with the nearest valid key, a wrong type or range with what the key allows.
#include "config/load.h"

#include <algorithm>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>

#include "base/error.h"
#include "config/json_input.h"
#include "config/schema.h"

namespace qkv {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

constexpr const char* kExtends = "extends";
// A config is a few KB; anything far larger is not one (and would only make errors slow).
constexpr uintmax_t kMaxConfigBytes = 1 << 20;
// Names longer than this are not typos of a key: no suggestion (edit distances cost length^2).
constexpr size_t kLongestSuggestible = 64;

// Optimal string alignment distance: Levenshtein plus adjacent transpositions, so that "warmpu" is
// one edit away from "warmup".
size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.size()][b.size()];
}

// The valid name nearest to an unknown one. A real key name in the wrong place ("train.beam", or
// "warmup" without its section) suggests where that key lives; otherwise the nearest by edit
// distance: among all key paths for "section.key", among sections and key names for a bare name.
std::string nearest_key(const std::string& unknown) {
  if (unknown.size() > kLongestSuggestible) return "";
  const size_t dot = unknown.find('.');
  const std::string bare = dot == std::string::npos ? unknown : unknown.substr(dot + 1);
  for (const auto& key : config_table()) {
    if (key.name == bare) return key.path();
  }
  std::string best;
  size_t best_distance = std::string::npos;
  auto consider = [&](const std::string& candidate, const std::string& compared_to) {
    const size_t distance = edit_distance(unknown, compared_to);
    if (distance < best_distance) best = candidate, best_distance = distance;
  };
  if (dot != std::string::npos) {
    for (const auto& key : config_table()) consider(key.path(), key.path());
  } else {
    for (const auto& section : config_sections()) consider(section, section);
    for (const auto& key : config_table()) consider(key.path(), key.name);
  }
  return best;
}

std::string unknown_key(const std::string& path) {
  const std::string nearest = nearest_key(path);
  if (nearest.empty()) return fmt::format("unknown key \"{}\"", excerpt(path));
  return fmt::format("unknown key \"{}\" (did you mean \"{}\"?)", excerpt(path), nearest);
}

void read_section(Config& config, const std::string& section, const json& j, const std::string& source) {
  if (!j.is_object()) {
    throw ConfigError(
        fmt::format("{}: \"{}\" must be an object of keys, got {}", source, section, excerpt_json(j)));
  }
  for (const auto& [name, value] : j.items()) {
    const std::string path = section + "." + name;
    const ConfigKey* key = find_config_key(path);
    if (!key) throw ConfigError(fmt::format("{}: {}", source, unknown_key(path)));
    if (!key->read(config, value)) {
      throw ConfigError(
          fmt::format("{}: {} must be {}, got {}", source, path, key->allowed, excerpt_json(value)));
    }
  }
}

// Reads the sections present in `j` over `config`; keys not in `j` keep their values.
void apply_json(Config& config, const json& j, const std::string& source, bool allow_extends) {
  if (!j.is_object()) {
    throw ConfigError(
        fmt::format("{}: a config must be a JSON object with sections \"model\", \"data\", "
                    "\"train\", \"decode\", got {}",
                    source, excerpt_json(j)));
  }
  const auto& sections = config_sections();
  for (const auto& [name, value] : j.items()) {
    if (name == kExtends && allow_extends) continue;
    if (name == kExtends) {
      throw ConfigError(fmt::format("{}: \"extends\" is only allowed in a config file", source));
    }
    if (std::find(sections.begin(), sections.end(), name) == sections.end()) {
      throw ConfigError(fmt::format("{}: {}", source, unknown_key(name)));
    }
    read_section(config, name, value, source);
  }
}

json read_json_file(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) throw ConfigError(fmt::format("{}: no such config file", path));
  if (fs::is_directory(path, ec))
    throw ConfigError(fmt::format("{}: is a directory, not a config file", path));
  const uintmax_t size = fs::file_size(path, ec);
  if (!ec && size > kMaxConfigBytes)
    throw ConfigError(fmt::format("{}: {} bytes is not a config file (a config is a few KB; the limit is {})",
                                  path, size, kMaxConfigBytes));
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError(fmt::format("{}: cannot open config file", path));
  std::string text(kMaxConfigBytes + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));  // a file that grew since file_size() is cut here
  if (text.size() > kMaxConfigBytes)
    throw ConfigError(fmt::format("{}: more than {} bytes is not a config file", path, kMaxConfigBytes));
  return parse_json_strictly(text, path);
}

// Loads `path` over its base (if it "extends" one). `chain` holds the files being loaded, to refuse
// a cycle.
Config load_layered(const std::string& path, std::vector<std::string>& chain) {
  const json j = read_json_file(path);
  Config config;
  if (j.is_object() && j.contains(kExtends)) {
    const json& base = j.at(kExtends);
    if (!base.is_string()) {
      throw ConfigError(
          fmt::format("{}: extends must be a string (a config file, relative to this one), got {}", path,
                      excerpt_json(base)));
    }
    const std::string base_path = (fs::path(path).parent_path() / base.get<std::string>()).lexically_normal();
    const std::string id = fs::weakly_canonical(base_path).string();
    if (std::find(chain.begin(), chain.end(), id) != chain.end()) {
      throw ConfigError(
          fmt::format("{}: extends \"{}\" makes a cycle", path, excerpt(base.get<std::string>())));
    }
    chain.push_back(id);
    config = load_layered(base_path, chain);
    chain.pop_back();
  }
  apply_json(config, j, path, /*allow_extends=*/true);
  return config;
}

}  // namespace

Config config_from_json(const json& j, const std::string& source) {
  Config config;
  apply_json(config, j, source, /*allow_extends=*/false);
  return config;
}

Config load_config(const std::string& path) {
  std::vector<std::string> chain{fs::weakly_canonical(path).string()};
  return load_layered(path, chain);
}

json config_to_json(const Config& config) {
  json j = json::object();
  for (const auto& section : config_sections()) j[section] = json::object();
  for (const auto& key : config_table()) j[key.section][key.name] = key.write(config);
  return j;
}

void apply_override(Config& config, const std::string& assignment) {
  const size_t eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0) {
    throw ConfigError(
        fmt::format("--set {}: expected KEY=VALUE, e.g. --set train.warmup=800", excerpt(assignment)));
  }
  const std::string path = assignment.substr(0, eq);
  const ConfigKey* key = find_config_key(path);
  if (!key) throw ConfigError(fmt::format("--set {}: {}", excerpt(assignment), unknown_key(path)));
  if (!key->read(config, key->from_text(assignment.substr(eq + 1)))) {
    throw ConfigError(fmt::format("--set {}: must be {}", excerpt(assignment), key->allowed));
  }
}

Config resolve_config(const std::string& path, const std::vector<std::string>& overrides) {
  Config config = load_config(path);
  for (const auto& assignment : overrides) apply_override(config, assignment);
  validate(config, overrides.empty() ? path : path + " with --set overrides");
  return config;
}

std::vector<std::string> config_keys() {
  std::vector<std::string> paths;
  for (const auto& key : config_table()) paths.push_back(key.path());
  return paths;
}

}  // namespace qkv
