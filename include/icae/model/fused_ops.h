// RMSNorm and SwiGLU for CPU training: forward and backward each one pass over the data, with
// AVX-512 or AVX2 (where the CPU has it), instead of ATen's composite operators (RMSNorm alone was pow,
// mean, add, rsqrt, mul and their backwards: ~6 ms a layer on SmolLM2 batch 8 x 160 in bf16).
// Same arithmetic and roundings as the model's ATen path (Hugging Face's): RMSNorm in float32,
// rounded to the input's dtype, then times the weight; SwiGLU as silu(gate) rounded, times up.
#pragma once
#include <ATen/ATen.h>

namespace icae {

// Whether the fused operators serve x: a contiguous float32 or bf16 CPU tensor, on an AVX-512 or AVX2
// CPU, with gradients wanted for it and none for `frozen` (the norm's weight).
bool fused_ops_apply(const at::Tensor& x, const at::Tensor& frozen = {});

// Hugging Face's LlamaRMSNorm: y = to_dtype(x * rsqrt(mean(x^2) + eps)) * weight, over the last
// dimension. Gradient for x only (the weight is frozen).
at::Tensor fused_rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps);

// SwiGLU on the fused gate/up projection: gu [..., 2 I] -> silu(gu[..., :I]) * gu[..., I:].
at::Tensor fused_swiglu(const at::Tensor& gu);

}  // namespace icae
