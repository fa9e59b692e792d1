// Large CPU work buffers of the attention kernels in transparent huge pages.
//
// A freshly allocated buffer costs a page fault per page at its first touch, and with 4 KiB pages the
// faults of an attention call's outputs and gradients (several [B·H, T, D] tensors, and standard's
// probabilities) cost as much as a sizeable fraction of its arithmetic: measured here, 3.5 ms for
// 8 MiB against 0.4 ms with 2 MiB pages. The kernel backs an madvise(MADV_HUGEPAGE) region with
// huge pages (Linux's transparent_hugepage "madvise" mode, the common default), so these buffers are
// allocated 2 MiB-aligned and advised, and touched in one pass when their pages are fresh. A block
// that the heap hands back from an earlier step (runtime/heap.h keeps freed blocks) is already in
// memory and is not touched again. The memory still comes from c10's CPU allocator, so allocation
// counters see it.
#pragma once

#include <torch/types.h>

namespace qkv::detail {

// torch::empty(sizes, options), in huge pages when on the CPU and at least a few MiB large.
torch::Tensor big_empty(at::IntArrayRef sizes, const torch::TensorOptions& options);
// The same, zero-filled.
torch::Tensor big_zeros(at::IntArrayRef sizes, const torch::TensorOptions& options);

}  // namespace qkv::detail
