// A Llama-family model from a GGUF file (llama.cpp's format): the config from its metadata and
// the weights dequantised to float32 or bfloat16 under Hugging Face names, ready for
// icae::Transformer. Undoes the row permutation llama.cpp's converter applies to the Q and K
// projections of Llama models (its rotary layout pairs dimensions i and i+1, Hugging Face's
// pairs i and i + head_dim/2).
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/core/ScalarType.h>

#include <string>
#include <unordered_map>

#include "icae/model/config.h"
#include "icae/model/tensor_names.h"

namespace icae {

namespace gguf {
class GgufFile;
}

struct LoadedWeights {
  ModelConfig config;
  std::unordered_map<std::string, at::Tensor> tensors;  // Hugging Face names; no lm_head when tied
};

// The config from `{arch}.*` and `tokenizer.ggml.*` metadata (arch: llama, mistral, qwen2).
// Throws icae::Error naming the file and key for missing or inconsistent values, Unsupported for
// features icae's transformer does not have (partial rotary, rope_freqs tensors, yarn).
ModelConfig gguf_model_config(const gguf::GgufFile& file);

// Maps and dequantises every tensor (dtype: at::kFloat or at::kBFloat16; on CPU). A tensor name
// it does not know, a layer index beyond block_count or a shape that does not fit the config is
// an error naming the tensor.
LoadedWeights load_gguf_model(const std::string& path, at::ScalarType dtype);
LoadedWeights load_gguf_model(const gguf::GgufFile& file, at::ScalarType dtype);

// GGUF -> Hugging Face name ("blk.3.attn_q.weight" -> "model.layers.3.self_attn.q_proj.weight");
// empty when the name is not a model weight this mapping knows.
std::string gguf_to_hf_name(const std::string& gguf_name);

// The table entry of a GGUF tensor name (icae/model/tensor_names.h); nullptr when unknown.
const TensorRoleInfo* gguf_tensor_role(const std::string& gguf_name);

// Inverse of llama.cpp's converter permutation of a [n_head * head_dim, in] Q or K weight.
at::Tensor unpermute_rotary_rows(const at::Tensor& w, int64_t n_head);

}  // namespace icae
