// A check of a checkpoint's archive before libtorch loads it.
//
// A checkpoint body is a TorchScript archive (torch::serialize::OutputArchive): a zip file whose
// code/*.py records declare the classes of the saved modules, which libtorch's loader parses and
// compiles. That parser is not written for hostile input: a crafted class declaration with a valid
// checksum around it crashed it (found by tests/fuzz/fuzz_checkpoint_file). qkv's archives declare
// nothing but plain attributes, so every code record must have exactly the shape OutputArchive
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
// opened as a zip archive or holds a code record of another shape.
void check_archive_code(const char* data, size_t size);

}  // namespace qkv
