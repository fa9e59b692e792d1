// Keeping signals out of oneDNN's generated GEMM kernels: see defer_signals.h.
#include "ops/defer_signals.h"

#include <pthread.h>

#include <ATen/Parallel.h>

namespace qkv {
namespace {

// Every signal but the synchronous ones, which report a fault in the faulting thread.
sigset_t asynchronous_signals() {
  sigset_t set;
  sigfillset(&set);
  for (int s : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS}) sigdelset(&set, s);
  return set;
}

const sigset_t& async_set() {
  static const sigset_t set = asynchronous_signals();
  return set;
}

// OpenMP keeps one pool of worker threads per thread that starts parallel regions, so each such
// thread makes sure its own pool blocks the signals, once per pool size: a parallel region with one
// task per thread, in which every worker (not the caller, thread 0) blocks them.
thread_local int g_pool_blocked_for = 1;

void block_in_pool_workers() {
  const int threads = at::get_num_threads();
  if (threads <= g_pool_blocked_for || at::in_parallel_region()) return;
  at::parallel_for(0, threads, 1, [](int64_t, int64_t) {
    if (at::get_thread_num() != 0) pthread_sigmask(SIG_BLOCK, &async_set(), nullptr);
  });
  g_pool_blocked_for = threads;
}

}  // namespace

DeferSignals::DeferSignals() {
  pthread_sigmask(SIG_BLOCK, &async_set(), &previous_);
  block_in_pool_workers();
}

DeferSignals::~DeferSignals() {
  pthread_sigmask(SIG_SETMASK, &previous_, nullptr);
}

}  // namespace qkv
