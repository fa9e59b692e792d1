// JSON from outside (config files, the record inside a checkpoint) read with the limits that
// nlohmann's parser lacks, and quoted back in errors at a bounded length.
//
// nlohmann::json::parse accepts what a hostile or broken file can hold: nesting of any depth (a
// 100,000-deep array overflows the stack when it is later printed), the same key twice (the last
// silently wins), and anything after a NUL byte (its lexer takes NUL for the end of the text). Here:
//   - nesting deeper than kMaxJsonDepth is an error (a config needs 3 levels, a checkpoint record 4);
//   - a key repeated in one object is an error naming the key's path;
//   - a NUL byte anywhere is an error (a binary file, or garbage after the JSON);
//   - a number too large for a double (1e400) is an error naming the key it was read for.
// Errors are ConfigError("SOURCE: ...") in one line.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace qkv {

constexpr int kMaxJsonDepth = 32;

nlohmann::json parse_json_strictly(std::string_view text, const std::string& source);

// A value or text as it may appear in a one-line message: whole when short, otherwise its first
// bytes and its size: "\"aaaaaaaa…\" (10485762 bytes)". `value` must come from parse_json_strictly
// or from code (its depth bounds the recursion of dump()).
std::string excerpt_json(const nlohmann::json& value, size_t max_bytes = 64);
std::string excerpt(std::string_view text, size_t max_bytes = 64);

}  // namespace qkv
