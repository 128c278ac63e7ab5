// Known model shapes with random weights: benchmarks of big models (Llama-2-7B, Mistral-7B)
// without their checkpoints. Shared by bench/model_bench and `icae bench`.
#pragma once
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <string>
#include <vector>

#include "icae/io/tensor_io.h"
#include "icae/model/config.h"

namespace icae::eval {

const std::vector<std::string>& shape_names();  // llama2-7b, mistral-7b, smollm2-135m, tinyllama-1.1b
// A built-in shape by name, or any Hugging Face config.json by path (name ending in .json).
ModelConfig shape_config(const std::string& name);
// Random weights under the Hugging Face names: normal(0, 0.02) matrices, norms 1, biases 0.
// Drawn directly in the target dtype on the target device, so a big shape never needs a float32
// copy on the host.
TensorMap random_weights(const ModelConfig& config, at::Device device, at::ScalarType dtype, uint64_t seed);

}  // namespace icae::eval
