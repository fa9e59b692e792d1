// Thread plans: never more threads running at once than the cores given, for every BLAS build; and
// configure_threads applies the plan for the BLAS actually loaded.
#include <iostream>

#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include "runtime/threads.h"

namespace qkv {
namespace {

// Threads that can run at once: both pools use the calling thread, and the OpenMP build of OpenBLAS
// runs on ATen's pool.
int running_threads(const ThreadPlan& plan, BlasBackend backend) {
  return backend == BlasBackend::OpenBlasOpenMP ? std::max(plan.aten, plan.blas) : plan.aten + plan.blas - 1;
}

TEST(ThreadPlan, NeverOversubscribes) {
  for (BlasBackend backend : {BlasBackend::OpenBlasOpenMP, BlasBackend::OpenBlasPthread,
                              BlasBackend::OpenBlasSerial, BlasBackend::Other}) {
    for (int cores : {1, 2, 3, 8, 64}) {
      const ThreadPlan plan = plan_threads(cores, backend);
      SCOPED_TRACE(testing::Message() << "backend " << static_cast<int>(backend) << ", cores " << cores);
      EXPECT_GE(plan.aten, 1);
      EXPECT_GE(plan.blas, 1);
      EXPECT_EQ(running_threads(plan, backend), cores);  // all cores used, none oversubscribed
    }
  }
}

TEST(ThreadPlan, FollowsTheMeasurements) {
  // OpenMP build: one pool for both.
  EXPECT_EQ(plan_threads(2, BlasBackend::OpenBlasOpenMP).aten, 2);
  EXPECT_EQ(plan_threads(2, BlasBackend::OpenBlasOpenMP).blas, 2);
  // pthread build: the cores go to BLAS.
  EXPECT_EQ(plan_threads(2, BlasBackend::OpenBlasPthread).aten, 1);
  EXPECT_EQ(plan_threads(2, BlasBackend::OpenBlasPthread).blas, 2);
  // A single-threaded BLAS: the cores go to ATen.
  EXPECT_EQ(plan_threads(2, BlasBackend::Other).aten, 2);
  EXPECT_EQ(plan_threads(0, BlasBackend::Other).aten, 1);  // nonsense in, one thread out
}

TEST(ConfigureThreads, AppliesThePlanForTheLoadedBlas) {
  const BlasBackend backend = detect_blas();
  for (int n : {1, 2}) {
    configure_threads(n);
    EXPECT_EQ(at::get_num_threads(), plan_threads(n, backend).aten) << "--threads " << n;
  }
  configure_threads(0);  // the cores idle now: between one and all of them
  EXPECT_EQ(at::get_num_threads(), plan_threads(default_threads(), backend).aten);
  EXPECT_GE(default_threads(), 1);
  EXPECT_LE(default_threads(), available_cores());
  const std::string line = describe_threads();
  std::cout << line << "\n";  // shows in the test log which BLAS ran
  EXPECT_EQ(line.rfind("threads: aten=", 0), 0u) << line;
  EXPECT_EQ(line.find("(OpenBLAS ") != std::string::npos, backend != BlasBackend::Other) << line;
}

TEST(AvailableCores, AtLeastOne) {
  EXPECT_GE(available_cores(), 1);
  EXPECT_GE(idle_cores_now(20), 1);
  EXPECT_LE(idle_cores_now(20), available_cores());
}

// The default thread count counts the cores that other processes keep busy, among ours only.
TEST(IdleCores, SubtractsTheCoresOthersKeepBusy) {
  const std::vector<int> two = {0, 1};
  EXPECT_EQ(idle_cores({{0, 0.02}, {1, 0.05}}, two), 2);  // a quiet machine
  EXPECT_EQ(idle_cores({{0, 1.0}, {1, 0.03}}, two), 1);   // a busy loop on one core
  EXPECT_EQ(idle_cores({{0, 0.5}, {1, 0.5}}, two), 1);    // the same loop, moved between the cores
  EXPECT_EQ(idle_cores({{0, 0.3}, {1, 0.1}}, two), 2);    // bursts adding up to under half a core
  EXPECT_EQ(idle_cores({{0, 1.0}, {1, 1.0}}, two), 1);    // everything busy: still one thread
  // CPUs outside this process's mask (taskset, a container's cpuset) do not count.
  EXPECT_EQ(idle_cores({{0, 1.0}, {1, 1.0}, {2, 0.0}, {3, 0.1}}, {2, 3}), 2);
  EXPECT_EQ(idle_cores({{2, 1.0}, {3, 0.0}}, {2, 3, 4, 5}), 3);
}

}  // namespace
}  // namespace qkv
