// Robust line reading and cleaning for parallel text; the policy is stated in text_clean.h.
#include "data/text_clean.h"

#include <cerrno>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>

#include "base/error.h"
#include "data/utf8.h"

namespace qkv {
namespace {

constexpr size_t kChunkBytes = size_t{1} << 20;

// What one character does to a cleaned line.
enum class CharClass { Keep, Space, Remove };

// Classifies a code point (see the list in text_clean.h): Python's whitespace, then the controls
// Moses removes (C0, DEL, C1) and stray byte-order marks.
CharClass classify(char32_t c) {
  if (utf8::is_python_space(c)) return CharClass::Space;
  if (c < 0x20 || (c >= 0x7f && c < 0xa0) || c == 0xfeff) return CharClass::Remove;
  return CharClass::Keep;
}

}  // namespace

std::string TextStats::summary() const {
  std::string out =
      fmt::format("{} lines, {} blank, longest {} bytes", lines, blank_lines, longest_line_bytes);
  if (crlf_endings > 0) out += fmt::format(", {} CRLF endings", crlf_endings);
  if (cr_endings > 0) out += fmt::format(", {} CR endings", cr_endings);
  if (controls_removed > 0) out += fmt::format(", {} control characters removed", controls_removed);
  if (bom) out += ", byte-order mark dropped";
  return out;
}

std::string clean_line(std::string_view raw, const std::string& path, int64_t line_number, TextStats& stats) {
  if (const size_t nul = raw.find('\0'); nul != std::string_view::npos) {
    throw DataError(fmt::format("{}:{}: NUL byte at byte {}; this does not look like a text file", path,
                                line_number, nul + 1));
  }
  if (const size_t bad = utf8::find_invalid(raw); bad != utf8::kValid) {
    throw DataError(
        fmt::format("{}:{}: invalid UTF-8 at byte {} (0x{:02x}); convert the file to UTF-8, e.g. with "
                    "`iconv -f latin1 -t utf-8`",
                    path, line_number, bad + 1, static_cast<unsigned char>(raw[bad])));
  }
  std::string out;
  out.reserve(raw.size());
  bool pending_space = false;
  for (size_t pos = 0; pos < raw.size();) {
    const auto byte = static_cast<unsigned char>(raw[pos]);
    if (byte > 0x20 && byte < 0x7f) {  // printable ASCII, the common case: no decoding needed
      if (pending_space) out += ' ';
      pending_space = false;
      out += static_cast<char>(byte);
      ++pos;
      continue;
    }
    const size_t start = pos;
    switch (classify(utf8::next_code_point(raw, pos))) {
      case CharClass::Space:
        pending_space = !out.empty();
        break;
      case CharClass::Remove:
        ++stats.controls_removed;
        break;
      case CharClass::Keep:
        if (pending_space) out += ' ';
        pending_space = false;
        out.append(raw.data() + start, pos - start);
        break;
    }
  }
  return out;
}

LineReader::LineReader(std::string path, TextPolicy policy)
    : path_(std::move(path)), policy_(policy), buffer_(kChunkBytes) {
  std::error_code ec;
  if (std::filesystem::is_directory(path_, ec))
    throw DataError(fmt::format("{}: is a directory, not a text file", path_));
  file_ = std::fopen(path_.c_str(), "rb");
  if (file_ == nullptr) {
    throw DataError(fmt::format("{}: cannot open ({})", path_, std::strerror(errno)));
  }
}

LineReader::LineReader(std::FILE* stream, std::string name, TextPolicy policy)
    : path_(std::move(name)), policy_(policy), file_(stream), owns_file_(false), buffer_(kChunkBytes) {}

LineReader::~LineReader() {
  if (file_ != nullptr && owns_file_) std::fclose(file_);
}

bool LineReader::fill() {
  if (eof_) return false;
  begin_ = 0;
  end_ = std::fread(buffer_.data(), 1, buffer_.size(), file_);
  if (end_ < buffer_.size()) {
    if (std::ferror(file_)) throw DataError(fmt::format("error reading {}: {}", path_, std::strerror(errno)));
    eof_ = true;
  }
  if (first_) {
    first_ = false;
    if (end_ >= 3 && std::memcmp(buffer_.data(), "\xef\xbb\xbf", 3) == 0) {
      begin_ = 3;
      stats_.bom = true;
    }
  }
  return end_ > begin_;
}

bool LineReader::next(std::string& line) {
  raw_.clear();
  bool started = false;  // some byte or terminator of this line has been consumed
  while (true) {
    if (begin_ == end_ && !fill()) {
      if (!started) return false;
      break;  // the last line has no terminator
    }
    started = true;
    const char* start = buffer_.data() + begin_;
    const size_t available = end_ - begin_;
    size_t i = 0;
    while (i < available && start[i] != '\n' && start[i] != '\r') ++i;
    raw_.append(start, i);
    begin_ += i;
    if (static_cast<int64_t>(raw_.size()) > policy_.max_line_bytes) {
      throw DataError(fmt::format(
          "{}:{}: line longer than {} bytes; expected one sentence per line (is this a text corpus?)", path_,
          stats_.lines + 1, policy_.max_line_bytes));
    }
    if (i == available) continue;
    const char terminator = buffer_[begin_++];
    if (terminator == '\r') {
      if (begin_ == end_) fill();
      if (begin_ < end_ && buffer_[begin_] == '\n') {
        ++begin_;
        ++stats_.crlf_endings;
      } else {
        ++stats_.cr_endings;
      }
    }
    break;
  }
  ++stats_.lines;
  line = clean_line(raw_, path_, stats_.lines, stats_);
  if (line.empty()) ++stats_.blank_lines;
  stats_.longest_line_bytes = std::max<int64_t>(stats_.longest_line_bytes, raw_.size());
  return true;
}

ParallelReader::ParallelReader(const std::string& src_path, const std::string& tgt_path, TextPolicy policy)
    : src_(src_path, policy), tgt_(tgt_path, policy) {}

bool ParallelReader::next(std::string& src, std::string& tgt) {
  const bool has_src = src_.next(src);
  const bool has_tgt = tgt_.next(tgt);
  if (has_src != has_tgt) {
    const LineReader& longer = has_src ? src_ : tgt_;
    const LineReader& shorter = has_src ? tgt_ : src_;
    throw DataError(fmt::format(
        "{} ends after {} lines but {} has a line {}; parallel files must have the same number of lines",
        shorter.path(), shorter.line_number(), longer.path(), longer.line_number()));
  }
  return has_src;
}

}  // namespace qkv
