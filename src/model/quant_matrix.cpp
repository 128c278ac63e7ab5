#include "icae/model/quant_matrix.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/Half.h>
#include <immintrin.h>

// GCC 12 warns about its own AVX-512 intrinsics (_mm512_undefined_ps); nothing here is uninitialised.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "icae/model/decode_pool.h"
#include "icae/util/error.h"
#include "simd.h"

namespace icae {

int64_t quant_block_bytes(QuantFormat f) { return f == QuantFormat::Q4_1 ? 20 : 34; }
const char* quant_format_name(QuantFormat f) { return f == QuantFormat::Q4_1 ? "Q4_1" : "Q8_0"; }

namespace {

constexpr int64_t kGroup = 4;  // rows interleaved per stream
// How far ahead of the block group being read the kernels prefetch. The hardware prefetcher
// alone leaves a single thread waiting on memory: on the AVX-512 EPYC (2026-12-02, SmolLM2,
// 1 thread, int8-vnni) 640 bytes ahead decoded at 5.2 ms/token, 4-12 KB ahead at 3.5-3.8.
constexpr int64_t kPrefetchBytes = 4096;
// split_activation_digits: per block 4 digits x 2 halves of 16 activations, each half written 4
// times over (64 bytes), as the kernel's 128-bit lanes read it: a plain load per vpdpbusd, where
// broadcasting each 16 bytes inside the kernel (vbroadcasti32x4) would cost a shuffle per vpdpbusd.
constexpr int64_t kDigitBlockBytes = 4 * 2 * 64;

// Prefetches every cache line of the block group kPrefetchBytes ahead of p: one group is 80 or 136
// bytes, so one prefetch per group (as before 2026-12-02) left every fifth (Q4_1) or every other
// (Q8_0) line to the hardware prefetcher. Stepping back from the group's last byte in 64s
// reaches each line of the contiguous stream at least once.
template <int64_t GroupBytes>
inline void prefetch_group(const uint8_t* p) {
  for (int64_t off = GroupBytes - 1; off >= 0; off -= 64)
    _mm_prefetch(reinterpret_cast<const char*>(p + kPrefetchBytes + off), _MM_HINT_T0);
}

int64_t quant_bytes(QuantFormat f) { return f == QuantFormat::Q4_1 ? 16 : 32; }
// Bytes of one block group: 4 rows' quants, 4 scales, (4 mins).
int64_t group_bytes(QuantFormat f) {
  return kGroup * quant_bytes(f) + kGroup * 2 * (f == QuantFormat::Q4_1 ? 2 : 1);
}

// Weight j (0..31) of one block's quants.
inline float weight_at(QuantFormat f, const uint8_t* q, int j) {
  if (f == QuantFormat::Q4_1) return static_cast<float>(j < 16 ? (q[j] & 0xF) : (q[j - 16] >> 4));
  return static_cast<float>(static_cast<int8_t>(q[j]));
}

// A block group's f16 scales (and Q4_1's mins after them) as floats: out[0..3] scales, out[4..7] mins.
inline float half_at(const uint8_t* p) {
  uint16_t bits;
  std::memcpy(&bits, p, 2);
  return static_cast<float>(c10::Half(bits, c10::Half::from_bits()));
}
inline void scales_of(const uint8_t* p, bool with_mins, float* out) {
  for (int k = 0; k < (with_mins ? 2 : 1) * kGroup; ++k) out[k] = half_at(p + 2 * k);
}
// The same for the vector kernels: 4 f16 values at p as 4 floats (F16C).
ICAE_TARGET(ICAE_ISA_AVX2) inline __m128 halves4(const uint8_t* p) {
  return _mm_cvtph_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
}

struct KernelArgs {
  const QuantMatrix* w;
  const float* x;     // [n, cols]
  const float* xsum;  // [n, blocks]: per-block sums of x, for Q4_1's min term
  int64_t n;
  float* y;           // [n, rows]
  // The int8 kernels' activations (quantise_activations): x ~ xd[block] * xq.
  const int8_t* xq = nullptr;  // [n, cols]
  const float* xd = nullptr;   // [n, blocks]
};

// Portable version: groups [g0, g1) of 4 rows.
void groups_scalar(const KernelArgs& a, int64_t g0, int64_t g1) {
  const QuantMatrix& w = *a.w;
  const int64_t blocks = w.cols / kQuantBlock, gb = group_bytes(w.format), qb = quant_bytes(w.format);
  const bool q4 = w.format == QuantFormat::Q4_1;
  const uint8_t* packed = w.packed.data_ptr<uint8_t>();
  for (int64_t g = g0; g < g1; ++g)
    for (int64_t v = 0; v < a.n; ++v) {
      float acc[kGroup] = {0, 0, 0, 0};
      for (int64_t b = 0; b < blocks; ++b) {
        const uint8_t* p = packed + (g * blocks + b) * gb;
        float sc[2 * kGroup];
        scales_of(p + kGroup * qb, q4, sc);
        const float* xb = a.x + v * w.cols + b * kQuantBlock;
        for (int k = 0; k < kGroup; ++k) {
          float dot = 0;
          for (int j = 0; j < 32; ++j) dot += weight_at(w.format, p + k * qb, j) * xb[j];
          acc[k] += sc[k] * dot + (q4 ? sc[kGroup + k] * a.xsum[v * blocks + b] : 0.0f);
        }
      }
      for (int k = 0; k < kGroup; ++k)
        if (g * kGroup + k < w.rows) a.y[v * w.rows + g * kGroup + k] = acc[k];
    }
}

// AVX-512: the 32 weights of a block become two 16-lane float vectors; the loads of x are shared
// by the 4 rows of a group, which are read as one sequential stream.
template <bool Q4>
ICAE_TARGET(ICAE_ISA_AVX512) void groups_avx512_t(const KernelArgs& a, int64_t g0, int64_t g1) {
  const QuantMatrix& w = *a.w;
  const int64_t blocks = w.cols / kQuantBlock;
  constexpr int64_t qb = Q4 ? 16 : 32, gb = kGroup * qb + kGroup * 2 * (Q4 ? 2 : 1);
  const uint8_t* packed = static_cast<const uint8_t*>(w.packed.data_ptr());
  for (int64_t g = g0; g < g1; ++g)
    for (int64_t v = 0; v < a.n; ++v) {
      const float* xv = a.x + v * w.cols;
      const float* xs = a.xsum + v * blocks;
      __m512 acc[kGroup];
      for (int k = 0; k < kGroup; ++k) acc[k] = _mm512_setzero_ps();
      __m128 mins = _mm_setzero_ps();
      const uint8_t* p = packed + g * blocks * gb;
      for (int64_t b = 0; b < blocks; ++b, p += gb) {
        prefetch_group<gb>(p);
        const __m512 x0 = _mm512_loadu_ps(xv + b * kQuantBlock), x1 = _mm512_loadu_ps(xv + b * kQuantBlock + 16);
        const uint8_t* sc = p + kGroup * qb;  // 4 f16 scales (then 4 f16 mins)
        alignas(16) float sk[kGroup];
        _mm_store_ps(sk, halves4(sc));
        for (int k = 0; k < kGroup; ++k) {
          __m512 lo, hi;
          if (Q4) {
            const __m512i q = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + k * qb)));
            lo = _mm512_cvtepi32_ps(_mm512_and_si512(q, _mm512_set1_epi32(0xF)));  // weights 0..15
            hi = _mm512_cvtepi32_ps(_mm512_srli_epi32(q, 4));                       // weights 16..31
          } else {
            lo = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + k * qb))));
            hi = _mm512_cvtepi32_ps(
                _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + k * qb + 16))));
          }
          const __m512 t = _mm512_fmadd_ps(hi, x1, _mm512_mul_ps(lo, x0));
          acc[k] = _mm512_fmadd_ps(t, _mm512_set1_ps(sk[k]), acc[k]);
        }
        if (Q4) mins = _mm_fmadd_ps(halves4(sc + 2 * kGroup), _mm_set1_ps(xs[b]), mins);
      }
      float m[kGroup];
      _mm_storeu_ps(m, mins);
      for (int k = 0; k < kGroup; ++k)
        if (g * kGroup + k < w.rows) a.y[v * w.rows + g * kGroup + k] = _mm512_reduce_add_ps(acc[k]) + m[k];
    }
}

void groups_avx512(const KernelArgs& a, int64_t g0, int64_t g1) {
  if (a.w->format == QuantFormat::Q4_1) groups_avx512_t<true>(a, g0, g1);
  else groups_avx512_t<false>(a, g0, g1);
}

// AVX2 + FMA (CPUs without AVX-512, e.g. most AMD EPYC before Zen 4): the same scheme with four
// 8-lane vectors per block. Q4_1's byte i holds weight i (low nibble) and weight i + 16 (high).
ICAE_TARGET(ICAE_ISA_AVX2) inline float hsum_avx2(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}

template <bool Q4>
ICAE_TARGET(ICAE_ISA_AVX2) void groups_avx2_t(const KernelArgs& a, int64_t g0, int64_t g1) {
  const QuantMatrix& w = *a.w;
  const int64_t blocks = w.cols / kQuantBlock;
  constexpr int64_t qb = Q4 ? 16 : 32, gb = kGroup * qb + kGroup * 2 * (Q4 ? 2 : 1);
  const uint8_t* packed = static_cast<const uint8_t*>(w.packed.data_ptr());
  const __m256i low4 = _mm256_set1_epi32(0xF);
  for (int64_t g = g0; g < g1; ++g)
    for (int64_t v = 0; v < a.n; ++v) {
      const float* xv = a.x + v * w.cols;
      const float* xs = a.xsum + v * blocks;
      __m256 acc[kGroup];
      for (int k = 0; k < kGroup; ++k) acc[k] = _mm256_setzero_ps();
      __m128 mins = _mm_setzero_ps();
      const uint8_t* p = packed + g * blocks * gb;
      for (int64_t b = 0; b < blocks; ++b, p += gb) {
        prefetch_group<gb>(p);
        const float* xb = xv + b * kQuantBlock;
        const __m256 x0 = _mm256_loadu_ps(xb), x1 = _mm256_loadu_ps(xb + 8), x2 = _mm256_loadu_ps(xb + 16),
                     x3 = _mm256_loadu_ps(xb + 24);
        const uint8_t* sc = p + kGroup * qb;  // 4 f16 scales (then 4 f16 mins)
        alignas(16) float sk[kGroup];
        _mm_store_ps(sk, halves4(sc));
        for (int k = 0; k < kGroup; ++k) {
          const uint8_t* q = p + k * qb;
          __m256 w0, w1, w2, w3;
          if (Q4) {
            const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q));
            const __m256i b0 = _mm256_cvtepu8_epi32(bytes), b1 = _mm256_cvtepu8_epi32(_mm_srli_si128(bytes, 8));
            w0 = _mm256_cvtepi32_ps(_mm256_and_si256(b0, low4));   // weights 0..7
            w1 = _mm256_cvtepi32_ps(_mm256_and_si256(b1, low4));   // 8..15
            w2 = _mm256_cvtepi32_ps(_mm256_srli_epi32(b0, 4));     // 16..23
            w3 = _mm256_cvtepi32_ps(_mm256_srli_epi32(b1, 4));     // 24..31
          } else {
            const __m128i lo = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q)),
                          hi = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q + 16));
            w0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo));
            w1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8)));
            w2 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi));
            w3 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8)));
          }
          const __m256 t = _mm256_fmadd_ps(w3, x3, _mm256_fmadd_ps(w2, x2, _mm256_fmadd_ps(w1, x1, _mm256_mul_ps(w0, x0))));
          acc[k] = _mm256_fmadd_ps(t, _mm256_set1_ps(sk[k]), acc[k]);
        }
        if (Q4) mins = _mm_fmadd_ps(halves4(sc + 2 * kGroup), _mm_set1_ps(xs[b]), mins);
      }
      float m[kGroup];
      _mm_storeu_ps(m, mins);
      for (int k = 0; k < kGroup; ++k)
        if (g * kGroup + k < w.rows) a.y[v * w.rows + g * kGroup + k] = hsum_avx2(acc[k]) + m[k];
    }
}

void groups_avx2(const KernelArgs& a, int64_t g0, int64_t g1) {
  if (a.w->format == QuantFormat::Q4_1) groups_avx2_t<true>(a, g0, g1);
  else groups_avx2_t<false>(a, g0, g1);
}

// --- Kernels on 8-bit activations -------------------------------------------------------------
// Each block of 32 activations becomes int8 with one float scale (round to nearest, scale
// max|x| / 127), as llama.cpp's Q8_0 / Q8_1 activations do, so a block's dot product with the
// weights' quants is an exact integer sum: y = sum_b d_w d_x (q . xq) [+ m_w sum_b x]. Q4_1's min
// term uses the exact float sums of x. This rounds the activations (relative error ~ 1/254 per
// block), unlike the float kernels above; in exchange one instruction multiplies 32-64 pairs.

// Portable reference of the same arithmetic, for the tests and CPUs without AVX2.
void groups_int8_scalar(const KernelArgs& a, int64_t g0, int64_t g1) {
  const QuantMatrix& w = *a.w;
  const int64_t blocks = w.cols / kQuantBlock, gb = group_bytes(w.format), qb = quant_bytes(w.format);
  const bool q4 = w.format == QuantFormat::Q4_1;
  const uint8_t* packed = w.packed.data_ptr<uint8_t>();
  for (int64_t g = g0; g < g1; ++g)
    for (int64_t v = 0; v < a.n; ++v) {
      float acc[kGroup] = {0, 0, 0, 0};
      for (int64_t b = 0; b < blocks; ++b) {
        const uint8_t* p = packed + (g * blocks + b) * gb;
        float sc[2 * kGroup];
        scales_of(p + kGroup * qb, q4, sc);
        const int8_t* xb = a.xq + v * w.cols + b * kQuantBlock;
        const float xd = a.xd[v * blocks + b];
        for (int k = 0; k < kGroup; ++k) {
          int32_t dot = 0;
          for (int j = 0; j < 32; ++j) dot += static_cast<int32_t>(weight_at(w.format, p + k * qb, j)) * xb[j];
          acc[k] += sc[k] * xd * static_cast<float>(dot) + (q4 ? sc[kGroup + k] * a.xsum[v * blocks + b] : 0.0f);
        }
      }
      for (int k = 0; k < kGroup; ++k)
        if (g * kGroup + k < w.rows) a.y[v * w.rows + g * kGroup + k] = acc[k];
    }
}

// AVX2: vpmaddubsw (unsigned x signed bytes -> pairs of int16) then vpmaddwd with ones. Q4_1's
// quants are 0..15, so the int16 pairs cannot saturate; Q8_0 moves the weights' signs onto the
// activations (|w| x sign(w) x) so that the unsigned operand is |w| <= 128: 2 x 128 x 127 < 2^15.
template <bool Q4>
ICAE_TARGET(ICAE_ISA_AVX2) void groups_int8_avx2_t(const KernelArgs& a, int64_t g0, int64_t g1) {
  const QuantMatrix& w = *a.w;
  const int64_t blocks = w.cols / kQuantBlock;
  constexpr int64_t qb = Q4 ? 16 : 32, gb = kGroup * qb + kGroup * 2 * (Q4 ? 2 : 1);
  const uint8_t* packed = static_cast<const uint8_t*>(w.packed.data_ptr());
  const __m128i low4 = _mm_set1_epi8(0x0F);
  const __m256i ones = _mm256_set1_epi16(1);
  for (int64_t g = g0; g < g1; ++g)
    for (int64_t v = 0; v < a.n; ++v) {
      const int8_t* xv = a.xq + v * w.cols;
      const float* xd = a.xd + v * blocks;
      const float* xs = a.xsum + v * blocks;
      __m256 acc[kGroup];
      for (int k = 0; k < kGroup; ++k) acc[k] = _mm256_setzero_ps();
      __m128 mins = _mm_setzero_ps();
      const uint8_t* p = packed + g * blocks * gb;
      for (int64_t b = 0; b < blocks; ++b, p += gb) {
        prefetch_group<gb>(p);
        const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xv + b * kQuantBlock));
        const uint8_t* sc = p + kGroup * qb;  // 4 f16 scales (then 4 f16 mins)
        const __m128 scale = _mm_mul_ps(halves4(sc), _mm_set1_ps(xd[b]));
        alignas(16) float sk[kGroup];
        _mm_store_ps(sk, scale);
        for (int k = 0; k < kGroup; ++k) {
          __m256i prod;
          if (Q4) {
            const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + k * qb));
            // Byte i holds weight i (low nibble) and weight i + 16 (high): [0..15 | 16..31].
            const __m256i q = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(raw, 4), low4), _mm_and_si128(raw, low4));
            prod = _mm256_maddubs_epi16(q, x);
          } else {
            const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + k * qb));
            prod = _mm256_maddubs_epi16(_mm256_sign_epi8(q, q), _mm256_sign_epi8(x, q));
          }
          const __m256 dot = _mm256_cvtepi32_ps(_mm256_madd_epi16(prod, ones));
          acc[k] = _mm256_fmadd_ps(dot, _mm256_set1_ps(sk[k]), acc[k]);
        }
        if (Q4) mins = _mm_fmadd_ps(halves4(sc + 2 * kGroup), _mm_set1_ps(xs[b]), mins);
      }
      float m[kGroup];
      _mm_storeu_ps(m, mins);
      for (int k = 0; k < kGroup; ++k)
        if (g * kGroup + k < w.rows) a.y[v * w.rows + g * kGroup + k] = hsum_avx2(acc[k]) + m[k];
    }
}

void groups_int8_avx2(const KernelArgs& a, int64_t g0, int64_t g1) {
  if (a.w->format == QuantFormat::Q4_1) groups_int8_avx2_t<true>(a, g0, g1);
  else groups_int8_avx2_t<false>(a, g0, g1);
}

// AVX-512 VNNI: vpdpbusd multiplies 64 byte pairs and adds them in fours into 16 int32 lanes.
// Q4_1: one 64-byte load is a block of all 4 rows of a group (16 bytes each), so one register
// holds weights 0..15 of the 4 rows (low nibbles) and another weights 16..31 (high nibbles), each
// against x's 16 bytes broadcast to the four 128-bit lanes: 128-bit lane k sums row k.
// Q8_0: two 64-byte loads (rows 0-1, rows 2-3), x's 32 bytes broadcast to both 256-bit halves,
// and the weights' signs moved onto x as in the AVX2 kernel.
template <bool Q4>
ICAE_TARGET(ICAE_ISA_AVX512_VNNI) void groups_int8_vnni_t(const KernelArgs& a, int64_t g0,
                                                                                     int64_t g1) {
  const QuantMatrix& w = *a.w;
  const int64_t blocks = w.cols / kQuantBlock;
  constexpr int64_t qb = Q4 ? 16 : 32, gb = kGroup * qb + kGroup * 2 * (Q4 ? 2 : 1);
  const uint8_t* packed = static_cast<const uint8_t*>(w.packed.data_ptr());
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  // Lane i of the scale vector takes row i / 4's scale (Q4_1) or i / 8 and 2 + i / 8 (Q8_0).
  const __m512i by4 = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
  const __m512i by8lo = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
  const __m512i by8hi = _mm512_set_epi32(3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2);
  for (int64_t g = g0; g < g1; ++g)
    for (int64_t v = 0; v < a.n; ++v) {
      const int8_t* xv = a.xq + v * w.cols;
      const float* xd = a.xd + v * blocks;
      const float* xs = a.xsum + v * blocks;
      __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
      __m128 mins = _mm_setzero_ps();
      const uint8_t* p = packed + g * blocks * gb;
      for (int64_t b = 0; b < blocks; ++b, p += gb) {
        prefetch_group<gb>(p);
        const uint8_t* sc = p + kGroup * qb;  // 4 f16 scales (then 4 f16 mins)
        const __m512 scale =
            _mm512_mul_ps(_mm512_castps128_ps512(halves4(sc)), _mm512_set1_ps(xd[b]));  // lanes 0..3 used
        if (Q4) {
          const __m512i raw = _mm512_loadu_si512(p);
          const __m512i lo = _mm512_and_si512(raw, low4), hi = _mm512_and_si512(_mm512_srli_epi16(raw, 4), low4);
          const __m512i x0 = _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(xv + b * 32)));
          const __m512i x1 =
              _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(xv + b * 32 + 16)));
          const __m512i dot = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, x0), hi, x1);
          acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_permutexvar_ps(by4, scale), acc0);
          mins = _mm_fmadd_ps(halves4(sc + 2 * kGroup), _mm_set1_ps(xs[b]), mins);
        } else {
          const __m512i x =
              _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(xv + b * 32)));
          const __m512i q01 = _mm512_loadu_si512(p), q23 = _mm512_loadu_si512(p + 64);
          const __m512i x01 = _mm512_mask_sub_epi8(x, _mm512_movepi8_mask(q01), _mm512_setzero_si512(), x);
          const __m512i x23 = _mm512_mask_sub_epi8(x, _mm512_movepi8_mask(q23), _mm512_setzero_si512(), x);
          const __m512i d01 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_abs_epi8(q01), x01);
          const __m512i d23 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_abs_epi8(q23), x23);
          acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d01), _mm512_permutexvar_ps(by8lo, scale), acc0);
          acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d23), _mm512_permutexvar_ps(by8hi, scale), acc1);
        }
      }
      alignas(64) float l0[16], l1[16];
      _mm512_store_ps(l0, acc0);
      _mm512_store_ps(l1, acc1);
      float m[kGroup];
      _mm_storeu_ps(m, mins);
      for (int k = 0; k < kGroup; ++k) {
        float sum = 0;
        if (Q4) {
          for (int i = 0; i < 4; ++i) sum += l0[4 * k + i];
        } else {
          const float* l = k < 2 ? l0 : l1;
          for (int i = 0; i < 8; ++i) sum += l[8 * (k % 2) + i];
        }
        if (g * kGroup + k < w.rows) a.y[v * w.rows + g * kGroup + k] = sum + (Q4 ? m[k] : 0.0f);
      }
    }
}

void groups_int8_vnni(const KernelArgs& a, int64_t g0, int64_t g1) {
  if (a.w->format == QuantFormat::Q4_1) groups_int8_vnni_t<true>(a, g0, g1);
  else groups_int8_vnni_t<false>(a, g0, g1);
}

// --- Kernels on fixed-point activations -----------------------------------------------------
// AVX-512 VNNI at float32 accuracy: each block of 32 activations becomes integers X = x / u for a
// power of two u (so x = X u exactly wherever x has no bits below u), |X| <= 127 * 2^21, written
// as four signed base-128 digits X = a0 2^21 + a1 2^14 + a2 2^7 + a3 (split_activation_digits).
// Every activation within 8x of its block's maximum is kept exactly, every other one to within
// max / (127 2^21) (about 2^-28 of the maximum): the products with the weights' quants are exact integer sums, as in the
// int8 kernel, at 4 x vpdpbusd per pair of 64 bytes instead of 1 (still half the instructions of
// the float kernel). Q4_1 only (quants 0..15 are vpdpbusd's unsigned operand); Q8_0's signed
// quants would need their signs moved onto every digit, which costs what the float kernel costs,
// so Q8_0 matrices take the float kernel.
ICAE_TARGET(ICAE_ISA_AVX512_VNNI) void groups_fixed_vnni_q4(const KernelArgs& a, int64_t g0,
                                                                                       int64_t g1) {
  const QuantMatrix& w = *a.w;
  const int64_t blocks = w.cols / kQuantBlock;
  constexpr int64_t qb = 16, gb = kGroup * qb + kGroup * 4;
  const uint8_t* packed = static_cast<const uint8_t*>(w.packed.data_ptr());
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  const __m512i by4 = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
  const __m512 two14 = _mm512_set1_ps(16384.0f);
  for (int64_t g = g0; g < g1; ++g)
    for (int64_t v = 0; v < a.n; ++v) {
      const int8_t* dv = a.xq + v * blocks * kDigitBlockBytes;
      const float* unit = a.xd + v * blocks;
      const float* xs = a.xsum + v * blocks;
      __m512 acc = _mm512_setzero_ps();
      __m128 mins = _mm_setzero_ps();
      const uint8_t* p = packed + g * blocks * gb;
      for (int64_t b = 0; b < blocks; ++b, p += gb) {
        prefetch_group<gb>(p);
        const uint8_t* sc = p + kGroup * qb;  // 4 f16 scales, then 4 f16 mins
        const __m512i raw = _mm512_loadu_si512(p);
        const __m512i lo = _mm512_and_si512(raw, low4), hi = _mm512_and_si512(_mm512_srli_epi16(raw, 4), low4);
        const int8_t* d = dv + b * kDigitBlockBytes;  // digit k of x[0..15] at 128k, of x[16..31] at 128k + 64
#define digit(k, half) _mm512_loadu_si512(d + 128 * (k) + 64 * (half))
        // 128-bit lane k sums row k. a0 2^7 + a1 and a2 2^7 + a3 stay below 2^21 in every lane,
        // so both convert to float exactly; one rounding joins them.
        __m512i high = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, digit(0, 0)), hi, digit(0, 1));
        high = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_slli_epi32(high, 7), lo, digit(1, 0)), hi, digit(1, 1));
        __m512i low = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, digit(2, 0)), hi, digit(2, 1));
        low = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_slli_epi32(low, 7), lo, digit(3, 0)), hi, digit(3, 1));
#undef digit
        const __m512 dot = _mm512_fmadd_ps(_mm512_cvtepi32_ps(high), two14, _mm512_cvtepi32_ps(low));
        const __m512 scale = _mm512_castps128_ps512(_mm_mul_ps(halves4(sc), _mm_set1_ps(unit[b])));
        acc = _mm512_fmadd_ps(dot, _mm512_permutexvar_ps(by4, scale), acc);
        mins = _mm_fmadd_ps(halves4(sc + 2 * kGroup), _mm_set1_ps(xs[b]), mins);
      }
      alignas(64) float l[16];
      _mm512_store_ps(l, acc);
      float m[kGroup];
      _mm_storeu_ps(m, mins);
      for (int k = 0; k < kGroup; ++k)
        if (g * kGroup + k < w.rows) a.y[v * w.rows + g * kGroup + k] = l[4 * k] + l[4 * k + 1] + l[4 * k + 2] + l[4 * k + 3] + m[k];
    }
}

void groups_fixed_vnni(const KernelArgs& a, int64_t g0, int64_t g1) {
  if (a.w->format == QuantFormat::Q4_1) groups_fixed_vnni_q4(a, g0, g1);
  else groups_avx512_t<false>(a, g0, g1);
}

// The digits for groups_fixed_vnni_q4 (and the tests), 16 activations at a time.
ICAE_TARGET(ICAE_ISA_AVX512) void split_digits_avx512(const float* x, int64_t blocks, int8_t* digits,
                                                                     float* unit) {
  const __m512i c64 = _mm512_set1_epi32(64), c127 = _mm512_set1_epi32(127);
  for (int64_t b = 0; b < blocks; ++b) {
    const float* xb = x + b * kQuantBlock;
    int8_t* out = digits + b * kDigitBlockBytes;
    const __m512 x0 = _mm512_loadu_ps(xb), x1 = _mm512_loadu_ps(xb + 16);
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(x0), _mm512_abs_ps(x1)));
    const bool nan = (_mm512_cmp_ps_mask(x0, x0, _CMP_UNORD_Q) | _mm512_cmp_ps_mask(x1, x1, _CMP_UNORD_Q)) != 0;
    if (nan || !(amax > 0) || !std::isfinite(amax)) {  // zero block: unit 0; NaN or infinity: the result is NaN
      std::memset(out, 0, kDigitBlockBytes);
      unit[b] = !nan && amax == 0 ? 0.0f : std::numeric_limits<float>::quiet_NaN();
      continue;
    }
    // The smallest power of two u with amax / u <= 127 * 2^21, kept a normal or subnormal float.
    int e = 0;
    const double f = std::frexp(static_cast<double>(amax) / (127.0 * 2097152.0), &e);
    if (f == 0.5) --e;
    e = std::max(e, -149);
    unit[b] = std::ldexp(1.0f, e);
    const __m512 shift = _mm512_set1_ps(static_cast<float>(-e));
    for (int half = 0; half < 2; ++half) {
      // x 2^-e is exact (scalef), the conversion rounds to the nearest integer (ties to even).
      __m512i X = _mm512_cvtps_epi32(_mm512_scalef_ps(half ? x1 : x0, shift));
      for (int k = 3; k >= 1; --k) {  // balanced digits in [-64, 63]; a0 takes what is left (|a0| <= 127)
        const __m512i d = _mm512_sub_epi32(_mm512_and_si512(_mm512_add_epi32(X, c64), c127), c64);
        _mm512_storeu_si512(out + 128 * k + 64 * half, _mm512_broadcast_i32x4(_mm512_cvtepi32_epi8(d)));
        X = _mm512_srai_epi32(_mm512_sub_epi32(X, d), 7);
      }
      _mm512_storeu_si512(out + 64 * half, _mm512_broadcast_i32x4(_mm512_cvtepi32_epi8(X)));
    }
  }
}

bool is_int8(QuantKernelKind k) {
  return k == QuantKernelKind::Int8Scalar || k == QuantKernelKind::Int8Avx2 || k == QuantKernelKind::Int8Vnni;
}

using GroupsKernel = void (*)(const KernelArgs&, int64_t, int64_t);

using simd::cpu_has_avx2;
using simd::cpu_has_avx512;
using simd::cpu_has_vnni;

GroupsKernel kernel_of(QuantKernelKind k) {
  switch (k) {
    case QuantKernelKind::Avx512: return groups_avx512;
    case QuantKernelKind::Avx2: return groups_avx2;
    case QuantKernelKind::Int8Scalar: return groups_int8_scalar;
    case QuantKernelKind::Int8Avx2: return groups_int8_avx2;
    case QuantKernelKind::Int8Vnni: return groups_int8_vnni;
    case QuantKernelKind::FixedVnni: return groups_fixed_vnni;
    default: return groups_scalar;
  }
}

}  // namespace

bool quant_kernel_supported(QuantKernelKind k) {
  switch (k) {
    case QuantKernelKind::Avx512: return cpu_has_avx512();
    case QuantKernelKind::Avx2: return cpu_has_avx2();
    case QuantKernelKind::Int8Avx2: return cpu_has_avx2();
    case QuantKernelKind::Int8Vnni: return cpu_has_vnni();
    case QuantKernelKind::FixedVnni: return cpu_has_vnni();
    default: return true;
  }
}

// The fastest float32-accurate kernel this CPU runs (fixed-vnni: the activations as 29-bit integers
// per block), unless ICAE_QUANT_KERNEL names one it supports (benchmarks compare them).
QuantKernelKind quant_kernel_default() {
  static const QuantKernelKind kind = [] {
    const char* env = std::getenv("ICAE_QUANT_KERNEL");
    const std::string want = env ? env : "";
    for (QuantKernelKind k : all_quant_kernels())
      if (want == quant_kernel_name(k) && quant_kernel_supported(k)) return k;
    if (cpu_has_vnni()) return QuantKernelKind::FixedVnni;
    return cpu_has_avx512() ? QuantKernelKind::Avx512 : cpu_has_avx2() ? QuantKernelKind::Avx2 : QuantKernelKind::Scalar;
  }();
  return kind;
}

const char* quant_kernel_name(QuantKernelKind k) {
  switch (k) {
    case QuantKernelKind::Avx512: return "avx512";
    case QuantKernelKind::Avx2: return "avx2";
    case QuantKernelKind::Int8Scalar: return "int8-scalar";
    case QuantKernelKind::Int8Avx2: return "int8-avx2";
    case QuantKernelKind::Int8Vnni: return "int8-vnni";
    case QuantKernelKind::FixedVnni: return "fixed-vnni";
    default: return "scalar";
  }
}

std::vector<QuantKernelKind> all_quant_kernels() {
  return {QuantKernelKind::Scalar,     QuantKernelKind::Avx2,     QuantKernelKind::Avx512,
          QuantKernelKind::Int8Scalar, QuantKernelKind::Int8Avx2, QuantKernelKind::Int8Vnni,
          QuantKernelKind::FixedVnni};
}

bool quant_kernel_rounds_activations(QuantKernelKind k) { return is_int8(k); }

bool quant_kernels_vectorised() {
  const QuantKernelKind k = quant_kernel_default();
  return k != QuantKernelKind::Scalar && k != QuantKernelKind::Int8Scalar;
}

QuantMatrix QuantMatrix::cat_rows(const std::vector<QuantMatrix>& parts) {
  ICAE_CHECK(!parts.empty(), ErrorKind::Internal, "cat_rows of nothing");
  QuantMatrix out;
  out.format = parts[0].format;
  out.cols = parts[0].cols;
  std::vector<at::Tensor> data;
  for (const auto& p : parts) {
    ICAE_CHECK(p.format == out.format && p.cols == out.cols && p.data.defined(), ErrorKind::Mismatch,
               "cannot stack quantised matrices of different formats or widths");
    out.rows += p.rows;
    data.push_back(p.data);
  }
  out.data = at::cat(data, 0);
  out.prepare();
  return out;
}

void QuantMatrix::prepare() {
  const int64_t blocks = cols / kQuantBlock, bytes = quant_block_bytes(format), qb = quant_bytes(format),
                gb = group_bytes(format), groups = (rows + kGroup - 1) / kGroup;
  ICAE_CHECK(cols % kQuantBlock == 0 && data.defined() && data.numel() == rows * blocks * bytes, ErrorKind::Internal,
             "QuantMatrix::prepare: inconsistent sizes");
  const bool q4 = format == QuantFormat::Q4_1;
  packed = at::zeros({groups, blocks * gb}, at::kByte);  // padding rows: zero quants and scales
  const uint8_t* src = data.data_ptr<uint8_t>();
  uint8_t* dst = packed.data_ptr<uint8_t>();
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t g = r / kGroup, k = r % kGroup;
    for (int64_t b = 0; b < blocks; ++b) {
      const uint8_t* blk = src + (r * blocks + b) * bytes;
      uint8_t* p = dst + (g * blocks + b) * gb;
      uint8_t* sc = p + kGroup * qb;  // the f16 bits as GGUF has them
      std::memcpy(sc + 2 * k, blk, 2);
      if (q4) std::memcpy(sc + 2 * (kGroup + k), blk + 2, 2);
      std::memcpy(p + k * qb, blk + (q4 ? 4 : 2), qb);
    }
  }
}

at::Tensor QuantMatrix::dequantize() const {
  ICAE_CHECK(packed.defined(), ErrorKind::Internal, "QuantMatrix::dequantize: call prepare() first");
  at::Tensor out = at::empty({rows, cols}, at::kFloat);
  const int64_t blocks = cols / kQuantBlock, qb = quant_bytes(format), gb = group_bytes(format);
  const uint8_t* src = packed.data_ptr<uint8_t>();
  float* dst = out.data_ptr<float>();
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t b = 0; b < blocks; ++b) {
      const uint8_t* p = src + ((r / kGroup) * blocks + b) * gb;
      float sc[2 * kGroup];
      scales_of(p + kGroup * qb, format == QuantFormat::Q4_1, sc);
      const int k = static_cast<int>(r % kGroup);
      for (int j = 0; j < 32; ++j)
        dst[r * cols + b * kQuantBlock + j] =
            sc[k] * weight_at(format, p + k * qb, j) + (format == QuantFormat::Q4_1 ? sc[kGroup + k] : 0.0f);
    }
  return out;
}

void quantise_activations(const float* x, int64_t blocks, int8_t* q, float* d) {
  for (int64_t b = 0; b < blocks; ++b) {
    const float* xb = x + b * kQuantBlock;
    float amax = 0;
    for (int j = 0; j < kQuantBlock; ++j) amax = std::max(amax, std::fabs(xb[j]));
    const float scale = amax / 127.0f, inv = amax > 0 ? 127.0f / amax : 0.0f;
    d[b] = scale;
    for (int j = 0; j < kQuantBlock; ++j) q[b * kQuantBlock + j] = static_cast<int8_t>(std::nearbyint(xb[j] * inv));
  }
}

void split_activation_digits(const float* x, int64_t blocks, int8_t* digits, float* unit) {
  ICAE_CHECK(cpu_has_avx512(), ErrorKind::Unsupported, "split_activation_digits needs AVX-512");
  split_digits_avx512(x, blocks, digits, unit);
}

void quant_gemv(const QuantMatrix& w, const float* x, int64_t n, float* y) {
  quant_gemv(w, x, n, y, quant_kernel_default());
}

void quant_gemv(const QuantMatrix& w, const float* x, int64_t n, float* y, QuantKernelKind kind) {
  ICAE_CHECK(quant_kernel_supported(kind), ErrorKind::Unsupported,
             std::string("quantised kernel ") + quant_kernel_name(kind) + " does not run on this CPU");
  const int64_t blocks = w.cols / kQuantBlock;
  // Per-block sums of x serve Q4_1's min term (m * sum x) for every row.
  std::vector<float> xsum(n * blocks);
  for (int64_t v = 0; v < n; ++v)
    for (int64_t b = 0; b < blocks; ++b) {
      float s = 0;
      for (int j = 0; j < kQuantBlock; ++j) s += x[v * w.cols + b * kQuantBlock + j];
      xsum[v * blocks + b] = s;
    }
  KernelArgs args{&w, x, xsum.data(), n, y};
  std::vector<int8_t> xq;
  std::vector<float> xd;
  if (is_int8(kind)) {
    xq.resize(n * w.cols);
    xd.resize(n * blocks);
    quantise_activations(x, n * blocks, xq.data(), xd.data());
    args.xq = xq.data();
    args.xd = xd.data();
  } else if (kind == QuantKernelKind::FixedVnni && w.format == QuantFormat::Q4_1) {
    xq.resize(n * blocks * kDigitBlockBytes);
    xd.resize(n * blocks);
    split_digits_avx512(x, n * blocks, xq.data(), xd.data());
    args.xq = xq.data();
    args.xd = xd.data();
  }
  const GroupsKernel kernel = kernel_of(kind);
  const int64_t groups = (w.rows + kGroup - 1) / kGroup;
  decode_parallel_for(groups, 8, [&](int64_t begin, int64_t end) { kernel(args, begin, end); });
}

at::Tensor quant_linear(const at::Tensor& x_in, const QuantMatrix& w) {
  return quant_linear(x_in, w, quant_kernel_default());
}

at::Tensor quant_linear(const at::Tensor& x_in, const QuantMatrix& w, QuantKernelKind kind) {
  ICAE_CHECK(w.packed.defined() && x_in.size(-1) == w.cols, ErrorKind::Internal,
             "quant_linear: input width " + std::to_string(x_in.size(-1)) + " vs weight [" + std::to_string(w.rows) +
                 ", " + std::to_string(w.cols) + "] (prepared: " + (w.packed.defined() ? "yes" : "no") + ")");
  ICAE_CHECK(x_in.device().is_cpu(), ErrorKind::Unsupported, "quantised decoding runs on the CPU only");
  const at::Tensor x = x_in.reshape({-1, w.cols}).to(at::kFloat).contiguous();
  at::Tensor y = at::empty({x.size(0), w.rows}, at::kFloat);
  quant_gemv(w, x.data_ptr<float>(), x.size(0), y.data_ptr<float>(), kind);
  std::vector<int64_t> shape = x_in.sizes().vec();
  shape.back() = w.rows;
  return y.view(shape).to(x_in.scalar_type());
}

}  // namespace icae
