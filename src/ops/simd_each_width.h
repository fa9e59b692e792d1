// Compiles the vector code of the file QKV_SIMD_FILE once per instruction set of simd_lanes.h, each
// copy in its own namespace (avx512, avx2) with
//   V          the set's struct (simd::Avx512, simd::Avx2);
//   QKV_SIMD   its target attribute (QKV_AVX512, QKV_AVX2).
// Usage, after including ops/simd_lanes.h, inside the namespace that the code belongs to:
//   #define QKV_SIMD_FILE "ops/attention_rows_simd.inc"
//   #include "ops/simd_each_width.h"
// after which avx512::X and avx2::X name the two copies of what the file defines (cpu_simd() says
// which may run). No include guard, on purpose: included once per such file.
#ifndef QKV_SIMD_FILE
#error "define QKV_SIMD_FILE before including ops/simd_each_width.h"
#endif

#if QKV_X86_SIMD
QKV_BEGIN_VECTOR_CODE

namespace avx512 {
using V = simd::Avx512;
#define QKV_SIMD QKV_AVX512
#include QKV_SIMD_FILE
#undef QKV_SIMD
}  // namespace avx512

namespace avx2 {
using V = simd::Avx2;
#define QKV_SIMD QKV_AVX2
#include QKV_SIMD_FILE
#undef QKV_SIMD
}  // namespace avx2

QKV_END_VECTOR_CODE
#endif  // QKV_X86_SIMD

#undef QKV_SIMD_FILE
