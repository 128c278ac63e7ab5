// Every tensor of a Llama-family model, once (in the spirit of llama.cpp's llama-arch): its
// Hugging Face name, its GGUF name, its shape for a config, and the fused matrix the transformer
// stores it in. Loading, the GGUF reader, LoRA and the benchmarks' random weights all read this
// table, so a name or a shape is spelled in one place.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "icae/model/config.h"

namespace icae {

enum class TensorRole {
  TokenEmbedding,
  AttnNorm,
  FfnNorm,
  AttnQ,
  AttnQBias,
  AttnK,
  AttnKBias,
  AttnV,
  AttnVBias,
  AttnOutput,
  FfnGate,
  FfnUp,
  FfnDown,
  OutputNorm,
  Output,
};

// A dimension of a tensor's shape, resolved against a ModelConfig.
enum class Dim { None, Vocab, Hidden, QueryWidth /* heads x head_dim */, KvWidth, Intermediate };

// The transformer multiplies some projections as one matrix; their tensors are row blocks of it,
// in the table's order.
enum class FusedGroup { None, Qkv, QkvBias, GateUp };

// When a model has the tensor.
enum class Presence { Always, AttentionBias /* config.attention_bias */, Untied /* !tie_word_embeddings */ };

// What the values are: a weight matrix, a norm's scale, a bias (random weights are drawn by it).
enum class TensorKind { Matrix, Norm, Bias };

// Rows grouped per head in rotary pairs: llama.cpp's converter permutes them for llama models.
enum class RotaryRows { None, QueryHeads, KvHeads };

struct TensorRoleInfo {
  TensorRole role;
  bool per_layer;     // named under "model.layers.N." / "blk.N."
  const char* hf;     // Hugging Face name (the part after the layer prefix when per layer)
  const char* gguf;   // GGUF name (the part after the layer prefix when per layer)
  Dim rows, cols;     // cols None: a vector
  Presence presence;
  TensorKind kind;
  FusedGroup fused;
  RotaryRows rotary;
};

inline constexpr std::string_view kHfLayerPrefix = "model.layers.";
inline constexpr std::string_view kGgufLayerPrefix = "blk.";

// The whole table, in the order of model_tensors().
const std::vector<TensorRoleInfo>& tensor_roles();
const TensorRoleInfo& role_info(TensorRole role);

// Names of one tensor (layer ignored for global tensors).
std::string hf_name(TensorRole role, int64_t layer = -1);
std::string gguf_name(TensorRole role, int64_t layer = -1);
// The module a weight or bias belongs to: hf_name without ".weight" / ".bias"
// ("model.layers.3.self_attn.q_proj"), as peft names LoRA targets.
std::string hf_module(TensorRole role, int64_t layer = -1);

// The role of a name: a global name, or with per_layer the part after the layer prefix
// ("self_attn.q_proj.weight" / "attn_q.weight"). nullptr when the table has no such tensor.
const TensorRoleInfo* find_hf_role(std::string_view name, bool per_layer);
const TensorRoleInfo* find_gguf_role(std::string_view name, bool per_layer);

bool has_tensor(const ModelConfig& config, TensorRole role);
std::vector<int64_t> tensor_shape(const ModelConfig& config, TensorRole role);

// The roles stored in one fused matrix, in row order; and where a role's rows sit in it.
std::vector<TensorRole> fused_parts(FusedGroup group);
struct RowBlock {
  int64_t offset = 0, rows = 0;
};
RowBlock fused_rows(const ModelConfig& config, TensorRole role);

// Every tensor a model with this config has, under Hugging Face names: the embedding, each
// layer's tensors, the final norm and (untied) the LM head.
struct ModelTensor {
  std::string name;
  TensorRole role;
  int64_t layer;  // -1 for global tensors
  std::vector<int64_t> shape;
};
std::vector<ModelTensor> model_tensors(const ModelConfig& config);

}  // namespace icae
