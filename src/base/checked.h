// Counting without wrapping around: sizes computed from user-given numbers (a config's d_ff of
// 9223372036854775807, a beam of 10^9) overflow 64-bit arithmetic, which is undefined for signed
// integers and in practice prints negative parameter counts. CheckedCount does each + and * with the
// compiler's overflow builtins; an overflow sticks (every later result stays "overflowed") and the
// value saturates at INT64_MAX, so that a caller checks once, at the end.
#pragma once

#include <cstdint>
#include <limits>

namespace qkv {

class CheckedCount {
 public:
  constexpr CheckedCount() = default;
  // Counts are never negative: a negative operand can only come from an earlier wrap-around, so it
  // counts as one.
  constexpr CheckedCount(int64_t value) : value_(value), overflowed_(value < 0) {}  // NOLINT: implicit

  int64_t value() const { return value_; }
  bool overflowed() const { return overflowed_; }
  // As a double, for messages and comparisons with byte budgets (+inf once overflowed).
  double approx() const { return overflowed_ ? std::numeric_limits<double>::infinity() : double(value_); }

  friend CheckedCount operator+(CheckedCount a, CheckedCount b) {
    int64_t out = 0;
    if (a.overflowed_ || b.overflowed_ || __builtin_add_overflow(a.value_, b.value_, &out))
      return saturated();
    return CheckedCount(out);
  }
  friend CheckedCount operator*(CheckedCount a, CheckedCount b) {
    int64_t out = 0;
    if (a.overflowed_ || b.overflowed_ || __builtin_mul_overflow(a.value_, b.value_, &out))
      return saturated();
    return CheckedCount(out);
  }
  CheckedCount& operator+=(CheckedCount b) { return *this = *this + b; }
  CheckedCount& operator*=(CheckedCount b) { return *this = *this * b; }

 private:
  static CheckedCount saturated() {
    CheckedCount c;
    c.value_ = std::numeric_limits<int64_t>::max();
    c.overflowed_ = true;
    return c;
  }
  int64_t value_ = 0;
  bool overflowed_ = false;
};

}  // namespace qkv
