// The heap policy (runtime/heap.h): with it, a big block freed and requested again is served from the
// heap without faulting its pages in a second time; without it, glibc maps it afresh each time.
#include <gtest/gtest.h>

#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "runtime/heap.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define QKV_TEST_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define QKV_TEST_ASAN 1
#endif

namespace qkv {
namespace {

constexpr size_t kBlockBytes = size_t{64} << 20;  // twice glibc's largest automatic mmap threshold

long block_pages() {
  return static_cast<long>(kBlockBytes) / sysconf(_SC_PAGESIZE);
}

long minor_faults() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_minflt;
}

// Page faults taken by the second of two allocate-touch-free rounds of one big block.
long faults_of_second_round() {
  long faults = 0;
  for (int round = 0; round < 2; ++round) {
    const long before = minor_faults();
    auto* block = static_cast<char*>(std::malloc(kBlockBytes));
    if (block == nullptr) return -1;
    std::memset(block, round + 1, kBlockBytes);
    // The memset must happen: the compiler may not drop a write to memory it cannot see read.
    asm volatile("" : : "r"(block) : "memory");
    std::free(block);
    faults = minor_faults() - before;
  }
  return faults;
}

bool sanitizer_owns_malloc() {
#if defined(QKV_TEST_ASAN)
  return true;
#else
  return false;
#endif
}

TEST(Heap, KeptBlocksAreNotFaultedInAgain) {
#if !defined(__GLIBC__)
  GTEST_SKIP() << "the policy is glibc's mallopt";
#else
  if (sanitizer_owns_malloc()) GTEST_SKIP() << "AddressSanitizer's allocator ignores mallopt";
  if (std::getenv("MALLOC_MMAP_THRESHOLD_") || std::getenv("MALLOC_TRIM_THRESHOLD_") ||
      std::getenv("GLIBC_TUNABLES"))
    GTEST_SKIP() << "the environment sets malloc's thresholds";
  // One fault per page: where transparent huge pages are always on, a 2 MiB page would take one
  // fault for 512 small ones and hide the difference.
  if (prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) != 0) GTEST_SKIP() << "prctl(PR_SET_THP_DISABLE) refused";
  // Control: glibc's own default threshold (128 KiB, fixed here) maps the block afresh each round, so
  // its pages are faulted in again. This shows that the count below sees faults where they happen.
  ASSERT_EQ(mallopt(M_MMAP_THRESHOLD, 128 * 1024), 1);
  EXPECT_GE(faults_of_second_round(), block_pages() * 9 / 10);  // nearly every page

  ASSERT_EQ(keep_freed_memory(), HeapPolicy::KeepsFreedBlocks);
  EXPECT_EQ(heap_policy(), HeapPolicy::KeepsFreedBlocks);
  // The block comes back from the heap, already mapped: at most a few faults, on the heap's
  // bookkeeping, against 16,384 pages of 4 KiB.
  EXPECT_LE(faults_of_second_round(), block_pages() / 100);
  EXPECT_EQ(heap_policy_environment(),
            "MALLOC_MMAP_THRESHOLD_=1073741824 MALLOC_TRIM_THRESHOLD_=1073741824 ");
#endif
}

TEST(Heap, TheEnvironmentsSettingsStand) {
  ASSERT_EQ(setenv("MALLOC_TRIM_THRESHOLD_", "131072", 1), 0);
  EXPECT_EQ(keep_freed_memory(), HeapPolicy::UserSettings);
  // A child inherits the user's variables by itself; nothing is added to its command.
  EXPECT_EQ(heap_policy_environment(), "");
  EXPECT_EQ(describe(heap_policy()), "heap: the environment's malloc settings");
  unsetenv("MALLOC_TRIM_THRESHOLD_");
}

}  // namespace
}  // namespace qkv
