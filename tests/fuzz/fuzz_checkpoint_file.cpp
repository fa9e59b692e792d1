// Fuzz target: reading a checkpoint file (checkpoint/checkpoint.h): the head, tail and checksum
// checks, the archive checks (checkpoint/archive_check.h), then libtorch's archive reader and the record
// inside it (checkpoint/meta.h).
//
// Input: a mode byte, then bytes. Even mode: the bytes are the whole file (random damage, which the
// checksum refuses). Odd mode: the bytes are the archive body, wrapped with a valid head, size and
// checksum, so that crafted archives reach libtorch's reader and the record.
// Expected: a checkpoint and its record, or a CheckpointError of one line. Anything else is a finding.
#include <cstdint>
#include <string>

#include "base/error.h"
#include "checkpoint/checkpoint.h"
#include "checkpoint/meta.h"
#include "fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  const std::string file = data[0] % 2 == 1 ? qkv::checkpoint_file_bytes(rest) : std::string(rest);
  const std::string& path =
      qkv::fuzz::write_scratch("step-1.pt", reinterpret_cast<const uint8_t*>(file.data()), file.size());
  try {
    qkv::LoadedCheckpoint checkpoint(path);
    checkpoint.restore_rng_states();
    const qkv::CheckpointMeta meta = qkv::CheckpointMeta::read(checkpoint);
    if (meta.step < 0) std::abort();
  } catch (const qkv::CheckpointError& e) {
    qkv::fuzz::require_one_line(e.what(), qkv::fuzz::as_text(data, size));
  }
  return 0;
}
