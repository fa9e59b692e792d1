// Value rules for config keys (see rules.h), and reading the config enums from text.
#include "config/rules.h"

#include <cmath>
#include <cstdlib>

#include <fmt/format.h>

#include "base/error.h"
#include "config/json_input.h"

namespace qkv {

// `one of "a", "b", "c"`
std::string describe_choices(const std::vector<std::string>& names) {
  std::string out = "one of ";
  for (size_t i = 0; i < names.size(); ++i) out += fmt::format("{}\"{}\"", i ? ", " : "", names[i]);
  return out;
}

void throw_bad_choice(const std::string& what, const std::vector<std::string>& names,
                      const std::string& text) {
  throw ConfigError(fmt::format("{} must be {}, got \"{}\"", what, describe_choices(names), excerpt(text)));
}

namespace config_rules {
namespace {

// Command-line text as JSON: "800" -> 800, "1e-9" -> 1e-9, "true" -> true; anything that is not a
// JSON value stays a string, so that the error can quote it ("got \"abc\"").
json parse_or_string(const std::string& text) {
  try {
    return parse_json_strictly(text, "--set");
  } catch (const ConfigError&) {
    return json(text);
  }
}

std::string format_real(double v) {
  return fmt::format("{}", v);
}

}  // namespace

// ---- integers --------------------------------------------------------------------------------------

std::string IntRule::describe() const {
  constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  if (lo == kMin && hi == kMax) return "an integer";
  if (hi == kMax) return fmt::format("an integer >= {}", lo);
  if (lo == kMin) return fmt::format("an integer <= {}", hi);
  return fmt::format("an integer in [{}, {}]", lo, hi);
}

bool IntRule::decode(const json& j, int64_t& out) const {
  int64_t v = 0;
  if (j.is_number_integer()) {
    if (j.is_number_unsigned() && j.get<uint64_t>() > static_cast<uint64_t>(hi)) return false;
    v = j.get<int64_t>();
  } else if (j.is_number_float()) {
    const double d = j.get<double>();
    // Integral floats only, and inside int64's range (2^63 is exactly representable as a double).
    if (std::floor(d) != d || std::fabs(d) >= 9.2233720368547758e18) return false;
    v = static_cast<int64_t>(d);
  } else {
    return false;
  }
  if (v < lo || v > hi) return false;
  out = v;
  return true;
}

json IntRule::from_text(const std::string& text) const {
  return parse_or_string(text);
}

// ---- reals -----------------------------------------------------------------------------------------

std::string RealRule::describe() const {
  const bool no_lo = std::isinf(lo), no_hi = std::isinf(hi);
  if (no_lo && no_hi) return "a number";
  if (no_hi) return fmt::format("a number {} {}", lo_open ? ">" : ">=", format_real(lo));
  if (no_lo) return fmt::format("a number {} {}", hi_open ? "<" : "<=", format_real(hi));
  return fmt::format("a number in {}{}, {}{}", lo_open ? "(" : "[", format_real(lo), format_real(hi),
                     hi_open ? ")" : "]");
}

bool RealRule::contains(double v) const {
  if (!std::isfinite(v)) return false;
  if (lo_open ? !(v > lo) : !(v >= lo)) return false;
  if (hi_open ? !(v < hi) : !(v <= hi)) return false;
  return true;
}

bool RealRule::decode(const json& j, double& out) const {
  if (!j.is_number()) return false;
  const double v = j.get<double>();
  if (!contains(v)) return false;
  out = v;
  return true;
}

json RealRule::from_text(const std::string& text) const {
  return parse_or_string(text);
}

// ---- booleans, strings, enums ----------------------------------------------------------------------

bool BoolRule::decode(const json& j, bool& out) const {
  if (!j.is_boolean()) return false;
  out = j.get<bool>();
  return true;
}

json BoolRule::from_text(const std::string& text) const {
  if (text == "true") return true;
  if (text == "false") return false;
  return text;
}

bool StringRule::decode(const json& j, std::string& out) const {
  if (!j.is_string()) return false;
  out = j.get<std::string>();
  return true;
}

// ---- pairs of reals --------------------------------------------------------------------------------

std::string PairRule::describe() const {
  const std::string each_text = each.describe();  // "a number in [0, 1)"
  return "a list of two numbers" + each_text.substr(std::string("a number").size());
}

bool PairRule::decode(const json& j, std::array<double, 2>& out) const {
  if (!j.is_array() || j.size() != 2) return false;
  std::array<double, 2> v{};
  for (size_t i = 0; i < 2; ++i) {
    if (!each.decode(j[i], v[i])) return false;
  }
  out = v;
  return true;
}

json PairRule::from_text(const std::string& text) const {
  const bool bracketed = !text.empty() && text.front() == '[';
  const json j = parse_or_string(bracketed ? text : "[" + text + "]");
  return j.is_array() ? j : json(text);
}

}  // namespace config_rules
}  // namespace qkv
