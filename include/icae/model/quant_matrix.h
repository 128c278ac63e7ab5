// Weights kept in a GGUF block-quantised format (Q4_1, Q8_0) for decoding on the CPU.
// Decoding one token is a matrix-vector product per projection, bound by the bytes it reads:
// 0.6-1.1 bytes per weight instead of 2 (bf16) or 4 (f32). The kernel multiplies the exact
// dequantised values by float32 activations and accumulates in float32, so its results equal a
// float32 matmul with the dequantised weights up to summation order (no activation rounding).
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace icae {

enum class QuantFormat {
  Q4_1,  // blocks of 32: f16 scale d, f16 min m, 16 bytes of 4-bit q: w = d q + m
  Q8_0   // blocks of 32: f16 scale d, 32 int8 q: w = d q
};

constexpr int64_t kQuantBlock = 32;
int64_t quant_block_bytes(QuantFormat format);
const char* quant_format_name(QuantFormat format);

struct QuantMatrix {
  QuantFormat format = QuantFormat::Q8_0;
  int64_t rows = 0, cols = 0;  // logical [rows, cols] = a Linear weight [out, in]
  at::Tensor data;             // uint8 [rows, cols / 32 * block bytes], CPU, contiguous (GGUF layout)

  // The kernel's layout, made by prepare(): groups of 4 rows interleaved block by block, each
  // block group holding the 4 rows' quants then their f16 scales (and mins), so one group is
  // read as one sequential stream of exactly the file's bytes (f32 scales, as before 2026-12-02,
  // made the stream 16% longer for no measurable gain in speed).
  //   Q4_1: [4 x 16 B quants][4 f16 scales][4 f16 mins] = 80 B per block group
  //   Q8_0: [4 x 32 B quants][4 f16 scales]             = 136 B per block group
  // Rows are padded to a multiple of 4 with zero scales.
  at::Tensor packed;  // uint8 [padded rows / 4, blocks * group bytes]

  bool defined() const { return data.defined(); }
  void prepare();
  // Rows of several matrices of one format and width, stacked (fused projections).
  static QuantMatrix cat_rows(const std::vector<QuantMatrix>& parts);
  at::Tensor dequantize() const;  // float32 [rows, cols]
};

// The block kernels. Float kernels (a portable loop, AVX2 + FMA, AVX-512) convert the quants to
// float and keep the activations exact. Int8 kernels (a portable loop, AVX2's vpmaddubsw,
// AVX-512 VNNI's vpdpbusd) first round each block of 32 activations to int8 with one float scale,
// as llama.cpp does, and take exact integer dot products: several times fewer instructions per
// weight, at a relative rounding error of about 1/254 per activation block. The fixed-point VNNI
// kernel sits between: Q4_1 against activations written as 29-bit integers per block (four int8
// digits, split_activation_digits), float32-accurate at half the float kernel's instructions;
// Q8_0 matrices take the AVX-512 float kernel under it.
enum class QuantKernelKind { Scalar, Avx2, Avx512, Int8Scalar, Int8Avx2, Int8Vnni, FixedVnni };
std::vector<QuantKernelKind> all_quant_kernels();
bool quant_kernel_supported(QuantKernelKind k);
bool quant_kernel_rounds_activations(QuantKernelKind k);
// The kernel decoding uses: ICAE_QUANT_KERNEL=scalar|avx2|avx512|int8-scalar|int8-avx2|int8-vnni|
// fixed-vnni picks one this CPU supports; otherwise the fastest float32-accurate one (fixed-vnni
// where AVX-512 VNNI runs, else avx512, avx2, scalar).
QuantKernelKind quant_kernel_default();
const char* quant_kernel_name(QuantKernelKind k);
// The int8 kernels' activation rounding, for `blocks` consecutive blocks of 32 floats:
// d[b] = max |x| / 127, q = round(x / d[b]) (to nearest even; a zero block has d = 0, q = 0).
void quantise_activations(const float* x, int64_t blocks, int8_t* q, float* d);
// The fixed-point kernel's activations, for `blocks` consecutive blocks of 32 floats: a power of
// two unit[b] and integers X = round(x / unit[b]) with |X| <= 127 * 2^21, four signed digits each
// (X = a0 2^21 + a1 2^14 + a2 2^7 + a3, a1..a3 in [-64, 63]), stored per block in 512 bytes as the
// kernel's 128-bit lanes read them: digit k of activation j at digits[b * 512 + 128 k + 64 (j / 16)
// + 16 l + j % 16] for each lane l = 0..3. x = X unit exactly wherever |x| >= max |x| / 8, and within
// max |x| / (127 2^21) (about 2^-28 max |x|) elsewhere. A zero block has unit 0; a block with NaN or infinity unit NaN.
// Needs AVX-512 (Unsupported otherwise).
void split_activation_digits(const float* x, int64_t blocks, int8_t* digits, float* unit);
// Whether the default kernel is vectorised rather than the scalar loop.
bool quant_kernels_vectorised();

// y = x W^T for x [..., cols] (any float dtype, CPU), returned in x's dtype. Meant for a few
// rows of x (decoding); parallel over the rows of W with libtorch's intra-op threads.
at::Tensor quant_linear(const at::Tensor& x, const QuantMatrix& w);
at::Tensor quant_linear(const at::Tensor& x, const QuantMatrix& w, QuantKernelKind kernel);
// The same on raw float32 buffers: x [n, cols] -> y [n, rows] (no tensors, no dispatch).
void quant_gemv(const QuantMatrix& w, const float* x, int64_t n, float* y);
void quant_gemv(const QuantMatrix& w, const float* x, int64_t n, float* y, QuantKernelKind kernel);

}  // namespace icae
