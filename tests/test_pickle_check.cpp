// The check of a checkpoint's pickles (checkpoint/pickle_check.h) on pickles written by hand: a tensor as
// torch's pickler writes it is accepted, and each way a crafted pickle makes libtorch's unpickler
// allocate without bound, read past a record or the stack, or recurse without bound is refused with a
// line naming the record and the byte.
#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>

#include <gtest/gtest.h>

#include "checkpoint/pickle_check.h"

namespace qkv {
namespace {

// Pickle bytes, one opcode at a time (protocol 2, as torch's pickler writes them).
class Pickle {
 public:
  Pickle() { op('\x80').u8(2); }
  Pickle& op(char opcode) {
    bytes_ += opcode;
    return *this;
  }
  Pickle& u8(int v) {
    bytes_ += static_cast<char>(v);
    return *this;
  }
  Pickle& u32(uint32_t v) {
    for (int i = 0; i < 4; ++i) bytes_ += static_cast<char>(v >> (8 * i) & 0xff);
    return *this;
  }
  Pickle& integer(int v) { return op('K').u8(v); }  // BININT1
  Pickle& text(const std::string& s) {              // BINUNICODE
    op('X').u32(static_cast<uint32_t>(s.size()));
    bytes_ += s;
    return *this;
  }
  Pickle& global(const std::string& module, const std::string& name) {
    op('c');
    bytes_ += module + "\n" + name + "\n";
    return *this;
  }
  Pickle& stop() { return op('.'); }
  const std::string& bytes() const { return bytes_; }

 private:
  std::string bytes_;
};

// The tensor that torch's pickler writes for a float tensor of `sizes` and `strides` at `offset` over
// storage "0" of `elements` elements.
Pickle tensor(int elements, std::pair<int, int> sizes, std::pair<int, int> strides, int offset = 0) {
  Pickle p;
  p.global("torch._utils", "_rebuild_tensor_v2").op('(');
  p.op('(').text("storage").global("torch", "FloatStorage").text("0").text("cpu").integer(elements).op('t');
  p.op('Q').integer(offset);
  p.integer(sizes.first).integer(sizes.second).op('\x86');
  p.integer(strides.first).integer(strides.second).op('\x86');
  p.op('\x89').global("collections", "OrderedDict").op(')').op('R');
  return p.op('t').op('R');
}

// The check's message for `pickle` over the records `records`, or "" if it passed.
std::string check(const Pickle& pickle, const std::map<std::string, uint64_t>& records = {{"data/0", 24}}) {
  try {
    check_pickle("data.pkl", pickle.bytes(), "data", [&](const std::string& name) -> std::optional<uint64_t> {
      const auto it = records.find(name);
      return it == records.end() ? std::nullopt : std::optional<uint64_t>(it->second);
    });
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

TEST(PickleCheck, AcceptsATensorAsTorchWritesIt) {
  EXPECT_EQ(check(tensor(6, {3, 2}, {2, 1}).stop()), "");
  EXPECT_EQ(check(tensor(6, {2, 3}, {1, 2}).stop()), "");      // a transposed view
  EXPECT_EQ(check(tensor(6, {1, 2}, {2, 1}, 4).stop()), "");   // the last row
  EXPECT_EQ(check(tensor(0, {0, 2}, {2, 1}).stop(), {}), "");  // empty: no record is read
}

// 6 elements of 4 bytes need 24: libtorch would give the storage the claimed size over the record's bytes.
TEST(PickleCheck, RefusesAStorageLargerThanItsRecord) {
  EXPECT_TRUE(contains(check(tensor(7, {3, 2}, {2, 1}).stop()),
                       "storage data/0 claims 7 elements of 4 bytes; its record holds 24 bytes"));
  EXPECT_TRUE(
      contains(check(tensor(6, {3, 2}, {2, 1}).stop(), {{"data/0", 20}}), "its record holds 20 bytes"));
  EXPECT_TRUE(contains(check(tensor(6, {3, 2}, {2, 1}).stop(), {{"data/1", 24}}),
                       "storage record data/0 is missing"));
}

// libtorch sets sizes, strides and the offset on the tensor unchecked.
TEST(PickleCheck, RefusesATensorReachingPastItsStorage) {
  EXPECT_TRUE(
      contains(check(tensor(6, {3, 3}, {3, 1}).stop()), "a tensor of more elements than its storage's 6"));
  EXPECT_TRUE(
      contains(check(tensor(6, {3, 2}, {3, 1}).stop()), "a tensor reaching past its storage's 6 elements"));
  EXPECT_TRUE(contains(check(tensor(6, {3, 2}, {2, 1}, 1).stop()), "reaching past its storage's 6 elements"));
  EXPECT_TRUE(contains(check(tensor(6, {255, 255}, {0, 0}).stop()), "more elements than its storage's 6"));
}

// libtorch reserves a string's claimed length before reading it.
TEST(PickleCheck, RefusesAStringLongerThanThePickle) {
  Pickle p;
  p.op('X').u32(0xffffffffu);
  const std::string error = check(p);
  EXPECT_EQ(error, "data.pkl byte 2: 4294967295 bytes claimed, 0 left");
}

// libtorch fills a memo gap with empty values: LONG_BINPUT 4e9 would allocate 64 GiB.
TEST(PickleCheck, RefusesAMemoIndexThatSkipsAhead) {
  Pickle p;
  p.integer(1).op('r').u32(4000000000u);
  EXPECT_TRUE(contains(check(p), "data.pkl byte 4: memo index 4000000000 skips past the table's 0 entries"));
  Pickle get;
  get.op('h').u8(0);
  EXPECT_TRUE(contains(check(get), "memo index 0 of 0"));
}

// libtorch reads a dict's entries in pairs, one past the stack for an odd count.
TEST(PickleCheck, RefusesSetitemsOverAnOddCount) {
  Pickle p;
  p.op('}').op('(').text("a").integer(1).text("b").op('u').stop();
  EXPECT_TRUE(contains(check(p), "SETITEMS over an odd number of values"));
  Pickle even;
  even.op('}').op('(').text("a").integer(1).op('u').stop();
  EXPECT_EQ(check(even), "");
}

// libtorch frees nested containers recursively: deep nesting overflows the stack.
TEST(PickleCheck, RefusesDeepNesting) {
  Pickle tuples;
  tuples.integer(1);
  for (int i = 0; i < kMaxPickleNesting + 1; ++i) tuples.op('\x85');  // TUPLE1
  EXPECT_TRUE(contains(check(tuples.stop()), "tuples nested deeper than 64"));

  // Lists nested through the memo: each list is put in the memo, appended to the one before, then got
  // back, so that no single value on the model's stack shows the depth; the graph does.
  Pickle lists;
  lists.op(']').op('q').u8(0);
  for (int i = 1; i <= kMaxPickleNesting; ++i) lists.op('(').op(']').op('q').u8(i).op('e').op('h').u8(i);
  EXPECT_TRUE(contains(check(lists.stop()), "containers nested deeper than 64"));

  Pickle shallow;
  shallow.op(']').op('q').u8(0);
  for (int i = 1; i < 8; ++i) shallow.op('(').op(']').op('q').u8(i).op('e').op('h').u8(i);
  EXPECT_TRUE(contains(check(shallow.stop()), "ends with 8 values on the stack, not 1"));
}

TEST(PickleCheck, RefusesAListThatContainsItself) {
  Pickle p;
  p.op(']').op('q').u8(0).op('(').op('h').u8(0).op('e').stop();
  EXPECT_TRUE(contains(check(p), "a container that contains itself"));
}

TEST(PickleCheck, RefusesOpcodesAndGlobalsQkvDoesNotWrite) {
  Pickle os;
  os.global("os", "system");
  EXPECT_TRUE(contains(check(os), "data.pkl byte 2: global os.system is not one qkv's archives use"));
  Pickle storage;
  storage.global("torch", "QInt8Storage");
  EXPECT_TRUE(contains(check(storage), "global torch.QInt8Storage is not a storage type qkv saves"));
  Pickle string;
  string.op('S');
  EXPECT_TRUE(contains(check(string), "opcode 0x53 is not one torch's pickler writes"));
  Pickle called;
  called.integer(0).op(')').op('R');  // calls libtorch's first global by its index
  EXPECT_TRUE(contains(check(called), "REDUCE or BUILD on something other than a GLOBAL"));
  Pickle protocol;
  EXPECT_TRUE(contains(check(protocol), "data.pkl byte 2: 1 bytes claimed, 0 left"));
}

}  // namespace
}  // namespace qkv
