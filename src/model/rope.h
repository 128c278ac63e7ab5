// Rotary position embeddings as Hugging Face computes them (rotate_half layout: the two halves
// of each head dimension form the pairs).
#pragma once
#include <ATen/core/Tensor.h>

#include "icae/model/config.h"

namespace icae::rope {

// Inverse frequencies [head_dim / 2] in float32 after the configured scaling (default, linear,
// llama3), on the given device.
at::Tensor inverse_frequencies(const ModelConfig& config, at::Device device);

// cos [B, 1, T, D] and the sign-folded sin [B, 1, T, D] (first half negated) in `dtype` for
// position ids [B, T]. Folding the sign into sin saves the negation in every layer.
std::pair<at::Tensor, at::Tensor> cos_sin(const at::Tensor& inv_freq, const at::Tensor& position_ids,
                                          at::ScalarType dtype);

// x * cos + rotate_half(x) * sin for x [B, heads, T, D], with rotate_half(x) = [-x2, x1]
// computed as [x2, x1] * signed_sin: bit-identical to Hugging Face's formula.
at::Tensor apply(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& signed_sin);

}  // namespace icae::rope
