// The checks of a checkpoint's archive before libtorch loads it. libtorch's readers are not written
// for hostile input, and a checkpoint's checksum proves only that the file is whole, not that qkv wrote
// it. Three checks, each found needed by tests/fuzz/fuzz_checkpoint_file:
//   1. the zip directory: every record stored within the archive, or deflated and small (libtorch
//      allocates the size a record's entry claims);
//   2. the class declarations (below);
//   3. the pickles: data.pkl, constants.pkl and the declarations' debug records *.debug_pkl
//      (checkpoint/pickle_check.h).
//
// The class declarations. A checkpoint body is a TorchScript archive (torch::serialize::OutputArchive):
// a zip file whose code/*.py records declare the classes of the saved modules, which libtorch's loader
// parses and compiles. A crafted class declaration crashed that parser. qkv's archives declare nothing
// but plain attributes, so every code record must have exactly the shape OutputArchive
// writes (below); anything else is refused before the parser sees it.
//
// The accepted shape, line by line, of each code/**.py record:
//
//   class Module(Module):
//     __parameters__ = ["weight", "bias", ]        (quoted names, each followed by ", ")
//     __buffers__ = []
//     __annotations__ = []
//     __annotations__["0"] = __torch__.___torch_mangle_5.Module
//     weight : Tensor                              (name : type)
//
// where a type is Tensor, int, float, bool, str, a module class __torch__.X.Y, or Tuple/List/Optional
// of the first five (no deeper nesting).
#pragma once

#include <cstddef>

namespace qkv {

// Throws std::runtime_error with a one-line reason if the archive in `data` [size bytes] cannot be
// opened as a zip archive of uncompressed records, or holds a code record or a pickle of another shape.
void check_archive(const char* data, size_t size);

}  // namespace qkv
