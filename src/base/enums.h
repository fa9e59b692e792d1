// The spellings of the config enums (base/config.h): one list per enum, in declaration order, used by
// config files, logs, errors and the attention operator's schema string. to_string(E(i)) is
// enum_names<E>()[i].
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "base/config.h"

namespace qkv {

template <class E>
const std::vector<std::string>& enum_names();

#define QKV_ENUM_NAMES(E, ...)                                \
  template <>                                                 \
  inline const std::vector<std::string>& enum_names<E>() {    \
    static const std::vector<std::string> names{__VA_ARGS__}; \
    return names;                                             \
  }                                                           \
  inline std::string to_string(E v) {                         \
    return enum_names<E>().at(static_cast<std::size_t>(v));   \
  }

QKV_ENUM_NAMES(Positional, "sinusoidal", "learned")
QKV_ENUM_NAMES(NormOrder, "post", "pre")
QKV_ENUM_NAMES(AttentionKind, "standard", "memory_efficient", "reference")
QKV_ENUM_NAMES(InitScheme, "xavier_uniform", "normal")
QKV_ENUM_NAMES(LrSchedule, "noam", "inverse_sqrt", "constant")
QKV_ENUM_NAMES(DataTask, "toy", "copy", "reverse", "files")
QKV_ENUM_NAMES(Tokenizer, "word", "sentencepiece")
QKV_ENUM_NAMES(Precision, "fp32", "bf16", "fp16")
QKV_ENUM_NAMES(DistBackend, "auto", "gloo", "nccl")

#undef QKV_ENUM_NAMES

// Sets `out` to the enum spelled `text`; false (and `out` untouched) for any other text.
template <class E>
bool parse_enum(std::string_view text, E& out) {
  const auto& names = enum_names<E>();
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (names[i] == text) {
      out = static_cast<E>(i);
      return true;
    }
  }
  return false;
}

}  // namespace qkv
