// UTF-8 helpers for reading text: validation (as strict as Python's decoder), splitting a line into
// tokens, and the Unicode whitespace rules of Python's str.split(), which sacreBLEU relies on.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace qkv::utf8 {

constexpr size_t kValid = std::string_view::npos;

// Byte offset of the first malformed sequence (truncated, overlong, surrogate, above U+10FFFF,
// stray continuation byte), or kValid when the whole text is well-formed UTF-8.
size_t find_invalid(std::string_view text);
inline bool is_valid(std::string_view text) {
  return find_invalid(text) == kValid;
}

// Decodes the code point starting at text[pos] and advances pos past it; a malformed byte reads as
// U+FFFD and advances by one.
char32_t next_code_point(std::string_view text, size_t& pos);

// Whitespace as Python's str.isspace() sees it (ASCII blanks, U+001C..U+001F, U+0085, U+00A0,
// U+1680, U+2000..U+200A, U+2028, U+2029, U+202F, U+205F, U+3000).
bool is_python_space(char32_t c);

// Python's str.split() with no argument: runs of whitespace separate tokens, no empty tokens.
std::vector<std::string> split_python(std::string_view text);

// Python's str.rstrip() with no argument.
std::string_view rstrip_python(std::string_view text);

// The corpus tokenization: tokens are separated by runs of ASCII blanks (space, tab, CR, VT, FF).
std::vector<std::string> split_words(std::string_view line);

}  // namespace qkv::utf8
