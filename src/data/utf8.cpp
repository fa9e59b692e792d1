// UTF-8 validation and whitespace splitting (see utf8.h). The validator follows the Unicode
// standard's table of well-formed byte sequences (Unicode 15, Table 3-7).
#include "data/utf8.h"

namespace qkv::utf8 {

namespace {

bool is_continuation(unsigned char b) {
  return (b & 0xC0) == 0x80;
}

// Length of the well-formed sequence starting at text[pos], or 0 when it is malformed.
size_t sequence_length(std::string_view text, size_t pos) {
  const auto at = [&](size_t i) { return static_cast<unsigned char>(text[pos + i]); };
  const unsigned char b0 = at(0);
  if (b0 < 0x80) return 1;
  size_t len = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    len = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    len = 3;
    if (b0 == 0xE0) lo = 0xA0;  // no overlong 3-byte forms
    if (b0 == 0xED) hi = 0x9F;  // no UTF-16 surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    len = 4;
    if (b0 == 0xF0) lo = 0x90;  // no overlong 4-byte forms
    if (b0 == 0xF4) hi = 0x8F;  // nothing above U+10FFFF
  } else {
    return 0;  // a continuation byte, an overlong 2-byte lead (C0, C1), or F5..FF
  }
  if (pos + len > text.size()) return 0;
  if (at(1) < lo || at(1) > hi) return 0;
  for (size_t i = 2; i < len; ++i) {
    if (!is_continuation(at(i))) return 0;
  }
  return len;
}

bool is_ascii_blank(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

}  // namespace

size_t find_invalid(std::string_view text) {
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t len = sequence_length(text, pos);
    if (len == 0) return pos;
    pos += len;
  }
  return kValid;
}

char32_t next_code_point(std::string_view text, size_t& pos) {
  const size_t len = sequence_length(text, pos);
  if (len == 0) {  // malformed: one byte stands for U+FFFD, so callers never read past the end
    ++pos;
    return 0xFFFD;
  }
  const auto b0 = static_cast<unsigned char>(text[pos]);
  char32_t c = len == 1 ? b0 : b0 & (0x7F >> len);  // a lead byte keeps 7 - len payload bits
  for (size_t i = 1; i < len; ++i) c = (c << 6) | (static_cast<unsigned char>(text[pos + i]) & 0x3F);
  pos += len;
  return c;
}

bool is_python_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

std::vector<std::string> split_python(std::string_view text) {
  std::vector<std::string> tokens;
  size_t pos = 0, start = 0;
  bool in_token = false;
  while (pos < text.size()) {
    const size_t here = pos;
    const bool space = is_python_space(next_code_point(text, pos));
    if (space && in_token) tokens.emplace_back(text.substr(start, here - start));
    if (!space && !in_token) start = here;
    in_token = !space;
  }
  if (in_token) tokens.emplace_back(text.substr(start));
  return tokens;
}

std::string_view rstrip_python(std::string_view text) {
  size_t end = 0, pos = 0;  // end: one past the last non-space code point
  while (pos < text.size()) {
    if (!is_python_space(next_code_point(text, pos))) end = pos;
  }
  return text.substr(0, end);
}

std::vector<std::string> split_words(std::string_view line) {
  std::vector<std::string> tokens;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && is_ascii_blank(line[i])) ++i;
    const size_t start = i;
    while (i < line.size() && !is_ascii_blank(line[i])) ++i;
    if (i > start) tokens.emplace_back(line.substr(start, i - start));
  }
  return tokens;
}

}  // namespace qkv::utf8
