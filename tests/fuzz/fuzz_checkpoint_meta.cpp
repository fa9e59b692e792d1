// Fuzz target: the record a checkpoint carries about itself (checkpoint/meta.h), from its JSON text
// as LoadedCheckpoint reads it: parse_json_strictly, CheckpointMeta::from_json (the saved config
// through validate()), then the vocabularies (make_codecs).
//
// Expected: a record, or a CheckpointError / ConfigError of one line. Anything else is a finding.
#include <cstdint>
#include <string>

#include "base/error.h"
#include "checkpoint/meta.h"
#include "config/json_input.h"
#include "fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    const nlohmann::json record = qkv::parse_json_strictly(text, "step-1.pt");
    const qkv::CheckpointMeta meta = qkv::CheckpointMeta::from_json(record, "step-1.pt");
    // A SentencePiece record names a model file to load: not this target's business (and the path
    // is whatever the fuzzer wrote).
    if (meta.codecs.is_object() && meta.codecs.value("kind", "") == "sentencepiece") return 0;
    const qkv::CodecPair codecs = meta.make_codecs("step-1.pt");
    if (codecs.src == nullptr || codecs.tgt == nullptr) std::abort();
    // What was read writes back and reads again as the same record.
    const nlohmann::json again = qkv::CheckpointMeta::from_json(meta.to_json(), "x").to_json();
    if (again != meta.to_json()) std::abort();
  } catch (const qkv::CheckpointError& e) {
    qkv::fuzz::require_one_line(e.what(), text);
  } catch (const qkv::ConfigError& e) {
    qkv::fuzz::require_one_line(e.what(), text);
  }
  return 0;
}
