// Thread settings. libtorch parallelises its own kernels with OpenMP (intra-op threads) and calls BLAS
// for matrix products; a BLAS with its own thread pool on top of OpenMP oversubscribes the cores.
//
// Which BLAS serves libblas.so.3 is chosen at run time by Debian's alternatives, so it is detected
// here (OpenBLAS exports openblas_get_parallel). With OpenBLAS's OpenMP build, BLAS runs on libtorch's
// own OpenMP pool and one count governs both; with the pthread build the two pools are separate, and
// the plan gives the cores to BLAS and keeps ATen at one thread (docs/speed.md, "Threads and BLAS",
// has the measurements behind this).
#pragma once

#include <string>
#include <vector>

namespace qkv {

enum class BlasBackend {
  OpenBlasOpenMP,   // libopenblas0-openmp: shares libtorch's OpenMP pool
  OpenBlasPthread,  // libopenblas0-pthread: its own pthread pool
  OpenBlasSerial,   // libopenblas0-serial: single-threaded
  Other,            // the reference BLAS or an unknown one: single-threaded as far as we know
};

// Thread counts. Both pools use the calling thread as one of their workers, so the threads that can
// run at once number aten + blas - 1, or just aten when BLAS shares ATen's pool.
struct ThreadPlan {
  int aten = 1;  // ATen intra-op threads (at::set_num_threads)
  int blas = 1;  // OpenBLAS threads (openblas_set_num_threads); == aten for the OpenMP build
};

// The plan for `cores` cores (>= 1) on `backend`: never more threads running at once than cores.
ThreadPlan plan_threads(int cores, BlasBackend backend);

// The BLAS behind libblas.so.3 in this process.
BlasBackend detect_blas();

// Cores this process may run on: its CPU affinity mask (which containers and taskset narrow), capped
// by a container's CPU quota (cgroup cpu.max / cpu.cfs_quota_us).
int available_cores();

// Busy time of each CPU over an interval, from two readings of /proc/stat.
struct CpuBusy {
  int cpu = 0;
  double busy = 0.0;  // share of the interval it ran tasks at normal priority, in [0, 1]
};

// The cores of `allowed` (CPU numbers) that other processes left idle: allowed.size() less the sum
// of their busy shares, rounded, and at least 1. A process spinning on one of two cores makes it 1;
// bursts that add up to under half a core do not count. Time spent on niced tasks (nice > 0, such as
// builds run with `nice`) counts as idle: the scheduler gives a normal-priority thread most of a
// core that it shares with them.
int idle_cores(const std::vector<CpuBusy>& busy, const std::vector<int>& allowed);

// Measures: samples /proc/stat over `sample_ms` and applies idle_cores() to this process's CPUs
// (available_cores() when /proc/stat cannot be read, or with one core).
int idle_cores_now(int sample_ms = 100);

// The default thread count: the cores idle when the program starts. A thread on a core that another
// process keeps busy holds up every parallel region at its barrier (OpenMP threads wait for the
// slowest): beside a one-core busy loop, two threads ran 3x slower than one. The choice is made once,
// at start: results are bit-identical for a given thread count, so a run that must reproduce another
// (or resume it exactly) passes --threads.
int default_threads();

// Applies plan_threads(n, detect_blas()) for `qkv --threads N`; 0 chooses for this machine:
// default_threads() for one process, available_cores() / processes for the `processes` of a
// data-parallel run on it (at least one thread each; they start together, so a sample of the load
// would count their own start-up).
void configure_threads(int n, int processes = 1);

// One line describing the current settings, for logs:
// "threads: aten=2 blas=2 of 2 cores (OpenBLAS 0.3.21, OpenMP build: shares ATen's pool)", with
// ", 1 idle at start" when the default chose fewer threads than cores.
std::string describe_threads();

}  // namespace qkv
