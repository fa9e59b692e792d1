// Errors that reach the user. `main` turns them into one line and an exit code: usage and config
// errors exit 2, everything else (data, checkpoints, runtime) exits 1.
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>

namespace qkv {

// A bad config file, key or --set override: the message names the file and key.
struct ConfigError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A missing, malformed or inconsistent data file: the message names the file and line.
struct DataError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A truncated, corrupt or incompatible checkpoint: the message names the file.
struct CheckpointError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A message as one line of at most `max_bytes` for the user: libtorch's errors append a C++ backtrace
// ("Exception raised from ... (most recent call first):\nframe #0: ...") that is cut off, line breaks
// inside the message become spaces, and an over-long message is cut with "...".
inline std::string one_line(std::string_view message, size_t max_bytes = 1000) {
  const size_t backtrace = message.find("Exception raised from ");
  if (backtrace != std::string_view::npos) message = message.substr(0, backtrace);
  std::string out;
  for (const char c : message) {
    const bool space = c == '\n' || c == '\r' || c == '\t';
    if (space && (out.empty() || out.back() == ' ')) continue;
    out += space ? ' ' : c;
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  if (out.size() > max_bytes) {
    size_t cut = max_bytes;
    while (cut > 0 && (static_cast<unsigned char>(out[cut]) & 0xC0) == 0x80) --cut;  // whole UTF-8 characters
    out = out.substr(0, cut) + "...";
  }
  return out;
}

}  // namespace qkv
