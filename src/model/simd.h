// What this CPU can run, and 16 float32 lanes loaded from / stored to float32 or bfloat16 with
// AVX-512: the pieces the hand-written CPU kernels (quant_matrix.cpp, cpu_decode.cpp,
// fused_ops.cpp) share. The project is compiled for baseline x86-64, so each AVX-512 function
// carries ICAE_AVX512 and is only called after cpu_has_avx512() said yes.
#pragma once
#include <c10/util/BFloat16.h>
#include <immintrin.h>

// The AVX-512 subset every kernel may use (all AVX-512 CPUs with BW also have DQ: Skylake-SP on).
#define ICAE_AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,fma")))
// AVX2 kernels (Haswell, AMD Zen on), called only after cpu_has_avx2() said yes.
#define ICAE_AVX2 __attribute__((target("avx2,fma")))

namespace icae::simd {

// Feature checks, answered once per process.
inline bool cpu_has_avx512() {
  static const bool yes = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("fma");
  return yes;
}
inline bool cpu_has_avx2() {
  static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return yes;
}
inline bool cpu_has_vnni() {
  static const bool yes = cpu_has_avx512() && __builtin_cpu_supports("avx512vnni");
  return yes;
}

// --- 16 lanes of float32 from/to float32 or bf16 (round to nearest even, NaN kept a NaN: as c10).
ICAE_AVX512 inline __m512 load16(const float* p) { return _mm512_loadu_ps(p); }
ICAE_AVX512 inline __m512 load16(const c10::BFloat16* p) {
  // bf16 is the top half of a float32.
  const __m512i wide = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  return _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16));
}
// The bf16 bit patterns of v, one per 32-bit lane.
ICAE_AVX512 inline __m512i bf16_bits(__m512 v) {
  const __m512i b = _mm512_castps_si512(v);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(b, 16), _mm512_set1_epi32(1));
  __m512i r = _mm512_srli_epi32(_mm512_add_epi32(b, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7FFF))), 16);
  return _mm512_mask_mov_epi32(r, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), _mm512_set1_epi32(0x7FC0));
}
ICAE_AVX512 inline void store16(float* p, __m512 v) { _mm512_storeu_ps(p, v); }
ICAE_AVX512 inline void store16(c10::BFloat16* p, __m512 v) {
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtepi32_epi16(bf16_bits(v)));
}

// --- 8 lanes of float32 from/to float32 or bf16 with AVX2 (same rounding as above).
ICAE_AVX2 inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
ICAE_AVX2 inline __m256 load8(const c10::BFloat16* p) {
  const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
}
ICAE_AVX2 inline __m256i bf16_bits8(__m256 v) {
  const __m256i b = _mm256_castps_si256(v);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(b, 16), _mm256_set1_epi32(1));
  const __m256i r = _mm256_srli_epi32(_mm256_add_epi32(b, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7FFF))), 16);
  const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
  return _mm256_blendv_epi8(r, _mm256_set1_epi32(0x7FC0), nan);
}
ICAE_AVX2 inline void store8(float* p, __m256 v) { _mm256_storeu_ps(p, v); }
ICAE_AVX2 inline void store8(c10::BFloat16* p, __m256 v) {
  const __m256i r = bf16_bits8(v);  // each lane < 2^16, so the unsigned saturating pack is exact
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p),
                   _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1)));
}
ICAE_AVX2 inline float reduce_add8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

}  // namespace icae::simd
