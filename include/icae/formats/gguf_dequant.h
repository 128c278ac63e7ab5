// Dequantisation of GGUF tensor data into f32, written from ggml's block definitions
// (ggml-common.h) and its reference dequantize_row_* semantics.
#pragma once
#include <cstdint>
#include <vector>

#include "icae/formats/gguf.h"

namespace icae::gguf {

// Converts IEEE half / bfloat16 bit patterns to float (exact: every value is representable).
float fp16_to_fp32(uint16_t h);
float bf16_to_fp32(uint16_t b);

// Whether dequantize() handles this type (F32, F16, BF16, F64, I8-I32, Q4_0, Q4_1, Q5_0, Q5_1,
// Q8_0, Q8_1, Q2_K..Q6_K, Q8_K, IQ4_NL, IQ4_XS).
bool can_dequantize(TensorType t);

// Dequantises `n` elements of type `t` from `src` (n / block_size blocks, contiguous) into `dst`.
// `n` must be a multiple of the type's block size. Throws icae::Error(Unsupported) for a type
// it cannot convert, BadInput when n is not a whole number of blocks.
void dequantize(TensorType t, const void* src, float* dst, int64_t n);

// Dequantises rows [row_begin, row_end) of a tensor into dst (row-major, ne[0] floats a row),
// so that callers can split a large tensor over threads.
void dequantize_rows(const TensorInfo& t, int64_t row_begin, int64_t row_end, float* dst);

// The whole tensor as floats, ne[0] fastest (row-major with rows of ne[0]).
std::vector<float> dequantize(const TensorInfo& t);

}  // namespace icae::gguf
