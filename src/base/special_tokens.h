// The four special tokens every vocabulary starts with, at fixed ids.
#pragma once

#include <cstdint>

namespace qkv {

constexpr int64_t kPadId = 0;  // "<pad>": fills batches; never predicted, never attended to
constexpr int64_t kBosId = 1;  // "<s>":   starts every decoder input (outputs shifted right)
constexpr int64_t kEosId = 2;  // "</s>":  ends every target
constexpr int64_t kUnkId = 3;  // "<unk>": any token not in the vocabulary

constexpr const char* kPadToken = "<pad>";
constexpr const char* kBosToken = "<s>";
constexpr const char* kEosToken = "</s>";
constexpr const char* kUnkToken = "<unk>";

}  // namespace qkv
