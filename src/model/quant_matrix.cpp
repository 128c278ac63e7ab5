#include "icae/model/quant_matrix.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/Half.h>
#include <immintrin.h>

// GCC 12 warns about its own AVX-512 intrinsics (_mm512_undefined_ps); nothing here is uninitialised.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

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

// --- kernels: a few output rows against n input vectors, on the prepared layout -------------
// Each computes y[v][r] = sum_b scale[r][b] * (q[r][b] . x[v][b]) (+ min[r][b] * sum x[v][b]).
struct KernelArgs {
  const QuantMatrix* w;
  const float* x;     // [n, cols]
  const float* xsum;  // [n, blocks]
  int64_t n;
  float* y;           // [n, rows]
};

void rows_scalar(const KernelArgs& a, int64_t r0, int64_t r1) {
  const QuantMatrix& w = *a.w;
  const int64_t blocks = w.cols / kQuantBlock;
  const bool q4 = w.format == QuantFormat::Q4_1;
  for (int64_t r = r0; r < r1; ++r) {
    const float* sc = w.scales.data_ptr<float>() + r * blocks;
    const float* mn = q4 ? w.mins.data_ptr<float>() + r * blocks : nullptr;
    for (int64_t v = 0; v < a.n; ++v) {
      const float* xv = a.x + v * w.cols;
      float acc = 0;
      for (int64_t b = 0; b < blocks; ++b) {
        const float* xb = xv + b * kQuantBlock;
        float dot = 0;
        if (q4) {
          const uint8_t* q = w.quants.data_ptr<uint8_t>() + (r * blocks + b) * 16;
          for (int j = 0; j < 16; ++j) dot += static_cast<float>(q[j] & 0xF) * xb[j] + static_cast<float>(q[j] >> 4) * xb[j + 16];
          acc += sc[b] * dot + mn[b] * a.xsum[v * blocks + b];
        } else {
          const int8_t* q = w.quants.data_ptr<int8_t>() + (r * blocks + b) * 32;
          for (int j = 0; j < 32; ++j) dot += static_cast<float>(q[j]) * xb[j];
          acc += sc[b] * dot;
        }
      }
      a.y[v * w.rows + r] = acc;
    }
  }
}

// AVX-512: 32 weights of a block unpacked into two 16-lane float vectors; four rows at a time
// share the loads of x. Raw pointers only in the loops (Tensor::data_ptr checks cost).
constexpr int64_t kRowsPerStep = 4;

template <bool Q4>
__attribute__((target("avx512f,avx512bw"), always_inline)) inline void unpack_block(const uint8_t* q, __m512& lo,
                                                                                      __m512& hi) {
  if (Q4) {
    const __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q)));
    lo = _mm512_cvtepi32_ps(_mm512_and_si512(v, _mm512_set1_epi32(0xF)));  // weights 0..15
    hi = _mm512_cvtepi32_ps(_mm512_srli_epi32(v, 4));                       // weights 16..31
  } else {
    lo = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q))));
    hi = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q + 16))));
  }
}

template <bool Q4>
__attribute__((target("avx512f,avx512bw"))) void rows_avx512_t(const KernelArgs& a, int64_t r0, int64_t r1) {
  const QuantMatrix& w = *a.w;
  const int64_t blocks = w.cols / kQuantBlock, qbytes = Q4 ? 16 : 32, row_bytes = blocks * qbytes;
  const uint8_t* quants = static_cast<const uint8_t*>(w.quants.data_ptr());
  const float* scales = w.scales.data_ptr<float>();
  const float* mins = Q4 ? w.mins.data_ptr<float>() : nullptr;
  for (int64_t v = 0; v < a.n; ++v) {
    const float* xv = a.x + v * w.cols;
    const float* xs = a.xsum + v * blocks;
    float* yv = a.y + v * w.rows;
    int64_t r = r0;
    for (; r + kRowsPerStep <= r1; r += kRowsPerStep) {
      __m512 acc[kRowsPerStep];
      const uint8_t* q[kRowsPerStep];
      const float* sc[kRowsPerStep];
      for (int k = 0; k < kRowsPerStep; ++k) {
        acc[k] = _mm512_setzero_ps();
        q[k] = quants + (r + k) * row_bytes;
        sc[k] = scales + (r + k) * blocks;
      }
      for (int64_t b = 0; b < blocks; ++b) {
        const __m512 x0 = _mm512_loadu_ps(xv + b * kQuantBlock), x1 = _mm512_loadu_ps(xv + b * kQuantBlock + 16);
        for (int k = 0; k < kRowsPerStep; ++k) {
          __m512 lo, hi;
          unpack_block<Q4>(q[k] + b * qbytes, lo, hi);
          const __m512 t = _mm512_fmadd_ps(hi, x1, _mm512_mul_ps(lo, x0));
          acc[k] = _mm512_fmadd_ps(t, _mm512_set1_ps(sc[k][b]), acc[k]);
        }
      }
      for (int k = 0; k < kRowsPerStep; ++k) {
        float out = _mm512_reduce_add_ps(acc[k]);
        if (Q4) {
          const float* mn = mins + (r + k) * blocks;
          for (int64_t b = 0; b < blocks; ++b) out += mn[b] * xs[b];
        }
        yv[r + k] = out;
      }
    }
    if (r < r1) {
      KernelArgs one = a;
      one.x = xv;
      one.xsum = xs;
      one.n = 1;
      one.y = yv;
      rows_scalar(one, r, r1);
    }
  }
}

void rows_avx512(const KernelArgs& a, int64_t r0, int64_t r1) {
  if (a.w->format == QuantFormat::Q4_1) rows_avx512_t<true>(a, r0, r1);
  else rows_avx512_t<false>(a, r0, r1);
}

using RowsKernel = void (*)(const KernelArgs&, int64_t, int64_t);

RowsKernel pick_kernel() {
  static const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
  return avx512 ? rows_avx512 : rows_scalar;
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
  out.prepare();
  return out;
}

void QuantMatrix::prepare() {
  const int64_t blocks = cols / kQuantBlock, bytes = quant_block_bytes(format);
  ICAE_CHECK(cols % kQuantBlock == 0 && data.defined() && data.numel() == rows * blocks * bytes, ErrorKind::Internal,
             "QuantMatrix::prepare: inconsistent sizes");
  at::Tensor blk = data.view({rows, blocks, bytes});
  scales = blk.narrow(2, 0, 2).contiguous().view(at::kHalf).view({rows, blocks}).to(at::kFloat);
  if (format == QuantFormat::Q4_1) {
    mins = blk.narrow(2, 2, 2).contiguous().view(at::kHalf).view({rows, blocks}).to(at::kFloat);
    quants = blk.narrow(2, 4, 16).contiguous().view({rows, blocks * 16});
  } else {
    quants = blk.narrow(2, 2, 32).contiguous().view(at::kChar).view({rows, blocks * 32});
  }
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
  ICAE_CHECK(w.scales.defined(), ErrorKind::Internal, "quant_linear: call QuantMatrix::prepare() first");
  ICAE_CHECK(x_in.device().is_cpu(), ErrorKind::Unsupported, "quantised decoding runs on the CPU only");
  const at::Tensor x = x_in.reshape({-1, w.cols}).to(at::kFloat).contiguous();
  const int64_t n = x.size(0), blocks = w.cols / kQuantBlock;
  // Per-block sums of x serve Q4_1's min term (m * sum x) for every row.
  const at::Tensor xsum = x.view({n, blocks, kQuantBlock}).sum(-1).contiguous();
  at::Tensor y = at::empty({n, w.rows}, at::kFloat);
  const KernelArgs args{&w, x.data_ptr<float>(), xsum.data_ptr<float>(), n, y.data_ptr<float>()};
  const RowsKernel kernel = pick_kernel();
  // Chunks of whole 4-row steps; about 64 rows per chunk keeps the scheduling cost small.
  at::parallel_for(0, (w.rows + kRowsPerStep - 1) / kRowsPerStep, 16, [&](int64_t begin, int64_t end) {
    kernel(args, begin * kRowsPerStep, std::min(w.rows, end * kRowsPerStep));
  });
  std::vector<int64_t> shape = x_in.sizes().vec();
  shape.back() = w.rows;
  return y.view(shape).to(x_in.scalar_type());
}

}  // namespace icae
