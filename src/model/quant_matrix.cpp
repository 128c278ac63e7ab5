#include "icae/model/quant_matrix.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/Half.h>
#include <immintrin.h>

#include <cstring>

#include "icae/util/error.h"

namespace icae {

int64_t quant_block_bytes(QuantFormat f) { return f == QuantFormat::Q4_1 ? 20 : 34; }
const char* quant_format_name(QuantFormat f) { return f == QuantFormat::Q4_1 ? "Q4_1" : "Q8_0"; }

namespace {

inline float half_at(const uint8_t* p) {
  uint16_t bits;
  std::memcpy(&bits, p, 2);
  return static_cast<float>(c10::Half(bits, c10::Half::from_bits()));
}

// --- portable reference kernels: one output row against n input vectors ----------------------
void row_q4_1_scalar(const uint8_t* row, int64_t blocks, const float* x, int64_t cols, const float* xsum,
                     int64_t n, float* y, int64_t y_stride) {
  for (int64_t v = 0; v < n; ++v) {
    const float* xv = x + v * cols;
    float acc = 0;
    for (int64_t b = 0; b < blocks; ++b) {
      const uint8_t* blk = row + b * 20;
      const float d = half_at(blk), m = half_at(blk + 2);
      const uint8_t* q = blk + 4;
      const float* xb = xv + b * kQuantBlock;
      float dot = 0;
      for (int j = 0; j < 16; ++j) dot += static_cast<float>(q[j] & 0xF) * xb[j] + static_cast<float>(q[j] >> 4) * xb[j + 16];
      acc += d * dot + m * xsum[v * blocks + b];
    }
    y[v * y_stride] = acc;
  }
}

void row_q8_0_scalar(const uint8_t* row, int64_t blocks, const float* x, int64_t cols, const float*, int64_t n,
                     float* y, int64_t y_stride) {
  for (int64_t v = 0; v < n; ++v) {
    const float* xv = x + v * cols;
    float acc = 0;
    for (int64_t b = 0; b < blocks; ++b) {
      const uint8_t* blk = row + b * 34;
      const float d = half_at(blk);
      const int8_t* q = reinterpret_cast<const int8_t*>(blk + 2);
      const float* xb = xv + b * kQuantBlock;
      float dot = 0;
      for (int j = 0; j < 32; ++j) dot += static_cast<float>(q[j]) * xb[j];
      acc += d * dot;
    }
    y[v * y_stride] = acc;
  }
}

// --- AVX-512: 32 weights per block unpacked once into two 16-lane float vectors ---------------
constexpr int64_t kMaxVectors = 8;  // input vectors handled per pass over a row

__attribute__((target("avx512f,avx512bw,f16c"))) void row_q4_1_avx512(const uint8_t* row, int64_t blocks,
                                                                       const float* x, int64_t cols,
                                                                       const float* xsum, int64_t n, float* y,
                                                                       int64_t y_stride) {
  __m512 acc[kMaxVectors];
  float msum[kMaxVectors];
  for (int64_t v = 0; v < n; ++v) acc[v] = _mm512_setzero_ps(), msum[v] = 0;
  const __m512i low4 = _mm512_set1_epi32(0xF);
  for (int64_t b = 0; b < blocks; ++b) {
    const uint8_t* blk = row + b * 20;
    const float d = half_at(blk), m = half_at(blk + 2);
    const __m512i q = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 4)));
    const __m512 lo = _mm512_cvtepi32_ps(_mm512_and_si512(q, low4));   // weights 0..15 of the block
    const __m512 hi = _mm512_cvtepi32_ps(_mm512_srli_epi32(q, 4));      // weights 16..31
    const __m512 dv = _mm512_set1_ps(d);
    for (int64_t v = 0; v < n; ++v) {
      const float* xb = x + v * cols + b * kQuantBlock;
      __m512 t = _mm512_mul_ps(lo, _mm512_loadu_ps(xb));
      t = _mm512_fmadd_ps(hi, _mm512_loadu_ps(xb + 16), t);
      acc[v] = _mm512_fmadd_ps(t, dv, acc[v]);
      msum[v] += m * xsum[v * blocks + b];
    }
  }
  for (int64_t v = 0; v < n; ++v) y[v * y_stride] = _mm512_reduce_add_ps(acc[v]) + msum[v];
}

__attribute__((target("avx512f,avx512bw,f16c"))) void row_q8_0_avx512(const uint8_t* row, int64_t blocks,
                                                                       const float* x, int64_t cols, const float*,
                                                                       int64_t n, float* y, int64_t y_stride) {
  __m512 acc[kMaxVectors];
  for (int64_t v = 0; v < n; ++v) acc[v] = _mm512_setzero_ps();
  for (int64_t b = 0; b < blocks; ++b) {
    const uint8_t* blk = row + b * 34;
    const __m512 dv = _mm512_set1_ps(half_at(blk));
    const __m512 w0 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 2))));
    const __m512 w1 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 18))));
    for (int64_t v = 0; v < n; ++v) {
      const float* xb = x + v * cols + b * kQuantBlock;
      __m512 t = _mm512_mul_ps(w0, _mm512_loadu_ps(xb));
      t = _mm512_fmadd_ps(w1, _mm512_loadu_ps(xb + 16), t);
      acc[v] = _mm512_fmadd_ps(t, dv, acc[v]);
    }
  }
  for (int64_t v = 0; v < n; ++v) y[v * y_stride] = _mm512_reduce_add_ps(acc[v]);
}

using RowKernel = void (*)(const uint8_t*, int64_t, const float*, int64_t, const float*, int64_t, float*, int64_t);

RowKernel pick_kernel(QuantFormat f) {
  static const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                             __builtin_cpu_supports("f16c");
  if (f == QuantFormat::Q4_1) return avx512 ? row_q4_1_avx512 : row_q4_1_scalar;
  return avx512 ? row_q8_0_avx512 : row_q8_0_scalar;
}

}  // namespace

QuantMatrix QuantMatrix::cat_rows(const std::vector<QuantMatrix>& parts) {
  ICAE_CHECK(!parts.empty(), ErrorKind::Internal, "cat_rows of nothing");
  QuantMatrix out;
  out.format = parts[0].format;
  out.cols = parts[0].cols;
  std::vector<at::Tensor> data;
  for (const auto& p : parts) {
    ICAE_CHECK(p.format == out.format && p.cols == out.cols, ErrorKind::Mismatch,
               "cannot stack quantised matrices of different formats or widths");
    out.rows += p.rows;
    data.push_back(p.data);
  }
  out.data = at::cat(data, 0);
  return out;
}

at::Tensor QuantMatrix::dequantize() const {
  // The kernel against the identity would do, but this is clearer and only used in tests/tools.
  at::Tensor out = at::empty({rows, cols}, at::kFloat);
  const int64_t blocks = cols / kQuantBlock, bytes = quant_block_bytes(format);
  const uint8_t* src = data.data_ptr<uint8_t>();
  float* dst = out.data_ptr<float>();
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t b = 0; b < blocks; ++b) {
      const uint8_t* blk = src + (r * blocks + b) * bytes;
      float* o = dst + r * cols + b * kQuantBlock;
      if (format == QuantFormat::Q4_1) {
        const float d = half_at(blk), m = half_at(blk + 2);
        for (int j = 0; j < 16; ++j) {
          o[j] = d * static_cast<float>(blk[4 + j] & 0xF) + m;
          o[j + 16] = d * static_cast<float>(blk[4 + j] >> 4) + m;
        }
      } else {
        const float d = half_at(blk);
        for (int j = 0; j < 32; ++j) o[j] = d * static_cast<float>(static_cast<int8_t>(blk[2 + j]));
      }
    }
  return out;
}

at::Tensor quant_linear(const at::Tensor& x_in, const QuantMatrix& w) {
  ICAE_CHECK(w.defined() && x_in.size(-1) == w.cols, ErrorKind::Internal,
             "quant_linear: input width " + std::to_string(x_in.size(-1)) + " vs weight [" + std::to_string(w.rows) +
                 ", " + std::to_string(w.cols) + "]");
  ICAE_CHECK(x_in.device().is_cpu(), ErrorKind::Unsupported, "quantised decoding runs on the CPU only");
  const at::Tensor x = x_in.reshape({-1, w.cols}).to(at::kFloat).contiguous();
  const int64_t n = x.size(0), blocks = w.cols / kQuantBlock, bytes_per_row = blocks * quant_block_bytes(w.format);
  // Per-block sums of x serve Q4_1's min term (m * sum x) for every row.
  const at::Tensor xsum = x.view({n, blocks, kQuantBlock}).sum(-1).contiguous();
  at::Tensor y = at::empty({n, w.rows}, at::kFloat);
  const RowKernel kernel = pick_kernel(w.format);
  const uint8_t* wd = w.data.data_ptr<uint8_t>();
  const float* xd = x.data_ptr<float>();
  const float* sd = xsum.data_ptr<float>();
  float* yd = y.data_ptr<float>();
  at::parallel_for(0, w.rows, 64, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r)
      for (int64_t v0 = 0; v0 < n; v0 += kMaxVectors) {
        const int64_t nv = std::min<int64_t>(kMaxVectors, n - v0);
        kernel(wd + r * bytes_per_row, blocks, xd + v0 * w.cols, w.cols, sd + v0 * blocks, nv, yd + v0 * w.rows + r,
               w.rows);
      }
  });
  std::vector<int64_t> shape = x_in.sizes().vec();
  shape.back() = w.rows;
  return y.view(shape).to(x_in.scalar_type());
}

}  // namespace icae
