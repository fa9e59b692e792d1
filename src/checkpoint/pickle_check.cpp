// The check of a checkpoint's pickles: see pickle_check.h. The model mirrors libtorch's unpickler op by
// op (stack, marks, memo), with each value reduced to what the checks need.
#include "checkpoint/pickle_check.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <limits>
#include <memory>
#include <stdexcept>
#include <vector>

#include <c10/core/ScalarType.h>
#include <fmt/format.h>

#include "config/json_input.h"

namespace qkv {
namespace {

// The element types a storage may hold: those qkv saves (parameters, optimizer state, RNG states).
constexpr std::array<c10::ScalarType, 10> kStorageTypes = {
    c10::ScalarType::Byte, c10::ScalarType::Char,    c10::ScalarType::Short, c10::ScalarType::Int,
    c10::ScalarType::Long, c10::ScalarType::Half,    c10::ScalarType::Float, c10::ScalarType::Double,
    c10::ScalarType::Bool, c10::ScalarType::BFloat16};

bool is_storage_type(int64_t code) {
  for (const auto type : kStorageTypes)
    if (static_cast<int64_t>(type) == code) return true;
  return false;
}

// Limits on what a tensor of qkv's may look like; far beyond any real one, small enough that the bound
// arithmetic below cannot overflow (2^40 · 2^40 < 2^127 is not needed: each step divides first).
constexpr int64_t kMaxExtent = int64_t{1} << 40;  // elements in a dimension, or a stride
constexpr size_t kMaxDims = 16;
constexpr size_t kMaxLine = 200;  // a GLOBAL's module or class name
constexpr size_t kMaxKey = 64;    // a storage's key or location

enum class Kind { kInt, kBool, kFloat, kNone, kString, kTuple, kList, kDict, kObject, kTensor, kCallable };

// What a GLOBAL names, once called by REDUCE or BUILD.
enum class Callable { kRebuildTensor, kOrderedDict, kTypedList, kClass };

// An unpickled value, reduced: an int's value, a string's text (a view into the pickle), a tuple's
// elements, a tensor's storage size in elements, a callable's kind. Containers (tuples, lists, dicts,
// objects) are also nodes of a containment graph whose depth is checked at the end: lists and dicts are
// mutable and shared through the memo, so their nesting is only known once the pickle is done.
struct Value {
  Kind kind = Kind::kNone;
  int64_t number = 0;
  std::string_view text;
  Callable callable = Callable::kClass;
  std::shared_ptr<const std::vector<Value>> items;  // a tuple's
  int depth = 0;  // a tuple's nesting, known when it is made (tuples are immutable): bounds this model's own
                  // recursion when its values are freed
  size_t node = 0;  // a container's node
};

Value value_of(Kind kind) {
  Value v;
  v.kind = kind;
  return v;
}

bool is_container(const Value& v) {
  return v.kind == Kind::kList || v.kind == Kind::kDict || v.kind == Kind::kObject || v.kind == Kind::kTuple;
}

class PickleModel {
 public:
  PickleModel(const std::string& name, std::string_view bytes, const std::string& directory,
              const RecordSize& record_size)
      : name_(name), bytes_(bytes), directory_(directory), record_size_(record_size) {}

  void run() {
    if (read_u(1) != 0x80) fail("does not start with PROTO");
    const uint64_t protocol = read_u(1);
    if (protocol != 2) fail(fmt::format("pickle protocol {}, not 2", protocol));
    while (step()) {
    }
    check_nesting();
    if (stack_.size() != 1) fail(fmt::format("ends with {} values on the stack, not 1", stack_.size()));
  }

 private:
  // ---- reading ------------------------------------------------------------------------------------

  [[noreturn]] void fail(const std::string& why) const {
    throw std::runtime_error(fmt::format("{} byte {}: {}", name_, at_, why));
  }

  std::string_view read_bytes(uint64_t n) {
    if (n > bytes_.size() - pos_) fail(fmt::format("{} bytes claimed, {} left", n, bytes_.size() - pos_));
    const std::string_view out = bytes_.substr(pos_, n);
    pos_ += n;
    return out;
  }

  uint64_t read_u(int n) {  // little-endian, as pickle's binary ints are
    const std::string_view b = read_bytes(n);
    uint64_t value = 0;
    for (int i = n - 1; i >= 0; --i) value = value << 8 | static_cast<unsigned char>(b[i]);
    return value;
  }

  // A GLOBAL's operand: a name up to a newline, of the characters libtorch's reader accepts.
  std::string_view read_line() {
    const size_t end = bytes_.find('\n', pos_);
    if (end == std::string_view::npos || end - pos_ > kMaxLine) fail("a GLOBAL name without its newline");
    const std::string_view line = read_bytes(end - pos_);
    ++pos_;
    for (const char c : line)
      if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.'))
        fail(fmt::format("GLOBAL name {} has a character other than [A-Za-z0-9_.]", excerpt(line)));
    return line;
  }

  // ---- the stack ----------------------------------------------------------------------------------

  void push(Value v) { stack_.push_back(std::move(v)); }

  Value pop() {
    if (stack_.empty()) fail("pops an empty stack");
    Value v = std::move(stack_.back());
    stack_.pop_back();
    return v;
  }

  // The stack position of the last MARK, which must not lie above the top (libtorch does not check).
  size_t pop_mark() {
    if (marks_.empty()) fail("no MARK to close");
    const size_t start = marks_.back();
    marks_.pop_back();
    if (start > stack_.size()) fail("a MARK whose values were popped before it closed");
    return start;
  }

  Value make_int(int64_t v) {
    Value out;
    out.kind = Kind::kInt;
    out.number = v;
    return out;
  }

  Value make_node(Kind kind) {
    Value out;
    out.kind = kind;
    out.node = children_.size();
    children_.emplace_back();
    return out;
  }

  Value make_tuple(std::vector<Value> items) {
    Value out;
    out.kind = Kind::kTuple;
    out.node = children_.size();
    children_.emplace_back();
    for (const Value& item : items) {
      out.depth = std::max(out.depth, item.depth + 1);
      if (is_container(item)) children_[out.node].push_back(item.node);
    }
    if (out.depth > kMaxPickleNesting) fail(fmt::format("tuples nested deeper than {}", kMaxPickleNesting));
    out.items = std::make_shared<const std::vector<Value>>(std::move(items));
    return out;
  }

  Value make_tuple_of_top(size_t n) {
    if (stack_.size() < n) fail(fmt::format("TUPLE{} over {} values", n, stack_.size()));
    std::vector<Value> items(std::make_move_iterator(stack_.end() - n),
                             std::make_move_iterator(stack_.end()));
    stack_.resize(stack_.size() - n);
    return make_tuple(std::move(items));
  }

  // ---- one opcode -----------------------------------------------------------------------------------

  // Runs the opcode at the read position; false after STOP.
  bool step() {
    at_ = pos_;
    const auto opcode = static_cast<unsigned char>(read_bytes(1)[0]);
    switch (opcode) {
      case '.':  // STOP
        return false;
      case '(':  // MARK
        marks_.push_back(stack_.size());
        break;
      case 'K':  // BININT1
        push(make_int(static_cast<int64_t>(read_u(1))));
        break;
      case 'M':  // BININT2
        push(make_int(static_cast<int64_t>(read_u(2))));
        break;
      case 'J':  // BININT
        push(make_int(static_cast<int32_t>(read_u(4))));
        break;
      case 0x8a:  // LONG1, which libtorch reads only as 8 bytes
        if (read_u(1) != 8) fail("LONG1 of other than 8 bytes");
        push(make_int(static_cast<int64_t>(read_u(8))));
        break;
      case 'G':  // BINFLOAT
        read_bytes(8);
        push(value_of(Kind::kFloat));
        break;
      case 'X': {  // BINUNICODE
        Value s = value_of(Kind::kString);
        s.text = read_bytes(read_u(4));
        push(std::move(s));
        break;
      }
      case 0x88:  // NEWTRUE
      case 0x89:  // NEWFALSE
        push(value_of(Kind::kBool));
        break;
      case 'N':  // NONE
        push(value_of(Kind::kNone));
        break;
      case ')':  // EMPTY_TUPLE
        push(make_tuple({}));
        break;
      case ']':  // EMPTY_LIST
        push(make_node(Kind::kList));
        break;
      case '}':  // EMPTY_DICT
        push(make_node(Kind::kDict));
        break;
      case 't':  // TUPLE
        push(make_tuple_of_top(stack_.size() - pop_mark()));
        break;
      case 0x85:  // TUPLE1
      case 0x86:  // TUPLE2
      case 0x87:  // TUPLE3
        push(make_tuple_of_top(opcode - 0x84));
        break;
      case 'e':  // APPENDS
        fill(Kind::kList, 1);
        break;
      case 'u':  // SETITEMS
        fill(Kind::kDict, 2);
        break;
      case 'q':  // BINPUT
        put(read_u(1));
        break;
      case 'r':  // LONG_BINPUT
        put(read_u(4));
        break;
      case 'h':  // BINGET
        get(read_u(1));
        break;
      case 'j':  // LONG_BINGET
        get(read_u(4));
        break;
      case 'c': {  // GLOBAL
        const std::string_view module = read_line();
        const std::string_view name = read_line();
        push(global(module, name));
        break;
      }
      case 0x81:  // NEWOBJ: libtorch drops the (empty) arguments and keeps the class
        pop();
        break;
      case 'R':    // REDUCE
      case 'b': {  // BUILD: libtorch calls the global with the argument either way
        const Value argument = pop();
        const Value callable = pop();
        push(call(callable, argument));
        break;
      }
      case 'Q':  // BINPERSID
        push(storage(pop()));
        break;
      default:
        fail(fmt::format("opcode 0x{:02x} is not one torch's pickler writes", opcode));
    }
    return true;
  }

  // APPENDS / SETITEMS: the values above the last MARK go into the list or dict just below it.
  void fill(Kind kind, size_t per_entry) {
    const size_t start = pop_mark();
    if (start == 0 || stack_[start - 1].kind != kind)
      fail(kind == Kind::kList ? "APPENDS to something other than a list"
                               : "SETITEMS to something other than a dict");
    if ((stack_.size() - start) % per_entry != 0) fail("SETITEMS over an odd number of values");
    const size_t target = stack_[start - 1].node;
    for (size_t i = start; i < stack_.size(); ++i) {
      const Value& v = stack_[i];
      if (per_entry == 2 && (i - start) % 2 == 0 && v.kind != Kind::kString && v.kind != Kind::kInt)
        fail("a dict key other than a string or an int");
      if (is_container(v)) children_[target].push_back(v.node);
    }
    stack_.resize(start);
  }

  void put(uint64_t index) {
    if (stack_.empty()) fail("memoizes an empty stack");
    if (index > memo_.size())
      fail(fmt::format("memo index {} skips past the table's {} entries", index, memo_.size()));
    if (index == memo_.size())
      memo_.push_back(stack_.back());
    else
      memo_[index] = stack_.back();
  }

  void get(uint64_t index) {
    if (index >= memo_.size()) fail(fmt::format("memo index {} of {}", index, memo_.size()));
    push(memo_[index]);
  }

  // ---- globals, calls and storages ---------------------------------------------------------------------

  Value global(std::string_view module, std::string_view name) {
    Value out = value_of(Kind::kCallable);
    if (module == "torch._utils" && name == "_rebuild_tensor_v2") {
      out.callable = Callable::kRebuildTensor;
    } else if (module == "collections" && name == "OrderedDict") {
      out.callable = Callable::kOrderedDict;
    } else if (module == "torch.jit._pickle" && (name == "build_intlist" || name == "build_tensorlist" ||
                                                 name == "build_doublelist" || name == "build_boollist")) {
      out.callable = Callable::kTypedList;
    } else if ((module == "__torch__" || module.rfind("__torch__.", 0) == 0) && !name.empty()) {
      out.callable = Callable::kClass;
    } else if (module == "torch") {
      for (const auto type : kStorageTypes)  // libtorch pushes the element type's code, not a callable
        if (name == fmt::format("{}Storage", c10::toString(type)))
          return make_int(static_cast<int64_t>(type));
      fail(fmt::format("global torch.{} is not a storage type qkv saves", excerpt(name)));
    } else {
      fail(fmt::format("global {}.{} is not one qkv's archives use", excerpt(module), excerpt(name)));
    }
    return out;
  }

  Value call(const Value& callable, const Value& argument) {
    if (callable.kind != Kind::kCallable) fail("REDUCE or BUILD on something other than a GLOBAL");
    switch (callable.callable) {
      case Callable::kRebuildTensor:
        return rebuild_tensor(argument);
      case Callable::kOrderedDict:
        return value_of(Kind::kNone);  // libtorch replaces the hooks by None
      case Callable::kTypedList:
        if (argument.kind != Kind::kTuple || argument.items->empty() ||
            (*argument.items)[0].kind != Kind::kList)
          fail("a typed list built from something other than (list,)");
        return (*argument.items)[0];
      case Callable::kClass: {
        if (argument.kind != Kind::kDict) fail("a module's state is not a dict");
        Value object = make_node(Kind::kObject);
        children_[object.node].push_back(argument.node);
        return object;
      }
    }
    fail("unknown callable");
  }

  // BINPERSID ('storage', element type, key, location, elements): a storage over record <directory>/<key>.
  Value storage(const Value& id) {
    if (id.kind != Kind::kTuple || id.items->size() != 5) fail("a persistent id other than a 5-tuple");
    const auto& f = *id.items;
    if (f[0].kind != Kind::kString || f[0].text != "storage") fail("a persistent id other than a storage");
    if (f[1].kind != Kind::kInt || !is_storage_type(f[1].number))
      fail("a storage of an unknown element type");
    if (f[2].kind != Kind::kString || f[2].text.empty() || f[2].text.size() > kMaxKey ||
        f[2].text.find('/') != std::string_view::npos)
      fail("a storage key other than a plain name");
    if (f[3].kind != Kind::kString || !is_location(f[3].text))
      fail(fmt::format("a storage location other than cpu or cuda[:N]: {}", excerpt(f[3].text)));
    if (f[4].kind != Kind::kInt || f[4].number < 0) fail("a storage of a negative or non-integer size");
    const int64_t elements = f[4].number;
    const auto item = static_cast<int64_t>(c10::elementSize(static_cast<c10::ScalarType>(f[1].number)));
    if (elements > 0) {
      const std::string record = fmt::format("{}/{}", directory_, f[2].text);
      const std::optional<uint64_t> bytes = record_size_(record);
      if (!bytes) fail(fmt::format("storage record {} is missing", excerpt(record)));
      if (static_cast<uint64_t>(elements) > *bytes / static_cast<uint64_t>(item))
        fail(fmt::format("storage {} claims {} elements of {} bytes; its record holds {} bytes",
                         excerpt(record), elements, item, *bytes));
    }
    Value tensor = value_of(Kind::kTensor);
    tensor.number = elements;
    return tensor;
  }

  static bool is_location(std::string_view s) {
    if (s == "cpu" || s == "cuda") return true;
    if (s.rfind("cuda:", 0) != 0 || s.size() == 5 || s.size() > 9) return false;
    for (const char c : s.substr(5))
      if (!std::isdigit(static_cast<unsigned char>(c))) return false;
    return true;
  }

  // _rebuild_tensor_v2(storage, offset, sizes, strides, requires_grad, hooks[, metadata]): libtorch sets
  // these on the tensor unchecked, so every element it can address must lie inside the storage.
  Value rebuild_tensor(const Value& arguments) {
    if (arguments.kind != Kind::kTuple || (arguments.items->size() != 6 && arguments.items->size() != 7))
      fail("tensor arguments other than a 6- or 7-tuple");
    const auto& a = *arguments.items;
    if (a[0].kind != Kind::kTensor) fail("a tensor rebuilt from something other than a storage");
    if (a[1].kind != Kind::kInt || a[1].number < 0 || a[1].number > kMaxExtent)
      fail("a tensor's offset is out of range");
    const std::vector<int64_t> sizes = int_tuple(a[2], "sizes");
    const std::vector<int64_t> strides = int_tuple(a[3], "strides");
    if (sizes.size() != strides.size()) fail("a tensor with unequal numbers of sizes and strides");
    if (a[4].kind != Kind::kBool) fail("a tensor's requires_grad is not a bool");
    if (a.size() == 7 && a[6].kind != Kind::kDict) fail("a tensor's metadata is not a dict");

    const int64_t storage = a[0].number;
    int64_t elements = 1;
    for (const int64_t size : sizes)
      elements = size == 0 ? 0 : (elements > storage / size ? storage + 1 : elements * size);
    if (elements > storage) fail(fmt::format("a tensor of more elements than its storage's {}", storage));
    if (elements > 0) {
      int64_t last = a[1].number;  // the offset of the last element addressed
      for (size_t d = 0; d < sizes.size(); ++d) {
        if (sizes[d] > 1 && strides[d] > (storage - last) / (sizes[d] - 1))
          fail(fmt::format("a tensor reaching past its storage's {} elements", storage));
        last += (sizes[d] - 1) * strides[d];
      }
      if (last >= storage) fail(fmt::format("a tensor reaching past its storage's {} elements", storage));
    }
    Value tensor = value_of(Kind::kTensor);
    tensor.number = storage;  // a rebuilt tensor passed on as a storage shares the same one
    return tensor;
  }

  std::vector<int64_t> int_tuple(const Value& v, const char* what) {
    if (v.kind != Kind::kTuple || v.items->size() > kMaxDims)
      fail(fmt::format("a tensor's {} are not a tuple of at most {}", what, kMaxDims));
    std::vector<int64_t> out;
    for (const Value& item : *v.items) {
      if (item.kind != Kind::kInt || item.number < 0 || item.number > kMaxExtent)
        fail(fmt::format("a tensor's {} hold other than integers in [0, 2^40]", what));
      out.push_back(item.number);
    }
    return out;
  }

  // ---- nesting ---------------------------------------------------------------------------------------

  // The longest chain of containment among every container made (popped ones too: libtorch frees them
  // recursively when they are dropped), by an iterative depth-first search; a cycle is refused too.
  void check_nesting() {
    at_ = pos_;
    enum State : uint8_t { kNew, kOpen, kDone };
    std::vector<State> state(children_.size(), kNew);
    std::vector<int> depth(children_.size(), 1);
    std::vector<std::pair<size_t, size_t>> path;  // (node, next child to visit)
    for (size_t root = 0; root < children_.size(); ++root) {
      if (state[root] != kNew) continue;
      path.emplace_back(root, 0);
      state[root] = kOpen;
      while (!path.empty()) {
        auto& [node, next] = path.back();
        if (next < children_[node].size()) {
          const size_t child = children_[node][next++];
          if (state[child] == kOpen) fail("a container that contains itself");
          if (state[child] == kNew) {
            state[child] = kOpen;
            path.emplace_back(child, 0);
          }
          continue;
        }
        for (const size_t child : children_[node]) depth[node] = std::max(depth[node], depth[child] + 1);
        if (depth[node] > kMaxPickleNesting)
          fail(fmt::format("containers nested deeper than {}", kMaxPickleNesting));
        state[node] = kDone;
        path.pop_back();
      }
    }
  }

  const std::string& name_;
  std::string_view bytes_;
  const std::string& directory_;
  const RecordSize& record_size_;
  size_t pos_ = 0;  // the read position
  size_t at_ = 0;   // where the current opcode starts, for messages
  std::vector<Value> stack_;
  std::vector<size_t> marks_;
  std::vector<Value> memo_;
  std::vector<std::vector<size_t>> children_;  // the containment graph: each container's contents
};

}  // namespace

void check_pickle(const std::string& name, std::string_view bytes, const std::string& directory,
                  const RecordSize& record_size) {
  PickleModel(name, bytes, directory, record_size).run();
}

}  // namespace qkv
