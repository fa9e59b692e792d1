// Large CPU work buffers in transparent huge pages: see big_buffer.h.
#include "ops/big_buffer.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <vector>

#include <c10/core/CPUAllocator.h>
#include <torch/torch.h>

namespace qkv::detail {
namespace {

constexpr int64_t kHugePage = int64_t{2} << 20;
// Below this a buffer spans too few huge pages to be worth the alignment slack.
constexpr int64_t kMinBytes = int64_t{4} << 20;

// Whether every page of [begin, begin + bytes) is already mapped in memory (mincore). A block that
// the heap hands back from an earlier step is (runtime/heap.h); fresh memory is not.
bool resident(uintptr_t begin, int64_t bytes) {
  const auto page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t first = begin & ~(page - 1), end = begin + static_cast<uintptr_t>(bytes);
  std::vector<unsigned char> pages((end - first + page - 1) / page);
  if (mincore(reinterpret_cast<void*>(first), end - first, pages.data()) != 0) return false;
  return std::all_of(pages.begin(), pages.end(), [](unsigned char p) { return (p & 1) != 0; });
}

// big_empty, or big_zeros when `zeroed`.
torch::Tensor big_buffer(at::IntArrayRef sizes, const torch::TensorOptions& options, bool zeroed) {
  const int64_t bytes = c10::multiply_integers(sizes) * static_cast<int64_t>(options.dtype().itemsize());
  if (options.device().type() != c10::DeviceType::CPU || bytes < kMinBytes)
    return zeroed ? torch::zeros(sizes, options) : torch::empty(sizes, options);
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
  // Fresh pages are touched now, in one pass: faulting them in later, tile by tile, would zero 2 MiB
  // at a time in the middle of a tile's work and evict its data from the L2 cache. Pages already in
  // memory are left as they are, unless zeros were asked for.
  return zeroed || !resident(aligned, bytes) ? t.zero_() : t;
}

}  // namespace

torch::Tensor big_empty(at::IntArrayRef sizes, const torch::TensorOptions& options) {
  return big_buffer(sizes, options, /*zeroed=*/false);
}

torch::Tensor big_zeros(at::IntArrayRef sizes, const torch::TensorOptions& options) {
  return big_buffer(sizes, options, /*zeroed=*/true);
}

}  // namespace qkv::detail
