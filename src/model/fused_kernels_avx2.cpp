// The fused kernels (fused_kernels.inc) for AVX2 + FMA: 8 lanes. Everything below the pragma is
// compiled for AVX2, so fused_ops.cpp calls it only where simd::cpu_has_avx2().
#include <c10/util/BFloat16.h>
#include <immintrin.h>

#include <cmath>
#include <cstdint>

#include "fused_kernels.h"
#include "simd.h"

#pragma GCC target("avx2,fma")

namespace icae::fused {

constexpr Isa kIsa = Isa::Avx2;

template <>
struct Vec<Isa::Avx2> {
  using Reg = __m256;
  static constexpr int64_t kWidth = 8;
  static Reg load(const float* p) { return simd::load8(p); }
  static Reg load(const c10::BFloat16* p) { return simd::load8(p); }
  static void store(float* p, Reg v) { simd::store8(p, v); }
  static void store(c10::BFloat16* p, Reg v) { simd::store8(p, v); }
  // v rounded to the element type's precision, kept as float32.
  static Reg round_as(Reg v, const float*) { return v; }
  static Reg round_as(Reg v, const c10::BFloat16*) { return _mm256_castsi256_ps(_mm256_slli_epi32(simd::bf16_bits8(v), 16)); }
  static Reg zero() { return _mm256_setzero_ps(); }
  static Reg set1(float x) { return _mm256_set1_ps(x); }
  static Reg add(Reg a, Reg b) { return _mm256_add_ps(a, b); }
  static Reg sub(Reg a, Reg b) { return _mm256_sub_ps(a, b); }
  static Reg mul(Reg a, Reg b) { return _mm256_mul_ps(a, b); }
  static Reg div(Reg a, Reg b) { return _mm256_div_ps(a, b); }
  static Reg min(Reg a, Reg b) { return _mm256_min_ps(a, b); }
  static Reg max(Reg a, Reg b) { return _mm256_max_ps(a, b); }
  static Reg fmadd(Reg a, Reg b, Reg c) { return _mm256_fmadd_ps(a, b, c); }    // a b + c
  static Reg fnmadd(Reg a, Reg b, Reg c) { return _mm256_fnmadd_ps(a, b, c); }  // c - a b
  static Reg round_nearest(Reg v) { return _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  // p 2^n for integral n in [-150, 128] (exp's clamped range): AVX2 has no scalef, so 2^n is two
  // factors, each inside the exponent field.
  static Reg times_pow2(Reg p, Reg n) {
    const __m256i ni = _mm256_cvtps_epi32(n), half = _mm256_srai_epi32(ni, 1);
    return mul(mul(p, pow2(half)), pow2(_mm256_sub_epi32(ni, half)));
  }
  static float reduce_add(Reg v) { return simd::reduce_add8(v); }

 private:
  static Reg pow2(__m256i e) {  // 2^e for e in [-126, 127]
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(e, _mm256_set1_epi32(127)), 23));
  }
};

}  // namespace icae::fused

#include "fused_kernels.inc"
