// Value rules for config keys (see config_rules.h) and the spellings of the config enums.
#include "train/config_rules.h"

#include <cmath>
#include <cstdlib>

#include <fmt/format.h>

#include "error.h"

namespace qkv {

// ---- enum spellings: declared once here, used by loading, to_json, errors and to_string ----------

template <>
const std::vector<std::string>& enum_names<Positional>() {
  static const std::vector<std::string> names{"sinusoidal", "learned"};
  return names;
}
template <>
const std::vector<std::string>& enum_names<NormOrder>() {
  static const std::vector<std::string> names{"post", "pre"};
  return names;
}
template <>
const std::vector<std::string>& enum_names<AttentionKind>() {
  static const std::vector<std::string> names{"standard", "memory_efficient", "reference"};
  return names;
}
template <>
const std::vector<std::string>& enum_names<InitScheme>() {
  static const std::vector<std::string> names{"xavier_uniform", "normal"};
  return names;
}
template <>
const std::vector<std::string>& enum_names<LrSchedule>() {
  static const std::vector<std::string> names{"noam", "inverse_sqrt", "constant"};
  return names;
}
template <>
const std::vector<std::string>& enum_names<DataTask>() {
  static const std::vector<std::string> names{"toy", "copy", "reverse", "files"};
  return names;
}
template <>
const std::vector<std::string>& enum_names<Tokenizer>() {
  static const std::vector<std::string> names{"word", "sentencepiece"};
  return names;
}

namespace {

// `one of "a", "b", "c"`
template <class E>
std::string describe_enum() {
  std::string out = "one of ";
  const auto& names = enum_names<E>();
  for (size_t i = 0; i < names.size(); ++i) out += fmt::format("{}\"{}\"", i ? ", " : "", names[i]);
  return out;
}

template <class E>
bool find_enum(const std::string& text, E& out) {
  const auto& names = enum_names<E>();
  for (size_t i = 0; i < names.size(); ++i) {
    if (names[i] == text) {
      out = static_cast<E>(i);
      return true;
    }
  }
  return false;
}

template <class E>
std::string enum_to_string(E v) {
  return enum_names<E>().at(static_cast<size_t>(v));
}

}  // namespace

template <class E>
E enum_from_string(const std::string& text, const std::string& what) {
  E out{};
  if (!find_enum(text, out)) {
    throw ConfigError(fmt::format("{} must be {}, got \"{}\"", what, describe_enum<E>(), text));
  }
  return out;
}

std::string to_string(Positional v) {
  return enum_to_string(v);
}
std::string to_string(NormOrder v) {
  return enum_to_string(v);
}
std::string to_string(AttentionKind v) {
  return enum_to_string(v);
}
std::string to_string(InitScheme v) {
  return enum_to_string(v);
}
std::string to_string(LrSchedule v) {
  return enum_to_string(v);
}
std::string to_string(DataTask v) {
  return enum_to_string(v);
}
std::string to_string(Tokenizer v) {
  return enum_to_string(v);
}

template Positional enum_from_string<Positional>(const std::string&, const std::string&);
template NormOrder enum_from_string<NormOrder>(const std::string&, const std::string&);
template AttentionKind enum_from_string<AttentionKind>(const std::string&, const std::string&);
template InitScheme enum_from_string<InitScheme>(const std::string&, const std::string&);
template LrSchedule enum_from_string<LrSchedule>(const std::string&, const std::string&);
template DataTask enum_from_string<DataTask>(const std::string&, const std::string&);
template Tokenizer enum_from_string<Tokenizer>(const std::string&, const std::string&);

namespace config_rules {
namespace {

// Command-line text as JSON: "800" -> 800, "1e-9" -> 1e-9, "true" -> true; anything that is not a
// JSON value stays a string, so that the error can quote it ("got \"abc\"").
json parse_or_string(const std::string& text) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  return j.is_discarded() ? json(text) : j;
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

template <class E>
std::string EnumRule<E>::describe() const {
  return describe_enum<E>();
}

template <class E>
bool EnumRule<E>::decode(const json& j, E& out) const {
  return j.is_string() && find_enum(j.get<std::string>(), out);
}

template struct EnumRule<Positional>;
template struct EnumRule<NormOrder>;
template struct EnumRule<AttentionKind>;
template struct EnumRule<InitScheme>;
template struct EnumRule<LrSchedule>;
template struct EnumRule<DataTask>;
template struct EnumRule<Tokenizer>;

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
