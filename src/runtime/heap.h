// How this process's C heap treats large freed blocks.
//
// glibc's malloc serves a request above its mmap threshold (at most 32 MiB when left to adjust itself)
// with a fresh mmap, and returns that memory to the kernel when it is freed. The next request of the
// same size then faults in every page again: the kernel finds, zeroes and maps it 4 KiB at a time.
// A training step frees and requests the same big tensors step after step (the logits over a
// 32,000-word vocabulary, the attention probabilities at long lengths), so it pays those faults every
// step. On a virtual machine each fault is dearer still: measured here (docs/speed.md, "The heap"),
// standard attention's forward at T = 1024 took 672 ms against 109 ms with the blocks kept, and the
// kernel's time was half the run's.
//
// keep_freed_memory() raises the mmap threshold to 1 GiB, so such blocks come from the heap and stay
// there once freed, ready for the next step, and raises the trim threshold likewise, so the heap's
// free top is kept too. This is the policy PyTorch's CPU performance guide reaches through jemalloc or
// tcmalloc; glibc's two settings give it without another allocator. The price is that the process
// keeps its peak footprint until it exits.
#pragma once

#include <string>

namespace qkv {

// What keep_freed_memory() did.
enum class HeapPolicy {
  KeepsFreedBlocks,  // the thresholds were raised
  UserSettings,      // MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_ or a GLIBC_TUNABLES malloc
                     // setting is in the environment: the user's choice stands
  Unavailable,       // not glibc, or glibc refused: the allocator's defaults stand
};

// Sets the policy for this process; call it first thing in main(), before the big allocations.
HeapPolicy keep_freed_memory();

// The policy this process runs under (the result of the last keep_freed_memory(); Unavailable before).
HeapPolicy heap_policy();

// Environment assignments ("NAME=value NAME=value ") that give a child process started through the
// shell the same policy (glibc reads them at start), or "" when this process runs under glibc's or
// the user's settings. A benchmark's PyTorch peer runs under it, so both sides get the same heap.
std::string heap_policy_environment();

// One line for logs: "freed blocks kept (glibc mmap and trim thresholds 1 GiB)", and so on.
std::string describe(HeapPolicy policy);

}  // namespace qkv
