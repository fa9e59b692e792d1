// Large CPU work buffers in transparent huge pages: see big_buffer.h.
#include "ops/big_buffer.h"

#include <sys/mman.h>

#include <cstdint>
#include <memory>

#include <c10/core/CPUAllocator.h>
#include <torch/torch.h>

namespace qkv::detail {
namespace {

constexpr int64_t kHugePage = int64_t{2} << 20;
// Below this a buffer spans too few huge pages to be worth the alignment slack.
constexpr int64_t kMinBytes = int64_t{4} << 20;

}  // namespace

torch::Tensor big_empty(at::IntArrayRef sizes, const torch::TensorOptions& options) {
  const int64_t bytes = c10::multiply_integers(sizes) * static_cast<int64_t>(options.dtype().itemsize());
  if (options.device().type() != c10::DeviceType::CPU || bytes < kMinBytes)
    return torch::empty(sizes, options);
  // One extra huge page of slack to place the buffer on a 2 MiB boundary; the owning DataPtr lives
  // as long as the tensor, through the deleter.
  auto block =
      std::make_shared<c10::DataPtr>(c10::GetAllocator(c10::DeviceType::CPU)->allocate(bytes + kHugePage));
  const auto base = reinterpret_cast<uintptr_t>(block->get());
  const auto aligned = (base + kHugePage - 1) & ~static_cast<uintptr_t>(kHugePage - 1);
  // Advice only: where the kernel refuses, the buffer simply keeps 4 KiB pages.
  madvise(reinterpret_cast<void*>(aligned), static_cast<size_t>(bytes / kHugePage * kHugePage),
          MADV_HUGEPAGE);
  auto t = torch::from_blob(
      reinterpret_cast<void*>(aligned), sizes, [block](void*) mutable { block.reset(); }, options);
  // Touched now, in one pass: faulting the pages in later, tile by tile, would zero 2 MiB at a time
  // in the middle of a tile's work and evict its data from the L2 cache.
  return t.zero_();
}

torch::Tensor big_zeros(at::IntArrayRef sizes, const torch::TensorOptions& options) {
  auto t = big_empty(sizes, options);
  return t.device().is_cpu() && t.nbytes() >= static_cast<size_t>(kMinBytes) ? t : t.zero_();
}

}  // namespace qkv::detail
