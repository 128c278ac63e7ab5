// Text generation with a KV cache for one sequence: from token ids or from a prefix of
// embeddings (ICAE: memory slots + AE/FT + prompt), or from any one-row prefill input (key/value
// slots). The stop rules and the result are the row decoder's (row_decoder.h).
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

#include "icae/infer/row_decoder.h"

namespace icae {

class Transformer;
struct ForwardInput;

using GenerateOptions = RowDecoderOptions;
using GenerateResult = Completion;

GenerateResult generate(const Transformer& model, const at::Tensor& prefix_embeds /* [T, H] */,
                        const GenerateOptions& options);
// From any one-row prefill input (an ICAE decoder prefix with either kind of slots:
// Icae::decoder_input). The cache holds the prefill's positions, slots included.
GenerateResult generate(const Transformer& model, const ForwardInput& prefill, const GenerateOptions& options);
GenerateResult generate_from_ids(const Transformer& model, const std::vector<int64_t>& prompt_ids,
                                 const GenerateOptions& options);
}  // namespace icae
