// Thread settings: see threads.h.
#include "runtime/threads.h"

#include <dlfcn.h>

#include <algorithm>
#include <filesystem>

#include <ATen/Parallel.h>
#include <fmt/format.h>

namespace qkv {
namespace {

// OpenBLAS exports these; the reference BLAS does not. Looked up at run time because the BLAS behind
// libblas.so.3 is chosen by Debian's alternatives system, not at link time.
using SetThreadsFn = void (*)(int);
using GetIntFn = int (*)();
using GetConfigFn = char* (*)();

// What the last configure_threads(0) chose, for describe_threads().
bool g_chose_default = false;
int g_default = 0;

template <class Fn>
Fn openblas_symbol(const char* name) {
  return reinterpret_cast<Fn>(dlsym(RTLD_DEFAULT, name));
}

std::string backend_name(BlasBackend backend) {
  switch (backend) {
    case BlasBackend::OpenBlasOpenMP:
      return "OpenMP build: shares ATen's pool";
    case BlasBackend::OpenBlasPthread:
      return "pthread build: its own pool";
    case BlasBackend::OpenBlasSerial:
      return "serial build";
    case BlasBackend::Other:
      break;
  }
  return "reference or unknown BLAS: single-threaded; install libopenblas0-openmp";
}

}  // namespace

ThreadPlan plan_threads(int cores, BlasBackend backend) {
  const int n = std::max(1, cores);
  switch (backend) {
    case BlasBackend::OpenBlasOpenMP:
      // One OpenMP pool serves ATen's kernels and BLAS, and OpenBLAS runs single-threaded when called
      // from inside an ATen parallel region: n threads in all.
      return {n, n};
    case BlasBackend::OpenBlasPthread:
      // Two pools that spin while idle: a second ATen thread fights BLAS's workers for the cores
      // (2-5x slower training steps, see docs/speed.md). Matrix products dominate a step, so the cores
      // go to BLAS and ATen keeps the calling thread only.
      return {1, n};
    case BlasBackend::OpenBlasSerial:
    case BlasBackend::Other:
      break;
  }
  return {n, 1};
}

BlasBackend detect_blas() {
  // The library that provides sgemm_ (what libtorch calls) must be OpenBLAS: the libblas.so.3 and
  // liblapack.so.3 alternatives can disagree, loading OpenBLAS for LAPACK behind a reference BLAS.
  Dl_info info{};
  const void* sgemm = dlsym(RTLD_DEFAULT, "sgemm_");
  if (!sgemm || !dladdr(sgemm, &info) || !info.dli_fname) return BlasBackend::Other;
  std::error_code ec;  // the loaded path is the alternatives' symlink: resolve it
  const std::string path = std::filesystem::canonical(info.dli_fname, ec).string();
  if (ec || path.find("openblas") == std::string::npos) return BlasBackend::Other;
  auto get_parallel = openblas_symbol<GetIntFn>("openblas_get_parallel");
  if (!get_parallel) return BlasBackend::Other;
  switch (get_parallel()) {  // OpenBLAS: 0 = sequential, 1 = pthreads, 2 = OpenMP
    case 0:
      return BlasBackend::OpenBlasSerial;
    case 1:
      return BlasBackend::OpenBlasPthread;
    case 2:
      return BlasBackend::OpenBlasOpenMP;
    default:
      return BlasBackend::Other;
  }
}

void configure_threads(int n, int processes) {
  const BlasBackend backend = detect_blas();
  g_chose_default = n <= 0 && processes <= 1;
  // The processes of a data-parallel run start together, and a sample would count their siblings'
  // start-up as load: they share the cores evenly instead.
  int threads = n;
  if (n <= 0) threads = processes > 1 ? std::max(1, available_cores() / processes) : default_threads();
  if (g_chose_default) g_default = threads;
  const ThreadPlan plan = plan_threads(threads, backend);
  // The OpenMP build's openblas_set_num_threads also sets OpenMP's count, so it goes first and ATen's
  // setting (the same number) last.
  if (auto set_blas = openblas_symbol<SetThreadsFn>("openblas_set_num_threads")) set_blas(plan.blas);
  at::set_num_threads(plan.aten);
}

std::string describe_threads() {
  const BlasBackend backend = detect_blas();
  auto get_blas = openblas_symbol<GetIntFn>("openblas_get_num_threads");
  auto get_config = openblas_symbol<GetConfigFn>("openblas_get_config");
  std::string version;
  if (get_config && backend != BlasBackend::Other) {
    // "OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH ..." -> "OpenBLAS 0.3.21"
    const std::string config = get_config();
    const size_t second_space = config.find(' ', config.find(' ') + 1);
    version = config.substr(0, second_space) + ", ";
  }
  int blas = 1;
  if (backend == BlasBackend::OpenBlasOpenMP) blas = at::get_num_threads();  // the same pool
  if (backend == BlasBackend::OpenBlasPthread && get_blas) blas = get_blas();
  const int cores = available_cores();
  const std::string idle =
      g_chose_default && g_default < cores ? fmt::format(", {} idle at start", g_default) : "";
  return fmt::format("threads: aten={} blas={} of {} core{}{} ({}{})", at::get_num_threads(), blas, cores,
                     cores == 1 ? "" : "s", idle, version, backend_name(backend));
}

}  // namespace qkv
