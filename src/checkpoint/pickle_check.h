// A check of the pickles inside a checkpoint's archive (data.pkl, constants.pkl) before libtorch
// unpickles them.
//
// libtorch's unpickler (torch/csrc/jit/serialization/unpickler.cpp) trusts the numbers it reads:
//   - a string's length is reserved before its bytes are read: BINUNICODE claiming 4 GiB allocates 4 GiB;
//   - a memo index past the end of the table fills the gap: LONG_BINPUT 4e9 allocates 64 GiB;
//   - a storage gets the byte size its persistent id claims, over however many bytes its record holds,
//     and a tensor gets the sizes and strides it is given: a crafted one reads past its record, or is a
//     view of 2^40 elements that the first copy allocates;
//   - SETITEMS over an odd number of stack entries reads one past the stack;
//   - nested containers are freed recursively: a million nested tuples overflow the C++ stack.
// tests/fuzz/fuzz_checkpoint_file found the first one (ASan: out of memory).
//
// check_pickle runs the pickle on a model of the unpickler that keeps only what those checks need (ints,
// short strings, tuples, and the storage size of each tensor), and accepts only what torch's C++ pickler
// writes for qkv's archives: protocol 2, the opcodes below, and these globals:
//
//   __torch__[.X...].Module           a module's class (its state is a dict of attributes)
//   torch._utils._rebuild_tensor_v2   a tensor: (storage, offset, sizes, strides, requires_grad, hooks[,
//   bits]) torch.<Type>Storage               a storage's element type (Float, BFloat16, Long, Byte, ...)
//   collections.OrderedDict           a tensor's (empty) backward hooks
//   torch.jit._pickle.build_<T>list   a typed list
//
// Each storage must fit in its record (<directory>/<key>), each tensor in its storage, memo indices must be
// dense, and containers may nest at most kMaxPickleNesting deep.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace qkv {

// How deep containers may nest in a checkpoint's pickle. qkv's deepest is a tensor's size tuple inside
// the rebuild arguments inside an attribute dict inside a module object, a few modules deep.
constexpr int kMaxPickleNesting = 64;

// The size in bytes of an archive's record `name` ("data/0"), or nullopt when there is none.
using RecordSize = std::function<std::optional<uint64_t>(const std::string& name)>;

// Throws std::runtime_error with a one-line reason, naming `name` and the byte offset, if the pickle
// `bytes` (record `name`, whose storages are the records `<directory>/<key>`) is not of the accepted shape.
void check_pickle(const std::string& name, std::string_view bytes, const std::string& directory,
                  const RecordSize& record_size);

}  // namespace qkv
