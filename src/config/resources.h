// What a config asks of the machine, estimated before anything is built: the parameter count (which
// must fit in 64 bits), and the memory that training and decoding need at least. A config whose
// sizes cannot work (a d_model of 2^31 - 1, 10^9 layers, a beam of 10^6, train.update_freq of 10^9)
// is refused with one line naming the key, its value and the estimate, instead of ending in an
// allocator error, a bare std::bad_alloc or the kernel's OOM killer minutes later.
//
// The estimates are lower bounds in float32 bytes, so that only what surely cannot fit is refused:
//   training  = 16 P                      parameters, gradients, Adam's two moments
//             + 4 M C                     the positional table (sinusoids or learned)
//             + 24 U N                    the U batches of one update, N tokens a side (src, tgt in/out,
//             int64)
//             + 4 N (4 C (Le + Ld) + 2 V) one batch's activations: four C-wide tensors per layer (input,
//                                         attention output, FFN output, norm) and the logits with their
//                                         gradient
//   decoding  = 4 P + 4 M C + R (8 V + 16 C Ld)   R = decode.batch_size × decode.beam rows, each with
//                                         one step's scores over the vocabulary (double) and one
//                                         position of keys and values in each decoder layer
// with P parameters, C = d_model, Le/Ld layers, V the target vocabulary, M = model.max_len,
// N = train.max_tokens, U = train.update_freq. The arithmetic is checked (base/checked.h).
//
// Which key to name: among the keys the config raised above their defaults, the one whose default
// would shrink the estimate most (the culprit of `model.d_ff=9223372036854775807` is d_ff, not the
// layer count it multiplies); see culprit() in resources.cpp for configs of defaults.
#pragma once

#include <cstdint>
#include <string>

#include "base/checked.h"
#include "base/config.h"

namespace qkv {

struct ResourceEstimate {
  CheckedCount parameters;
  CheckedCount training_bytes;
  CheckedCount decoding_bytes;
};

// The estimate for vocabularies of src_vocab and tgt_vocab tokens (specials included).
ResourceEstimate estimate_resources(const Config& config, int64_t src_vocab, int64_t tgt_vocab);

// Throws ConfigError ("SOURCE: model.d_ff = ... makes the parameter count overflow 64 bits") when the
// parameter count does not fit in int64 even with the smallest vocabulary. Part of validate().
void check_parameter_count(const Config& config, const std::string& source);

// What the machine refuses. Throws ConfigError naming `source`, the key, the estimate and the
// memory available when training (with `training`; decoding always) needs more than
// `available_bytes`. Call it before building anything; with the vocabulary unknown yet, pass 4
// (the special tokens) for a lower bound.
void check_fits_in_memory(const Config& config, int64_t src_vocab, int64_t tgt_vocab, bool training,
                          const std::string& source, uint64_t available_bytes);
// The same with the memory this process may use now (runtime/memory.h).
void check_fits_in_memory(const Config& config, int64_t src_vocab, int64_t tgt_vocab, bool training,
                          const std::string& source);

// "1.5 GiB", "12 TiB", "more than 8 EiB" (overflowed): byte counts for messages.
std::string format_bytes(CheckedCount bytes);

}  // namespace qkv
