// The row kernels behind fused_ops.cpp, written once (fused_kernels.inc) over a vector type and
// compiled twice: for AVX-512 (fused_kernels_avx512.cpp) and for AVX2 (fused_kernels_avx2.cpp),
// each translation unit under its own ICAE_TARGET_FILE (simd.h). fused_ops.cpp picks one per CPU.
// Each takes a range of rows [r0, r1) so that at::parallel_for can split the work.
#pragma once
#include <c10/util/BFloat16.h>

#include <cstdint>

namespace icae::fused {

enum class Isa { Avx2, Avx512 };

// kWidth float32 lanes and the operations the kernels use; specialised by each ISA's unit.
template <Isa I>
struct Vec;

// RMSNorm rows of x [.., h]: y = round_T(x * r) * w, r[row] = 1 / sqrt(mean(x^2) + eps) kept.
template <Isa I, typename T>
void rms_norm_range(const T* x, const T* w, T* y, float* r, int64_t h, float eps, int64_t r0, int64_t r1);
// gx = r gn - x r^3 (gn . x) / h, with gn = round_T(gy * w) (ATen's product backward).
template <Isa I, typename T>
void rms_norm_backward_range(const T* x, const T* w, const T* gy, const float* r, T* gx, int64_t h, int64_t r0,
                             int64_t r1);
// y = round_T(silu(g)) * u over rows of [g | u] (2 inter wide).
template <Isa I, typename T>
void swiglu_range(const T* gu, T* y, int64_t inter, int64_t r0, int64_t r1);
// grad_u = gy * round_T(silu(g)); grad_g = round_T(gy * u) * s (1 + g (1 - s)), s = sigmoid(g).
template <Isa I, typename T>
void swiglu_backward_range(const T* gu, const T* gy, T* ggu, int64_t inter, int64_t r0, int64_t r1);

}  // namespace icae::fused
