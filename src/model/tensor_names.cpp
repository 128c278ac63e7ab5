// The tensor table and the lookups over it.
#include "icae/model/tensor_names.h"

#include "icae/util/error.h"

namespace icae {

namespace {

using R = TensorRole;
using D = Dim;
using F = FusedGroup;
using P = Presence;
using K = TensorKind;
using Rot = RotaryRows;

// The order is the models' own (Hugging Face's state dict): it fixes the order of
// Transformer::weight_names() and the random number stream of random weights.
const std::vector<TensorRoleInfo> kRoles = {
    {R::TokenEmbedding, false, "model.embed_tokens.weight", "token_embd.weight", D::Vocab, D::Hidden, P::Always, K::Matrix, F::None, Rot::None},
    {R::AttnNorm, true, "input_layernorm.weight", "attn_norm.weight", D::Hidden, D::None, P::Always, K::Norm, F::None, Rot::None},
    {R::FfnNorm, true, "post_attention_layernorm.weight", "ffn_norm.weight", D::Hidden, D::None, P::Always, K::Norm, F::None, Rot::None},
    {R::AttnQ, true, "self_attn.q_proj.weight", "attn_q.weight", D::QueryWidth, D::Hidden, P::Always, K::Matrix, F::Qkv, Rot::QueryHeads},
    {R::AttnQBias, true, "self_attn.q_proj.bias", "attn_q.bias", D::QueryWidth, D::None, P::AttentionBias, K::Bias, F::QkvBias, Rot::QueryHeads},
    {R::AttnK, true, "self_attn.k_proj.weight", "attn_k.weight", D::KvWidth, D::Hidden, P::Always, K::Matrix, F::Qkv, Rot::KvHeads},
    {R::AttnKBias, true, "self_attn.k_proj.bias", "attn_k.bias", D::KvWidth, D::None, P::AttentionBias, K::Bias, F::QkvBias, Rot::KvHeads},
    {R::AttnV, true, "self_attn.v_proj.weight", "attn_v.weight", D::KvWidth, D::Hidden, P::Always, K::Matrix, F::Qkv, Rot::None},
    {R::AttnVBias, true, "self_attn.v_proj.bias", "attn_v.bias", D::KvWidth, D::None, P::AttentionBias, K::Bias, F::QkvBias, Rot::None},
    {R::AttnOutput, true, "self_attn.o_proj.weight", "attn_output.weight", D::Hidden, D::QueryWidth, P::Always, K::Matrix, F::None, Rot::None},
    {R::FfnGate, true, "mlp.gate_proj.weight", "ffn_gate.weight", D::Intermediate, D::Hidden, P::Always, K::Matrix, F::GateUp, Rot::None},
    {R::FfnUp, true, "mlp.up_proj.weight", "ffn_up.weight", D::Intermediate, D::Hidden, P::Always, K::Matrix, F::GateUp, Rot::None},
    {R::FfnDown, true, "mlp.down_proj.weight", "ffn_down.weight", D::Hidden, D::Intermediate, P::Always, K::Matrix, F::None, Rot::None},
    {R::OutputNorm, false, "model.norm.weight", "output_norm.weight", D::Hidden, D::None, P::Always, K::Norm, F::None, Rot::None},
    {R::Output, false, "lm_head.weight", "output.weight", D::Vocab, D::Hidden, P::Untied, K::Matrix, F::None, Rot::None},
};

int64_t resolve(const ModelConfig& c, Dim d) {
  switch (d) {
    case Dim::None: return 0;
    case Dim::Vocab: return c.vocab_size;
    case Dim::Hidden: return c.hidden_size;
    case Dim::QueryWidth: return c.num_attention_heads * c.head_dim;
    case Dim::KvWidth: return c.num_key_value_heads * c.head_dim;
    case Dim::Intermediate: return c.intermediate_size;
  }
  fail(ErrorKind::Internal, "unhandled tensor dimension");
}

std::string name_of(const TensorRoleInfo& r, const char* name, std::string_view prefix, int64_t layer) {
  if (!r.per_layer) return name;
  return std::string(prefix) + std::to_string(layer) + "." + name;
}

template <typename Name>
const TensorRoleInfo* find_role(std::string_view name, bool per_layer, Name name_field) {
  for (const TensorRoleInfo& r : kRoles)
    if (r.per_layer == per_layer && name == name_field(r)) return &r;
  return nullptr;
}

}  // namespace

const std::vector<TensorRoleInfo>& tensor_roles() { return kRoles; }

const TensorRoleInfo& role_info(TensorRole role) {
  for (const TensorRoleInfo& r : kRoles)
    if (r.role == role) return r;
  fail(ErrorKind::Internal, "tensor role missing from the table");
}

std::string hf_name(TensorRole role, int64_t layer) {
  const TensorRoleInfo& r = role_info(role);
  return name_of(r, r.hf, kHfLayerPrefix, layer);
}

std::string gguf_name(TensorRole role, int64_t layer) {
  const TensorRoleInfo& r = role_info(role);
  return name_of(r, r.gguf, kGgufLayerPrefix, layer);
}

std::string hf_module(TensorRole role, int64_t layer) {
  const std::string name = hf_name(role, layer);
  return name.substr(0, name.rfind('.'));
}

const TensorRoleInfo* find_hf_role(std::string_view name, bool per_layer) {
  return find_role(name, per_layer, [](const TensorRoleInfo& r) { return r.hf; });
}

const TensorRoleInfo* find_gguf_role(std::string_view name, bool per_layer) {
  return find_role(name, per_layer, [](const TensorRoleInfo& r) { return r.gguf; });
}

bool has_tensor(const ModelConfig& c, TensorRole role) {
  switch (role_info(role).presence) {
    case Presence::Always: return true;
    case Presence::AttentionBias: return c.attention_bias;
    case Presence::Untied: return !c.tie_word_embeddings;
  }
  fail(ErrorKind::Internal, "unhandled tensor presence");
}

std::vector<int64_t> tensor_shape(const ModelConfig& c, TensorRole role) {
  const TensorRoleInfo& r = role_info(role);
  if (r.cols == Dim::None) return {resolve(c, r.rows)};
  return {resolve(c, r.rows), resolve(c, r.cols)};
}

std::vector<TensorRole> fused_parts(FusedGroup group) {
  std::vector<TensorRole> out;
  if (group == FusedGroup::None) return out;
  for (const TensorRoleInfo& r : kRoles)
    if (r.fused == group) out.push_back(r.role);
  return out;
}

RowBlock fused_rows(const ModelConfig& c, TensorRole role) {
  RowBlock block;
  for (TensorRole part : fused_parts(role_info(role).fused)) {
    const int64_t rows = tensor_shape(c, part)[0];
    if (part == role) {
      block.rows = rows;
      return block;
    }
    block.offset += rows;
  }
  fail(ErrorKind::Internal, "tensor is not part of a fused matrix");
}

std::vector<ModelTensor> model_tensors(const ModelConfig& c) {
  std::vector<ModelTensor> out;
  auto add = [&](const TensorRoleInfo& r, int64_t layer) {
    if (has_tensor(c, r.role)) out.push_back({hf_name(r.role, layer), r.role, layer, tensor_shape(c, r.role)});
  };
  // Global tensors before the first layer tensor come first, those after it last.
  bool layers_done = false;
  for (const TensorRoleInfo& r : kRoles) {
    if (!r.per_layer) {
      add(r, -1);
      continue;
    }
    if (layers_done) continue;
    for (int64_t l = 0; l < c.num_hidden_layers; ++l)
      for (const TensorRoleInfo& lr : kRoles)
        if (lr.per_layer) add(lr, l);
    layers_done = true;
  }
  return out;
}

}  // namespace icae
