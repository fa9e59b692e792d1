// This machine's matrix-product rate, measured in the run that reports against it (qkv bench
// attention, qkv bench train): C = A B with 2048×2048 float32 matrices, the median of a few runs,
// once through libtorch (torch::mm: the BLAS behind libblas.so.3) and once through oneDNN's sgemm
// (qkv::sgemm, what the model's products use when libtorch carries it).
#pragma once

#include <string>

namespace qkv {

struct SgemmRates {
  double blas = 0.0;    // GFLOP/s through torch::mm
  double onednn = 0.0;  // GFLOP/s through oneDNN's sgemm; 0 when libtorch has no oneDNN C API
  double best() const { return blas > onednn ? blas : onednn; }
  // "sgemm: BLAS 241.3, oneDNN 455.0 GFLOP/s (2048x2048 float32, median of 5, this run)"
  std::string describe() const;
};

SgemmRates measure_sgemm(int repetitions = 5);

}  // namespace qkv
