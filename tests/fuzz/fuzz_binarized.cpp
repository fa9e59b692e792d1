// Fuzz target: the binarized corpus reader (data/binarized.h), which maps a file and trusts its
// counts once validate() has checked them.
//
// Input: the whole .bin file.
// Expected: a corpus whose every pair reads within the file (each token is read, so an offset that
// points outside the map faults here), or a DataError of one line.
#include <cstdint>

#include "base/error.h"
#include "data/binarized.h"
#include "fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = qkv::fuzz::write_scratch("corpus.bin", data, size);
  try {
    qkv::BinarizedCorpus corpus(path);
    const auto& header = corpus.header();
    const uint64_t token_area = corpus.file_bytes() - sizeof(qkv::BinarizedHeader);
    int64_t tokens = 0;
    int64_t checksum = 0;
    for (int64_t i = 0; i < corpus.size(); ++i) {
      for (const auto& view : {corpus.src(i), corpus.tgt(i)}) {
        for (int64_t t = 0; t < view.size(); ++t) checksum += view[t];
        tokens += view.size();
      }
      if (corpus.src_length(i) < 0 || corpus.tgt_length(i) < 0) std::abort();
    }
    if (static_cast<uint64_t>(tokens) != header.tokens) std::abort();
    if (header.tokens * header.token_bytes > token_area) std::abort();
    if (checksum == -1) std::abort();  // keeps the reads from being optimised away
  } catch (const qkv::DataError& e) {
    qkv::fuzz::require_one_line(e.what(), qkv::fuzz::as_text(data, size));
  }
  return 0;
}
