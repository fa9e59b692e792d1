// Strict JSON input and bounded excerpts: see json_input.h.
#include "config/json_input.h"

#include <set>
#include <vector>

#include <fmt/format.h>

#include "base/error.h"

namespace qkv {
namespace {

using nlohmann::json;

// Follows the parser's events to know where it is: the open objects and arrays, the keys each object
// has seen, and the key whose value is being read.
class JsonTracker {
 public:
  explicit JsonTracker(const std::string& source) : source_(source) {}

  bool on_event(json::parse_event_t event, const json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start:
        if (frames_.size() >= static_cast<size_t>(kMaxJsonDepth))
          throw ConfigError(fmt::format("{}: invalid JSON: nested deeper than {} levels{}", source_,
                                        kMaxJsonDepth, where()));
        frames_.push_back({event == json::parse_event_t::array_start, pending_, {}});
        pending_.clear();
        break;
      case json::parse_event_t::key: {
        pending_ = parsed.get<std::string>();
        if (!frames_.back().keys.insert(pending_).second)
          throw ConfigError(fmt::format("{}: invalid JSON: duplicate key {} (each key may appear once)",
                                        source_, excerpt(path())));
        break;
      }
      case json::parse_event_t::object_end:
      case json::parse_event_t::array_end:
        frames_.pop_back();
        pending_.clear();
        break;
      case json::parse_event_t::value:
        pending_.clear();
        break;
    }
    return true;  // keep every value
  }

  // "model.d_model": the keys from the top to the one being read ("[]" for an array's element).
  std::string path() const {
    std::string out;
    for (size_t i = 1; i < frames_.size(); ++i)
      out += frames_[i].name.empty() ? "[]" : (out.empty() ? "" : ".") + frames_[i].name;
    if (!pending_.empty()) out += (out.empty() ? "" : ".") + pending_;
    return out;
  }
  // " (at KEY)" when inside a key, for messages.
  std::string where() const {
    const std::string p = path();
    return p.empty() ? "" : fmt::format(" (at {})", excerpt(p));
  }

 private:
  struct Frame {
    bool array;
    std::string name;  // the key this object or array is the value of
    std::set<std::string> keys;
  };
  const std::string& source_;
  std::vector<Frame> frames_;
  std::string pending_;
};

// nlohmann's message without its "[json.exception.parse_error.101] " prefix.
std::string without_prefix(const std::string& what) {
  const size_t at = what.find("] ");
  return at == std::string::npos ? what : what.substr(at + 2);
}

bool utf8_continuation(char c) {
  return (static_cast<unsigned char>(c) & 0xC0) == 0x80;
}

}  // namespace

json parse_json_strictly(std::string_view text, const std::string& source) {
  const size_t nul = text.find('\0');
  if (nul != std::string_view::npos)
    throw ConfigError(fmt::format(
        "{}: invalid JSON: a NUL byte at byte {} (a binary file, or something after the JSON)", source, nul));
  JsonTracker tracker(source);
  try {
    return json::parse(text.begin(), text.end(), [&](int, json::parse_event_t event, json& parsed) {
      return tracker.on_event(event, parsed);
    });
  } catch (const json::out_of_range& e) {  // "number overflow parsing '1e400'"
    throw ConfigError(fmt::format("{}: invalid JSON{}: {} (numbers must fit a double)", source,
                                  tracker.where(), excerpt(without_prefix(e.what()), 120)));
  } catch (const json::exception& e) {  // "parse error at line 3, column 5: ..."
    throw ConfigError(fmt::format("{}: invalid JSON: {}", source, excerpt(without_prefix(e.what()), 200)));
  }
}

std::string excerpt(std::string_view text, size_t max_bytes) {
  size_t cut = std::min(text.size(), max_bytes);
  while (cut > 0 && cut < text.size() && utf8_continuation(text[cut])) --cut;  // whole characters only
  std::string out;
  for (const char c : text.substr(0, cut)) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7F)
      out += fmt::format("\\x{:02x}", u);  // a newline in a key must not break the message's line
    else
      out += c;
  }
  if (cut < text.size()) out += fmt::format("... ({} bytes)", text.size());
  return out;
}

std::string excerpt_json(const json& value, size_t max_bytes) {
  if (value.is_string()) {
    const auto& s = value.get_ref<const std::string&>();
    if (s.size() > max_bytes) return "\"" + excerpt(std::string_view(s), max_bytes) + "\"";
  }
  return excerpt(std::string_view(value.dump(-1, ' ', false, json::error_handler_t::replace)), max_bytes);
}

}  // namespace qkv
