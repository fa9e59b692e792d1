// Errors that reach the user. `main` turns them into one line and an exit code: usage and config
// errors exit 2, everything else (data, checkpoints, runtime) exits 1.
#pragma once

#include <stdexcept>
#include <string>

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

}  // namespace qkv
