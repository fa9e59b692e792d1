// Shared by the libFuzzer targets (tests/fuzz/fuzz_*.cpp): what every target asserts about the errors
// it provokes, and a scratch file for readers that take a path.
//
// A target calls the code under test on the fuzzer's bytes. The errors a user may cause are the
// expected outcome and must read as one line of bounded length with no libtorch backtrace; any
// other exception, a crash, or a report of AddressSanitizer / UndefinedBehaviorSanitizer is a
// finding (libFuzzer stops and saves the input as crash-*).
#pragma once

#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace qkv::fuzz {

// The fuzzer's bytes as text.
inline std::string_view as_text(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// libtorch's errors carry their C++ backtrace after this phrase ("Exception raised from f at
// file:line (most recent call first):" and a frame per line).
constexpr std::string_view kBacktraceMarker = "Exception raised from";

// Aborts (a finding) unless `message` is one line of at most `max_bytes` without a C++ backtrace.
// `input` is the fuzzer's input that provoked it: messages echo what they refuse (cut to 64 bytes),
// so the marker counts only where the input did not hold it. The fuzzer learns the marker from this
// very comparison and writes it into configs and names; such an echo is not a backtrace (and a real
// one, many lines long, still fails the one-line check).
inline void require_one_line(std::string_view message, std::string_view input, size_t max_bytes = 2000) {
  const bool backtrace = message.find(kBacktraceMarker) != std::string_view::npos &&
                         input.find(kBacktraceMarker) == std::string_view::npos;
  const bool ok = !message.empty() && message.find('\n') == std::string_view::npos &&
                  message.size() <= max_bytes && !backtrace;
  if (!ok) {
    std::fprintf(stderr, "error message is not one short line (%zu bytes):\n%.*s\n", message.size(),
                 static_cast<int>(std::min<size_t>(message.size(), 4000)), message.data());
    std::abort();
  }
}

// A file that holds the current input, for readers that open a path: one per process (the fuzzer may
// run several workers), in $TMPDIR (run_fuzz.sh points it at the run's scratch directory)
// or else /tmp, and removed when the process exits normally. A crash leaves it behind, beside the
// crash-* input that libFuzzer saves.
class ScratchFile {
 public:
  explicit ScratchFile(const char* name) {
    const char* dir = std::getenv("TMPDIR");
    path_ = std::string(dir != nullptr && *dir != '\0' ? dir : "/tmp") + "/qkv-fuzz-" +
            std::to_string(::getpid()) + "-" + name;
  }
  ~ScratchFile() { std::remove(path_.c_str()); }
  ScratchFile(const ScratchFile&) = delete;
  ScratchFile& operator=(const ScratchFile&) = delete;

  const std::string& write(const uint8_t* data, size_t size) const {
    std::FILE* file = std::fopen(path_.c_str(), "wb");
    if (file == nullptr) std::abort();
    if (size > 0 && std::fwrite(data, 1, size, file) != size) std::abort();
    std::fclose(file);
    return path_;
  }

 private:
  std::string path_;
};

// Writes the input to the target's scratch file and returns its path. A target uses one name: the
// file object is a function-local static, made on the first call (so exit() runs its destructor).
inline const std::string& write_scratch(const char* name, const uint8_t* data, size_t size) {
  static const ScratchFile scratch(name);
  return scratch.write(data, size);
}

}  // namespace qkv::fuzz
