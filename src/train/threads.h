// Thread settings. libtorch parallelises its own kernels with OpenMP (intra-op threads) and calls BLAS
// for matrix products; a BLAS with its own thread pool on top of OpenMP oversubscribes the cores.
#pragma once

#include <string>

namespace qkv {

// Sets ATen's intra-op thread count and the BLAS thread count. n = 0 chooses for this machine.
void configure_threads(int n);

// One line describing the current settings, for logs ("threads: aten=2 blas=1 (openblas-pthread)").
std::string describe_threads();

}  // namespace qkv
