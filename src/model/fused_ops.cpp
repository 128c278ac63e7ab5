#include "icae/model/fused_ops.h"

#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <immintrin.h>

// GCC 12 warns about its own AVX-512 intrinsics (_mm512_undefined_*); nothing here is uninitialised.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

#include <cmath>

#include "icae/util/backward_node.h"
#include "icae/util/error.h"
#include "simd.h"

namespace icae {

namespace {

using BF16 = c10::BFloat16;
using simd::bf16_bits;
using simd::bf16_bits8;
using simd::cpu_has_avx2;
using simd::cpu_has_avx512;
using simd::load16;
using simd::load8;
using simd::reduce_add8;
using simd::store16;
using simd::store8;

// v rounded to T's precision, as float32 (an intermediate result ATen would store as T).
ICAE_AVX512 inline __m512 round_as(__m512 v, const float*) { return v; }
ICAE_AVX512 inline __m512 round_as(__m512 v, const BF16*) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(bf16_bits(v), 16));
}
ICAE_AVX2 inline __m256 round_as(__m256 v, const float*) { return v; }
ICAE_AVX2 inline __m256 round_as(__m256 v, const BF16*) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(bf16_bits8(v), 16));
}
template <typename T>
inline float round_as(float v) { return static_cast<float>(static_cast<T>(v)); }

// e^x, Cephes' single-precision polynomial after reducing by ln 2 (about 1 ulp), 2^n by scalef.
ICAE_AVX512 inline __m512 exp16(__m512 x) {
  x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(88.72283905206835f)), _mm512_set1_ps(-103.97207708f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 f = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  f = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), f);
  __m512 p = _mm512_set1_ps(1.9875691500E-4f);
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.3981999507E-3f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(8.3334519073E-3f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(4.1665795894E-2f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.6666665459E-1f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.0000001201E-1f));
  p = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(f, f), f), _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

// 2^e as a float32 for integer lanes e in [-126, 127].
ICAE_AVX2 inline __m256 pow2_8(__m256i e) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(e, _mm256_set1_epi32(127)), 23));
}

// The same e^x in 8 lanes; 2^n as two power-of-two factors (AVX2 has no scalef), so n from the
// clamped range [-150, 128] never leaves the exponent field.
ICAE_AVX2 inline __m256 exp8(__m256 x) {
  x = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(88.72283905206835f)), _mm256_set1_ps(-103.97207708f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 f = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  f = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), f);
  __m256 p = _mm256_set1_ps(1.9875691500E-4f);
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.3981999507E-3f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(8.3334519073E-3f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(4.1665795894E-2f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.6666665459E-1f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(5.0000001201E-1f));
  p = _mm256_add_ps(_mm256_fmadd_ps(p, _mm256_mul_ps(f, f), f), _mm256_set1_ps(1.0f));
  const __m256i ni = _mm256_cvtps_epi32(n), half = _mm256_srai_epi32(ni, 1);
  return _mm256_mul_ps(_mm256_mul_ps(p, pow2_8(half)), pow2_8(_mm256_sub_epi32(ni, half)));
}

// ------------------------------------------------------------------------------------ RMSNorm

// Rows of h; r[row] = 1 / sqrt(mean(x^2) + eps) is kept for the backward.
// (The kernels take a range of rows: intrinsics cannot sit in at::parallel_for's lambda, which
// does not carry the target attribute.)
template <typename T>
ICAE_AVX512 void rms_norm_range(const T* x, const T* w, T* y, float* r, int64_t h, float eps, int64_t r0, int64_t r1) {
  for (int64_t row = r0; row < r1; ++row) {
    const T* xr = x + row * h;
    T* yr = y + row * h;
    int64_t i = 0;
    __m512 acc = _mm512_setzero_ps();
    for (; i + 16 <= h; i += 16) {
      const __m512 v = load16(xr + i);
      acc = _mm512_fmadd_ps(v, v, acc);
    }
    float ss = _mm512_reduce_add_ps(acc);
    for (; i < h; ++i) ss += static_cast<float>(xr[i]) * static_cast<float>(xr[i]);
    const float inv = 1.0f / std::sqrt(ss / static_cast<float>(h) + eps);
    r[row] = inv;
    const __m512 vinv = _mm512_set1_ps(inv);
    for (i = 0; i + 16 <= h; i += 16)
      store16(yr + i, _mm512_mul_ps(round_as(_mm512_mul_ps(load16(xr + i), vinv), xr), load16(w + i)));
    for (; i < h; ++i)
      yr[i] = static_cast<T>(round_as<T>(static_cast<float>(xr[i]) * inv) * static_cast<float>(w[i]));
  }
}
// The AVX2 twin (8 lanes), same arithmetic.
template <typename T>
ICAE_AVX2 void rms_norm_range_avx2(const T* x, const T* w, T* y, float* r, int64_t h, float eps, int64_t r0, int64_t r1) {
  for (int64_t row = r0; row < r1; ++row) {
    const T* xr = x + row * h;
    T* yr = y + row * h;
    int64_t i = 0;
    __m256 acc = _mm256_setzero_ps();
    for (; i + 8 <= h; i += 8) {
      const __m256 v = load8(xr + i);
      acc = _mm256_fmadd_ps(v, v, acc);
    }
    float ss = reduce_add8(acc);
    for (; i < h; ++i) ss += static_cast<float>(xr[i]) * static_cast<float>(xr[i]);
    const float inv = 1.0f / std::sqrt(ss / static_cast<float>(h) + eps);
    r[row] = inv;
    const __m256 vinv = _mm256_set1_ps(inv);
    for (i = 0; i + 8 <= h; i += 8)
      store8(yr + i, _mm256_mul_ps(round_as(_mm256_mul_ps(load8(xr + i), vinv), xr), load8(w + i)));
    for (; i < h; ++i)
      yr[i] = static_cast<T>(round_as<T>(static_cast<float>(xr[i]) * inv) * static_cast<float>(w[i]));
  }
}
template <typename T>
void rms_norm_rows(const T* x, const T* w, T* y, float* r, int64_t rows, int64_t h, float eps) {
  const bool wide = cpu_has_avx512();
  at::parallel_for(0, rows, 16, [&](int64_t r0, int64_t r1) {
    if (wide) rms_norm_range(x, w, y, r, h, eps, r0, r1);
    else rms_norm_range_avx2(x, w, y, r, h, eps, r0, r1);
  });
}

// gx = r gn - x r^3 (gn . x) / h, with gn = gy * w rounded to T (ATen's product backward).
template <typename T>
ICAE_AVX512 void rms_norm_backward_range(const T* x, const T* w, const T* gy, const float* r, T* gx, int64_t h,
                                         int64_t r0, int64_t r1) {
  for (int64_t row = r0; row < r1; ++row) {
    const T *xr = x + row * h, *gr = gy + row * h;
    T* out = gx + row * h;
    int64_t i = 0;
    __m512 acc = _mm512_setzero_ps();
    for (; i + 16 <= h; i += 16)
      acc = _mm512_fmadd_ps(round_as(_mm512_mul_ps(load16(gr + i), load16(w + i)), xr), load16(xr + i), acc);
    float dot = _mm512_reduce_add_ps(acc);
    for (; i < h; ++i)
      dot += round_as<T>(static_cast<float>(gr[i]) * static_cast<float>(w[i])) * static_cast<float>(xr[i]);
    const float inv = r[row], c = inv * inv * inv * dot / static_cast<float>(h);
    const __m512 vinv = _mm512_set1_ps(inv), vc = _mm512_set1_ps(c);
    for (i = 0; i + 16 <= h; i += 16) {
      const __m512 gn = round_as(_mm512_mul_ps(load16(gr + i), load16(w + i)), xr);
      store16(out + i, _mm512_fnmadd_ps(load16(xr + i), vc, _mm512_mul_ps(gn, vinv)));
    }
    for (; i < h; ++i) {
      const float gn = round_as<T>(static_cast<float>(gr[i]) * static_cast<float>(w[i]));
      out[i] = static_cast<T>(gn * inv - static_cast<float>(xr[i]) * c);
    }
  }
}
template <typename T>
ICAE_AVX2 void rms_norm_backward_range_avx2(const T* x, const T* w, const T* gy, const float* r, T* gx, int64_t h,
                                              int64_t r0, int64_t r1) {
  for (int64_t row = r0; row < r1; ++row) {
    const T *xr = x + row * h, *gr = gy + row * h;
    T* out = gx + row * h;
    int64_t i = 0;
    __m256 acc = _mm256_setzero_ps();
    for (; i + 8 <= h; i += 8)
      acc = _mm256_fmadd_ps(round_as(_mm256_mul_ps(load8(gr + i), load8(w + i)), xr), load8(xr + i), acc);
    float dot = reduce_add8(acc);
    for (; i < h; ++i)
      dot += round_as<T>(static_cast<float>(gr[i]) * static_cast<float>(w[i])) * static_cast<float>(xr[i]);
    const float inv = r[row], c = inv * inv * inv * dot / static_cast<float>(h);
    const __m256 vinv = _mm256_set1_ps(inv), vc = _mm256_set1_ps(c);
    for (i = 0; i + 8 <= h; i += 8) {
      const __m256 gn = round_as(_mm256_mul_ps(load8(gr + i), load8(w + i)), xr);
      store8(out + i, _mm256_fnmadd_ps(load8(xr + i), vc, _mm256_mul_ps(gn, vinv)));
    }
    for (; i < h; ++i) {
      const float gn = round_as<T>(static_cast<float>(gr[i]) * static_cast<float>(w[i]));
      out[i] = static_cast<T>(gn * inv - static_cast<float>(xr[i]) * c);
    }
  }
}
template <typename T>
void rms_norm_backward_rows(const T* x, const T* w, const T* gy, const float* r, T* gx, int64_t rows, int64_t h) {
  const bool wide = cpu_has_avx512();
  at::parallel_for(0, rows, 16, [&](int64_t r0, int64_t r1) {
    if (wide) rms_norm_backward_range(x, w, gy, r, gx, h, r0, r1);
    else rms_norm_backward_range_avx2(x, w, gy, r, gx, h, r0, r1);
  });
}

struct RmsNormBackward : torch::autograd::Node {
  at::Tensor x, weight, r;  // x detached, contiguous; r [rows] float32

  torch::autograd::variable_list apply(torch::autograd::variable_list&& grads) override {
    if (!grads[0].defined()) return {at::Tensor()};
    const at::Tensor gy = grads[0].to(x.scalar_type()).contiguous();
    at::Tensor gx = at::empty_like(x);
    const int64_t h = x.size(-1), rows = x.numel() / h;
    if (x.scalar_type() == at::kBFloat16)
      rms_norm_backward_rows(x.data_ptr<BF16>(), weight.data_ptr<BF16>(), gy.data_ptr<BF16>(), r.data_ptr<float>(),
                             gx.data_ptr<BF16>(), rows, h);
    else
      rms_norm_backward_rows(x.data_ptr<float>(), weight.data_ptr<float>(), gy.data_ptr<float>(), r.data_ptr<float>(),
                             gx.data_ptr<float>(), rows, h);
    return {gx};
  }
};

// ------------------------------------------------------------------------------------- SwiGLU

// y = round(silu(g)) * u over rows of [g | u] (2i wide).
template <typename T>
ICAE_AVX512 void swiglu_range(const T* gu, T* y, int64_t inter, int64_t r0, int64_t r1) {
  for (int64_t row = r0; row < r1; ++row) {
    const T *g = gu + row * 2 * inter, *u = g + inter;
    T* out = y + row * inter;
    int64_t i = 0;
    for (; i + 16 <= inter; i += 16) {
      const __m512 gv = load16(g + i);
      const __m512 silu = _mm512_div_ps(gv, _mm512_add_ps(_mm512_set1_ps(1.0f), exp16(_mm512_sub_ps(_mm512_setzero_ps(), gv))));
      store16(out + i, _mm512_mul_ps(round_as(silu, g), load16(u + i)));
    }
    for (; i < inter; ++i) {
      const float gf = static_cast<float>(g[i]);
      out[i] = static_cast<T>(round_as<T>(gf / (1.0f + std::exp(-gf))) * static_cast<float>(u[i]));
    }
  }
}
template <typename T>
ICAE_AVX2 void swiglu_range_avx2(const T* gu, T* y, int64_t inter, int64_t r0, int64_t r1) {
  for (int64_t row = r0; row < r1; ++row) {
    const T *g = gu + row * 2 * inter, *u = g + inter;
    T* out = y + row * inter;
    int64_t i = 0;
    for (; i + 8 <= inter; i += 8) {
      const __m256 gv = load8(g + i);
      const __m256 silu = _mm256_div_ps(gv, _mm256_add_ps(_mm256_set1_ps(1.0f), exp8(_mm256_sub_ps(_mm256_setzero_ps(), gv))));
      store8(out + i, _mm256_mul_ps(round_as(silu, g), load8(u + i)));
    }
    for (; i < inter; ++i) {
      const float gf = static_cast<float>(g[i]);
      out[i] = static_cast<T>(round_as<T>(gf / (1.0f + std::exp(-gf))) * static_cast<float>(u[i]));
    }
  }
}
template <typename T>
void swiglu_rows(const T* gu, T* y, int64_t rows, int64_t inter) {
  const bool wide = cpu_has_avx512();
  at::parallel_for(0, rows, 8, [&](int64_t r0, int64_t r1) {
    if (wide) swiglu_range(gu, y, inter, r0, r1);
    else swiglu_range_avx2(gu, y, inter, r0, r1);
  });
}

// grad_u = gy * round(silu(g)); grad_g = round(gy * u) * s (1 + g (1 - s)), s = sigmoid(g): the
// roundings of ATen's mul and silu_backward.
template <typename T>
ICAE_AVX512 void swiglu_backward_range(const T* gu, const T* gy, T* ggu, int64_t inter, int64_t r0, int64_t r1) {
  const __m512 one = _mm512_set1_ps(1.0f);
  for (int64_t row = r0; row < r1; ++row) {
    const T *g = gu + row * 2 * inter, *u = g + inter, *dy = gy + row * inter;
    T *dg = ggu + row * 2 * inter, *du = dg + inter;
    int64_t i = 0;
    for (; i + 16 <= inter; i += 16) {
      const __m512 gv = load16(g + i), dyv = load16(dy + i);
      const __m512 denom = _mm512_add_ps(one, exp16(_mm512_sub_ps(_mm512_setzero_ps(), gv)));
      const __m512 s = _mm512_div_ps(one, denom);
      store16(du + i, _mm512_mul_ps(dyv, round_as(_mm512_div_ps(gv, denom), g)));  // silu as the forward has it
      const __m512 t = round_as(_mm512_mul_ps(dyv, load16(u + i)), g);
      const __m512 d = _mm512_fmadd_ps(gv, _mm512_sub_ps(one, s), one);  // 1 + g (1 - s)
      store16(dg + i, _mm512_mul_ps(_mm512_mul_ps(t, s), d));
    }
    for (; i < inter; ++i) {
      const float gf = static_cast<float>(g[i]), dyf = static_cast<float>(dy[i]);
      const float denom = 1.0f + std::exp(-gf), s = 1.0f / denom;
      du[i] = static_cast<T>(dyf * round_as<T>(gf / denom));
      const float t = round_as<T>(dyf * static_cast<float>(u[i]));
      dg[i] = static_cast<T>(t * s * (1.0f + gf * (1.0f - s)));
    }
  }
}
template <typename T>
ICAE_AVX2 void swiglu_backward_range_avx2(const T* gu, const T* gy, T* ggu, int64_t inter, int64_t r0, int64_t r1) {
  const __m256 one = _mm256_set1_ps(1.0f);
  for (int64_t row = r0; row < r1; ++row) {
    const T *g = gu + row * 2 * inter, *u = g + inter, *dy = gy + row * inter;
    T *dg = ggu + row * 2 * inter, *du = dg + inter;
    int64_t i = 0;
    for (; i + 8 <= inter; i += 8) {
      const __m256 gv = load8(g + i), dyv = load8(dy + i);
      const __m256 denom = _mm256_add_ps(one, exp8(_mm256_sub_ps(_mm256_setzero_ps(), gv)));
      const __m256 s = _mm256_div_ps(one, denom);
      store8(du + i, _mm256_mul_ps(dyv, round_as(_mm256_div_ps(gv, denom), g)));
      const __m256 t = round_as(_mm256_mul_ps(dyv, load8(u + i)), g);
      const __m256 d = _mm256_fmadd_ps(gv, _mm256_sub_ps(one, s), one);
      store8(dg + i, _mm256_mul_ps(_mm256_mul_ps(t, s), d));
    }
    for (; i < inter; ++i) {
      const float gf = static_cast<float>(g[i]), dyf = static_cast<float>(dy[i]);
      const float denom = 1.0f + std::exp(-gf), s = 1.0f / denom;
      du[i] = static_cast<T>(dyf * round_as<T>(gf / denom));
      const float t = round_as<T>(dyf * static_cast<float>(u[i]));
      dg[i] = static_cast<T>(t * s * (1.0f + gf * (1.0f - s)));
    }
  }
}
template <typename T>
void swiglu_backward_rows(const T* gu, const T* gy, T* ggu, int64_t rows, int64_t inter) {
  const bool wide = cpu_has_avx512();
  at::parallel_for(0, rows, 8, [&](int64_t r0, int64_t r1) {
    if (wide) swiglu_backward_range(gu, gy, ggu, inter, r0, r1);
    else swiglu_backward_range_avx2(gu, gy, ggu, inter, r0, r1);
  });
}

struct SwigluBackward : torch::autograd::Node {
  at::Tensor gu;  // detached, contiguous

  torch::autograd::variable_list apply(torch::autograd::variable_list&& grads) override {
    if (!grads[0].defined()) return {at::Tensor()};
    const at::Tensor gy = grads[0].to(gu.scalar_type()).contiguous();
    at::Tensor ggu = at::empty_like(gu);
    const int64_t inter = gu.size(-1) / 2, rows = gu.numel() / gu.size(-1);
    if (gu.scalar_type() == at::kBFloat16)
      swiglu_backward_rows(gu.data_ptr<BF16>(), gy.data_ptr<BF16>(), ggu.data_ptr<BF16>(), rows, inter);
    else
      swiglu_backward_rows(gu.data_ptr<float>(), gy.data_ptr<float>(), ggu.data_ptr<float>(), rows, inter);
    return {ggu};
  }
};

}  // namespace

bool fused_ops_apply(const at::Tensor& x, const at::Tensor& frozen) {
  if (!x.device().is_cpu() || !x.is_contiguous() || !at::GradMode::is_enabled() || !x.requires_grad()) return false;
  if (x.scalar_type() != at::kFloat && x.scalar_type() != at::kBFloat16) return false;
  if (frozen.defined() && (frozen.requires_grad() || frozen.scalar_type() != x.scalar_type() || !frozen.is_contiguous()))
    return false;
  return cpu_has_avx512() || cpu_has_avx2();
}

at::Tensor fused_rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  ICAE_CHECK(fused_ops_apply(x, weight) && weight.numel() == x.size(-1), ErrorKind::Internal,
             "fused_rms_norm: unsupported input (check fused_ops_apply first)");
  const int64_t h = x.size(-1), rows = x.numel() / h;
  at::Tensor xd = x.detach();
  at::Tensor y = at::empty_like(xd);
  at::Tensor r = at::empty({rows}, xd.options().dtype(at::kFloat));
  if (x.scalar_type() == at::kBFloat16)
    rms_norm_rows(xd.data_ptr<BF16>(), weight.data_ptr<BF16>(), y.data_ptr<BF16>(), r.data_ptr<float>(), rows, h,
                  static_cast<float>(eps));
  else
    rms_norm_rows(xd.data_ptr<float>(), weight.data_ptr<float>(), y.data_ptr<float>(), r.data_ptr<float>(), rows, h,
                  static_cast<float>(eps));
  auto node = make_backward_node<RmsNormBackward>();
  node->x = xd;
  node->weight = weight.detach();
  node->r = r;
  attach_backward(node, {x}, y);
  return y;
}

at::Tensor fused_swiglu(const at::Tensor& gu) {
  ICAE_CHECK(fused_ops_apply(gu) && gu.size(-1) % 2 == 0, ErrorKind::Internal,
             "fused_swiglu: unsupported input (check fused_ops_apply first)");
  const int64_t inter = gu.size(-1) / 2, rows = gu.numel() / gu.size(-1);
  at::Tensor gd = gu.detach();
  std::vector<int64_t> shape = gd.sizes().vec();
  shape.back() = inter;
  at::Tensor y = at::empty(shape, gd.options());
  if (gu.scalar_type() == at::kBFloat16) swiglu_rows(gd.data_ptr<BF16>(), y.data_ptr<BF16>(), rows, inter);
  else swiglu_rows(gd.data_ptr<float>(), y.data_ptr<float>(), rows, inter);
  auto node = make_backward_node<SwigluBackward>();
  node->gu = gd;
  attach_backward(node, {gu}, y);
  return y;
}

}  // namespace icae
