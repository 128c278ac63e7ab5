// What this CPU can run, the instruction sets the hand-written CPU kernels are compiled for, and
// 16 float32 lanes loaded from / stored to float32 or bfloat16 with AVX-512: the pieces the
// kernels (quant_matrix.cpp, cpu_decode.cpp, fused_kernels_*.cpp) share.
//
// One way to compile a kernel for an instruction set: the project is compiled for baseline
// x86-64; a kernel function carries ICAE_TARGET(ICAE_ISA_...), and a file compiled whole for one
// set (fused_kernels_avx2/avx512.cpp, each compiling fused_kernels.inc once) says
// ICAE_TARGET_FILE(ICAE_ISA_...) after its includes. Either runs only after the matching
// cpu_has_*() below said yes. The sets are named here and nowhere else.
#pragma once
#include <c10/util/BFloat16.h>
#include <immintrin.h>

// AVX2 with FMA and F16C (every AVX2 CPU has both); the AVX-512 subset every AVX-512 kernel may
// use (all AVX-512 CPUs with BW also have DQ: Skylake-SP on); and that with VNNI (Cascade Lake on).
#define ICAE_ISA_AVX2 "avx2,fma,f16c"
#define ICAE_ISA_AVX512 "avx512f,avx512bw,avx512dq,fma,f16c"
#define ICAE_ISA_AVX512_VNNI "avx512f,avx512bw,avx512dq,avx512vnni,fma,f16c"
#define ICAE_TARGET(isa) __attribute__((target(isa)))
#define ICAE_PRAGMA_(text) _Pragma(#text)
#define ICAE_TARGET_FILE(isa) ICAE_PRAGMA_(GCC target(isa))
// The one used most: an AVX-512 kernel function.
#define ICAE_AVX512 ICAE_TARGET(ICAE_ISA_AVX512)

namespace icae::simd {

// Feature checks, answered once per process.
inline bool cpu_has_avx512() {
  static const bool yes = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("fma") &&
                          __builtin_cpu_supports("f16c");
  return yes;
}
inline bool cpu_has_avx2() {
  static const bool yes =
      __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
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

}  // namespace icae::simd
