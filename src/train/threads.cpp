// Thread settings: see threads.h.
#include "train/threads.h"

#include <dlfcn.h>

#include <thread>

#include <ATen/Parallel.h>
#include <fmt/format.h>

namespace qkv {
namespace {

// OpenBLAS exports these; the generic reference BLAS does not. Looked up at run time because the
// BLAS behind libblas.so.3 is chosen by Debian's alternatives system, not at link time.
using SetThreadsFn = void (*)(int);
using GetThreadsFn = int (*)();
using GetConfigFn = char* (*)();

SetThreadsFn openblas_set_threads() {
  return reinterpret_cast<SetThreadsFn>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
}

}  // namespace

void configure_threads(int n) {
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const int aten = n > 0 ? n : cores;
  at::set_num_threads(aten);
  if (auto set_blas = openblas_set_threads()) set_blas(aten);
}

std::string describe_threads() {
  auto get_blas = reinterpret_cast<GetThreadsFn>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
  auto get_config = reinterpret_cast<GetConfigFn>(dlsym(RTLD_DEFAULT, "openblas_get_config"));
  const std::string blas = get_config ? get_config() : "reference BLAS (install OpenBLAS)";
  return fmt::format("threads: aten={} blas={} ({})", at::get_num_threads(), get_blas ? get_blas() : 1, blas);
}

}  // namespace qkv
