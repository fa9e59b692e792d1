// The checks of a checkpoint's archive: its zip directory, its class declarations and its pickles
// (see archive_check.h).
#include "checkpoint/archive_check.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <regex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <caffe2/serialize/inline_container.h>
#include <caffe2/serialize/read_adapter_interface.h>
#include <fmt/format.h>

#include "checkpoint/pickle_check.h"
#include "config/json_input.h"

namespace qkv {
namespace {

// libtorch's zip reader over bytes already in memory (no copy).
class MemoryReader : public caffe2::serialize::ReadAdapterInterface {
 public:
  MemoryReader(const char* data, size_t size) : data_(data), size_(size) {}
  size_t size() const override { return size_; }
  size_t read(uint64_t pos, void* buf, size_t n, const char* /*what*/) const override {
    if (pos >= size_) return 0;
    n = std::min<size_t>(n, size_ - static_cast<size_t>(pos));
    std::memcpy(buf, data_ + pos, n);
    return n;
  }

 private:
  const char* data_;
  size_t size_;
};

// The line shapes of archive_check.h. Lines are short (a name and a type), so a longer one is
// refused before a regular expression sees it (libstdc++'s matcher recurses per character).
constexpr size_t kMaxLine = 512;

const std::regex& accepted_line() {
  static const std::string simple = "(?:Tensor|int|float|bool|str)";
  static const std::string type = "(?:" + simple + "|__torch__(?:\\.[A-Za-z_][A-Za-z0-9_]*)+|Tuple\\[" +
                                  simple + "(?:, " + simple + ")*\\]|List\\[" + simple + "\\]|Optional\\[" +
                                  simple + "\\])";
  static const std::string names = "\\[(?:\"[^\"\\\\]*\", )*\\]";
  static const std::regex line(
      "class Module\\(Module\\):|"
      "  __parameters__ = " +
      names +
      "|"
      "  __buffers__ = " +
      names +
      "|"
      "  __annotations__ = \\[\\]|"
      "  __annotations__\\[\"[^\"\\\\]*\"\\] = " +
      type +
      "|"
      "  [A-Za-z_][A-Za-z0-9_/]* : " +
      type + "|");
  return line;
}

bool is_code_record(const std::string& name) {
  const std::string_view n(name);
  return n.rfind("code/", 0) == 0 && n.size() > 3 && n.substr(n.size() - 3) == ".py";
}

// Throws if the class declarations `text` (record `name`) have another shape than OutputArchive's.
void check_declarations(const std::string& name, std::string_view text) {
  size_t line_number = 0;
  bool first = true;
  while (!text.empty()) {
    const size_t end = std::min(text.find('\n'), text.size());
    const std::string_view line = text.substr(0, end);
    text.remove_prefix(std::min(end + 1, text.size()));
    ++line_number;
    if (first && line != "class Module(Module):")
      throw std::runtime_error(fmt::format("{}: does not start with a module class", name));
    first = false;
    if (line.size() > kMaxLine || !std::regex_match(line.begin(), line.end(), accepted_line()))
      throw std::runtime_error(
          fmt::format("{} line {}: not a plain attribute declaration: {}", name, line_number, excerpt(line)));
  }
}

// ---- the zip directory --------------------------------------------------------------------------------

uint64_t read_le(const char* data, size_t size, uint64_t at, int n) {
  if (at > size || static_cast<uint64_t>(n) > size - at)
    throw std::runtime_error(fmt::format("zip directory: a field at byte {} lies past the end", at));
  uint64_t value = 0;
  for (int i = n - 1; i >= 0; --i) value = value << 8 | static_cast<unsigned char>(data[at + i]);
  return value;
}

// The zip records' sizes by name, the archive's top folder left out as libtorch's reader does
// ("archive/data/0" is "data/0"). libtorch's zip reader (miniz) allocates a record's uncompressed size as
// its directory entry claims it, and checks the claim only for records stored uncompressed with 32-bit
// sizes. torch's writer stores every record so, except class declarations that deflate well: a deflated
// record may claim at most kMaxDeflatedRecord bytes, a stored one no more than the archive holds, and
// anything else is refused. The walk follows miniz's: the end-of-directory record found from the end, its
// zip64 form where a locator precedes it.
constexpr uint64_t kMaxDeflatedRecord = uint64_t{1} << 20;  // qkv's largest declaration is a few KiB

std::map<std::string, uint64_t> stored_record_sizes(const char* data, size_t size) {
  constexpr uint32_t kEnd = 0x06054b50, kZip64Locator = 0x07064b50, kZip64End = 0x06064b50,
                     kEntry = 0x02014b50;
  constexpr size_t kEndSize = 22, kMaxComment = 0xffff;
  auto u16 = [&](uint64_t at) { return read_le(data, size, at, 2); };
  auto u32 = [&](uint64_t at) { return read_le(data, size, at, 4); };
  auto u64 = [&](uint64_t at) { return read_le(data, size, at, 8); };
  if (size < kEndSize) throw std::runtime_error("not a zip archive: too short");
  size_t end = size - kEndSize;
  const size_t lowest = end > kMaxComment ? end - kMaxComment : 0;
  while (u32(end) != kEnd) {
    if (end == lowest) throw std::runtime_error("not a zip archive: no end-of-directory record");
    --end;
  }
  uint64_t entries = u16(end + 10), directory = u32(end + 16);
  if (end >= 20 && u32(end - 20) == kZip64Locator) {
    const uint64_t at = u64(end - 20 + 8);
    if (u32(at) != kZip64End) throw std::runtime_error("zip directory: a zip64 locator without its record");
    entries = u64(at + 32);
    directory = u64(at + 48);
  }
  std::map<std::string, uint64_t> sizes;
  std::string top;
  uint64_t at = directory;
  for (uint64_t i = 0; i < entries; ++i) {
    if (u32(at) != kEntry) throw std::runtime_error(fmt::format("zip directory: entry {} is malformed", i));
    const uint64_t method = u16(at + 10), packed = u32(at + 20), unpacked = u32(at + 24);
    const uint64_t name_length = u16(at + 28), extra = u16(at + 30), comment = u16(at + 32);
    if (at + 46 > size || name_length > size - (at + 46))
      throw std::runtime_error(fmt::format("zip directory: entry {} is cut short", i));
    const std::string name(data + at + 46, name_length);
    const bool stored = method == 0 && packed == unpacked && unpacked <= size;
    const bool deflated = method == 8 && packed != 0xffffffff && unpacked <= kMaxDeflatedRecord;
    if (!stored && !deflated)
      throw std::runtime_error(fmt::format(
          "zip record {} is neither stored within the archive nor a small deflated one (method {}, {} bytes)",
          excerpt(name), method, unpacked));
    const size_t slash = name.find('/');
    if (slash == std::string::npos)
      throw std::runtime_error(fmt::format("zip record {} is in no folder", excerpt(name)));
    if (top.empty()) top = name.substr(0, slash + 1);
    if (name.compare(0, top.size(), top) != 0)
      throw std::runtime_error(fmt::format("zip record {} is outside the archive's folder", excerpt(name)));
    if (!sizes.emplace(name.substr(top.size()), unpacked).second)
      throw std::runtime_error(fmt::format("zip record {} appears twice", excerpt(name)));
    at += 46 + name_length + extra + comment;
  }
  return sizes;
}

bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

void check_archive(const char* data, size_t size) {
  const std::map<std::string, uint64_t> sizes = stored_record_sizes(data, size);
  caffe2::serialize::PyTorchStreamReader reader(std::make_shared<MemoryReader>(data, size));
  const std::vector<std::string> names = reader.getAllRecords();
  if (names.size() != sizes.size())
    throw std::runtime_error("zip directory: libtorch's reader sees other records");
  const RecordSize record_size = [&](const std::string& name) -> std::optional<uint64_t> {
    const auto it = sizes.find(name);
    return it == sizes.end() ? std::nullopt : std::optional<uint64_t>(it->second);
  };
  for (const auto& name : names) {
    if (sizes.count(name) == 0)
      throw std::runtime_error("zip directory: libtorch's reader sees other records");
    const bool code = is_code_record(name), pickle = ends_with(name, ".pkl") || ends_with(name, ".debug_pkl");
    if (!code && !pickle) continue;
    auto [bytes, length] = reader.getRecord(name);
    const std::string_view text(static_cast<const char*>(bytes.get()), length);
    if (code)
      check_declarations(name, text);
    else
      check_pickle(name, text, name.substr(0, name.rfind('.')), record_size);
  }
}

}  // namespace qkv
