// The fused kernels (fused_kernels.inc) for AVX2 + FMA: 8 lanes. Everything below ICAE_TARGET_FILE
// is compiled for AVX2, so fused_ops.cpp calls it only where simd::cpu_has_avx2().
#include <c10/util/BFloat16.h>
#include <immintrin.h>

#include <cmath>
#include <cstdint>

#include "fused_kernels.h"
#include "simd.h"

ICAE_TARGET_FILE(ICAE_ISA_AVX2)

namespace icae::fused {

constexpr Isa kIsa = Isa::Avx2;

template <>
struct Vec<Isa::Avx2> {
  using Reg = __m256;
  static constexpr int64_t kWidth = 8;
  static Reg load(const float* p) { return _mm256_loadu_ps(p); }
  static Reg load(const c10::BFloat16* p) {  // bf16 is the top half of a float32
    const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
  }
  static void store(float* p, Reg v) { _mm256_storeu_ps(p, v); }
  static void store(c10::BFloat16* p, Reg v) {
    const __m256i r = bf16_bits(v);  // each lane < 2^16, so the unsigned saturating pack is exact
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p),
                     _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1)));
  }
  // v rounded to the element type's precision, kept as float32.
  static Reg round_as(Reg v, const float*) { return v; }
  static Reg round_as(Reg v, const c10::BFloat16*) { return _mm256_castsi256_ps(_mm256_slli_epi32(bf16_bits(v), 16)); }
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
  static float reduce_add(Reg v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
  }

 private:
  // The bf16 bit patterns of v, one per lane: round to nearest even, NaN kept a NaN (as c10).
  static __m256i bf16_bits(Reg v) {
    const __m256i b = _mm256_castps_si256(v);
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(b, 16), _mm256_set1_epi32(1));
    const __m256i r = _mm256_srli_epi32(_mm256_add_epi32(b, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7FFF))), 16);
    const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    return _mm256_blendv_epi8(r, _mm256_set1_epi32(0x7FC0), nan);
  }
  static Reg pow2(__m256i e) {  // 2^e for e in [-126, 127]
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(e, _mm256_set1_epi32(127)), 23));
  }
};

}  // namespace icae::fused

#include "fused_kernels.inc"
