// Fuzz target: LineReader (data/text_clean.h), the one reader of every text file qkv reads.
//
// Input: one byte choosing the line limit (16 << (b % 8) bytes, so that the limit is hit), then the
// file's bytes, read through a memory stream.
// Expected: lines that are valid UTF-8 without control characters, NUL, tabs or line breaks, with no
// leading, trailing or doubled spaces, no longer than the limit; or a DataError of one line.
#include <cstdint>
#include <cstdio>
#include <string>

#include "base/error.h"
#include "data/text_clean.h"
#include "data/utf8.h"
#include "fuzz_support.h"

namespace {

void check_clean(const std::string& line, int64_t limit) {
  if (static_cast<int64_t>(line.size()) > limit) std::abort();
  if (qkv::utf8::find_invalid(line) != qkv::utf8::kValid) std::abort();
  for (size_t i = 0; i < line.size(); ++i) {
    const auto c = static_cast<unsigned char>(line[i]);
    if (c < 0x20 || c == 0x7f) std::abort();
    if (c == ' ' && (i == 0 || i + 1 == line.size() || line[i + 1] == ' ')) std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  qkv::TextPolicy policy;
  policy.max_line_bytes = int64_t{16} << (data[0] % 8);
  std::string bytes(reinterpret_cast<const char*>(data + 1), size - 1);
  // fmemopen of an empty buffer fails: an empty file is a stream at its end.
  std::FILE* stream = bytes.empty() ? std::tmpfile() : ::fmemopen(bytes.data(), bytes.size(), "rb");
  if (stream == nullptr) std::abort();
  try {
    qkv::LineReader reader(stream, "input.txt", policy);
    int64_t lines = 0;
    for (std::string line; reader.next(line);) {
      check_clean(line, policy.max_line_bytes);
      if (reader.line_number() != ++lines) std::abort();
    }
  } catch (const qkv::DataError& e) {
    qkv::fuzz::require_one_line(e.what(), qkv::fuzz::as_text(data, size));
  }
  std::fclose(stream);
  return 0;
}
