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

// Cores this process may run on (its CPU affinity mask, which containers and taskset narrow).
int available_cores();

// Applies plan_threads(n > 0 ? n : available_cores() / processes, detect_blas()). `qkv --threads N`
// calls it with N; 0 chooses for this machine, sharing the cores among the `processes` of a
// data-parallel run on it (never more threads than cores).
void configure_threads(int n, int processes = 1);

// One line describing the current settings, for logs:
// "threads: aten=2 blas=2 of 2 cores (OpenBLAS 0.3.21, OpenMP build: shares ATen's pool)".
std::string describe_threads();

}  // namespace qkv
