// The shape check of a checkpoint archive's class declarations: see archive_check.h.
#include "checkpoint/archive_check.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <regex>
#include <stdexcept>
#include <string>
#include <string_view>

#include <caffe2/serialize/inline_container.h>
#include <caffe2/serialize/read_adapter_interface.h>
#include <fmt/format.h>

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

}  // namespace

void check_archive_code(const char* data, size_t size) {
  caffe2::serialize::PyTorchStreamReader reader(std::make_shared<MemoryReader>(data, size));
  for (const auto& name : reader.getAllRecords()) {
    if (!is_code_record(name)) continue;
    auto [bytes, length] = reader.getRecord(name);
    check_declarations(name, std::string_view(static_cast<const char*>(bytes.get()), length));
  }
}

}  // namespace qkv
