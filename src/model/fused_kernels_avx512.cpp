// The fused kernels (fused_kernels.inc) for AVX-512: 16 lanes. Everything below ICAE_TARGET_FILE
// is compiled for AVX-512, so fused_ops.cpp calls it only where simd::cpu_has_avx512(), and nothing
// that runs unasked (a static initialiser, say) may be defined below it: the test binaries, which
// link this unit, starting on an AVX2 machine show that none is.
#include <c10/util/BFloat16.h>
#include <immintrin.h>

#include <cmath>
#include <cstdint>

#include "fused_kernels.h"
#include "simd.h"

// GCC 12 warns about its own AVX-512 intrinsics (_mm512_undefined_*); nothing here is uninitialised.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
ICAE_TARGET_FILE(ICAE_ISA_AVX512)

namespace icae::fused {

constexpr Isa kIsa = Isa::Avx512;

template <>
struct Vec<Isa::Avx512> {
  using Reg = __m512;
  static constexpr int64_t kWidth = 16;
  static Reg load(const float* p) { return simd::load16(p); }
  static Reg load(const c10::BFloat16* p) { return simd::load16(p); }
  static void store(float* p, Reg v) { simd::store16(p, v); }
  static void store(c10::BFloat16* p, Reg v) { simd::store16(p, v); }
  // v rounded to the element type's precision, kept as float32.
  static Reg round_as(Reg v, const float*) { return v; }
  static Reg round_as(Reg v, const c10::BFloat16*) { return _mm512_castsi512_ps(_mm512_slli_epi32(simd::bf16_bits(v), 16)); }
  static Reg zero() { return _mm512_setzero_ps(); }
  static Reg set1(float x) { return _mm512_set1_ps(x); }
  static Reg add(Reg a, Reg b) { return _mm512_add_ps(a, b); }
  static Reg sub(Reg a, Reg b) { return _mm512_sub_ps(a, b); }
  static Reg mul(Reg a, Reg b) { return _mm512_mul_ps(a, b); }
  static Reg div(Reg a, Reg b) { return _mm512_div_ps(a, b); }
  static Reg min(Reg a, Reg b) { return _mm512_min_ps(a, b); }
  static Reg max(Reg a, Reg b) { return _mm512_max_ps(a, b); }
  static Reg fmadd(Reg a, Reg b, Reg c) { return _mm512_fmadd_ps(a, b, c); }    // a b + c
  static Reg fnmadd(Reg a, Reg b, Reg c) { return _mm512_fnmadd_ps(a, b, c); }  // c - a b
  static Reg round_nearest(Reg v) { return _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static Reg times_pow2(Reg p, Reg n) { return _mm512_scalef_ps(p, n); }  // p 2^n, n integral
  static float reduce_add(Reg v) { return _mm512_reduce_add_ps(v); }
};

}  // namespace icae::fused

#include "fused_kernels.inc"
