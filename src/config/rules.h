// Value rules for config keys: for each value type, which JSON values a key accepts, how the allowed
// values are described in errors ("an integer >= 1", "a number in [0, 1)"), and how the text of a
// `--set key=value` override becomes a JSON value. The key table (schema.cpp) pairs each key
// with one of these rules; nothing outside src/config/ needs this header.
#pragma once

#include <array>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/load.h"

namespace qkv::config_rules {

using nlohmann::json;

// Integers in [lo, hi]. JSON floats are accepted when they hold an integral value (800.0).
struct IntRule {
  int64_t lo = std::numeric_limits<int64_t>::min();
  int64_t hi = std::numeric_limits<int64_t>::max();

  std::string describe() const;
  bool decode(const json& j, int64_t& out) const;
  json encode(int64_t v) const { return v; }
  json from_text(const std::string& text) const;
};

// Real numbers between lo and hi; each bound is open or closed.
struct RealRule {
  double lo = -std::numeric_limits<double>::infinity();
  double hi = std::numeric_limits<double>::infinity();
  bool lo_open = false;
  bool hi_open = false;

  std::string describe() const;
  bool contains(double v) const;
  bool decode(const json& j, double& out) const;
  json encode(double v) const { return v; }
  json from_text(const std::string& text) const;
};

struct BoolRule {
  std::string describe() const { return "true or false"; }
  bool decode(const json& j, bool& out) const;
  json encode(bool v) const { return v; }
  json from_text(const std::string& text) const;
};

struct StringRule {
  std::string describe() const { return "a string"; }
  bool decode(const json& j, std::string& out) const;
  json encode(const std::string& v) const { return v; }
  json from_text(const std::string& text) const { return text; }
};

// One of the spellings in enum_names<E>() (base/enums.h).
template <class E>
struct EnumRule {
  std::string describe() const { return describe_choices(enum_names<E>()); }
  bool decode(const json& j, E& out) const { return j.is_string() && parse_enum(j.get<std::string>(), out); }
  json encode(E v) const { return to_string(v); }
  json from_text(const std::string& text) const { return text; }
};

// A list of two reals, each allowed by `each` (Adam's betas). On the command line either JSON
// ("[0.9,0.98]") or a bare comma-separated pair ("0.9,0.98").
struct PairRule {
  RealRule each;

  std::string describe() const;
  bool decode(const json& j, std::array<double, 2>& out) const;
  json encode(const std::array<double, 2>& v) const { return json::array({v[0], v[1]}); }
  json from_text(const std::string& text) const;
};

// Shorthands for the table.
inline IntRule any_int() {
  return {};
}
inline IntRule int_at_least(int64_t lo) {
  return {lo};
}
inline RealRule positive() {
  return {0.0, std::numeric_limits<double>::infinity(), true, false};
}
inline RealRule non_negative() {
  return {0.0, std::numeric_limits<double>::infinity(), false, false};
}
inline RealRule fraction() {
  return {0.0, 1.0, false, true};
}  // [0, 1): dropout, smoothing, betas

}  // namespace qkv::config_rules
