// Keeping signals out of oneDNN's generated GEMM kernels.
//
// oneDNN 2.x's f32 GEMM kernels for AVX2 and AVX-512 (the ones behind dnnl_sgemm) point the stack
// pointer into a heap workspace while they run. A signal delivered to a thread inside such a kernel
// has its frame written by the kernel at the stack pointer, that is into the heap: malloc's
// bookkeeping is overwritten, and the process aborts later ("corrupted size vs. prev_size",
// "free(): invalid pointer") far from the cause. oneDNN fixed it in 3.11 (issue #4845, pull request
// #4855); the oneDNN that Debian 12's libtorch loads predates the fix. qkv met it as Ctrl-C
// corrupting the heap in one run of four; a test that only sends signals, without stopping, shows it
// at once (TrainerTest.SignalsLeaveTrainingUnchanged).
//
// The remedy is to never run those kernels with asynchronous signals deliverable:
//   - the calling thread blocks them for the duration of the call (DeferSignals below); a signal that
//     arrives meanwhile stays pending and is delivered when the mask is restored, outside the kernel;
//   - the OpenMP worker threads, which run parts of every threaded GEMM, block them for good (a
//     signal sent to the process goes to a thread that does not block it: the caller, or any other).
// Synchronous signals (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS) stay deliverable: a fault
// must still be reported where it happens.
#pragma once

#include <csignal>

namespace qkv {

class DeferSignals {
 public:
  DeferSignals();   // blocks asynchronous signals in this thread (and in its OpenMP workers, for good)
  ~DeferSignals();  // restores this thread's mask: what arrived meanwhile is delivered now
  DeferSignals(const DeferSignals&) = delete;
  DeferSignals& operator=(const DeferSignals&) = delete;

 private:
  sigset_t previous_;
};

}  // namespace qkv
