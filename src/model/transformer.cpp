// Construction (strict weight checks, fusing) and the forward pass of the transformer.
#include "icae/model/transformer.h"

#include <ATen/ATen.h>

#include <cmath>
#include <cstdio>
#include <limits>
#include <set>
#include <sstream>

#include "icae/model/fused_ops.h"
#include "icae/model/kv_cache.h"
#include "icae/model/lora.h"
#include "icae/model/tensor_names.h"
#include "icae/util/error.h"
#include "activation_checkpoint.h"
#include "rope.h"

namespace icae {

namespace {

std::string shape_str(at::IntArrayRef s) {
  std::ostringstream o;
  o << "[";
  for (size_t i = 0; i < s.size(); ++i) o << (i ? ", " : "") << s[i];
  return o.str() + "]";
}

// Quantised blocks serve only inference on a few rows (decoding): prefill and training keep the
// dense weights, where oneDNN's AMX kernels and autograd apply.
constexpr int64_t kQuantMaxRows = Transformer::kQuantMaxRows;
bool use_quant(const QuantMatrix* q, const at::Tensor& x) {
  return q && q->defined() && x.device().is_cpu() && !at::GradMode::is_enabled() &&
         x.numel() / x.size(-1) <= kQuantMaxRows;
}

// x W^T (+ b): at::linear picks oneDNN/cuBLAS for us; the quantised kernel when it applies.
at::Tensor project(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b = {}, const QuantMatrix* q = nullptr) {
  if (use_quant(q, x)) return b.defined() ? quant_linear(x, *q) + b : quant_linear(x, *q);
  return b.defined() ? at::linear(x, w, b) : at::linear(x, w);
}

// Hugging Face's LlamaRMSNorm: normalise in float32, cast back, then scale by the weight.
// ATen's fused rms_norm computes in float32 internally and rounds once to the input's type, so
// without a weight it is bit-identical to HF's explicit cast (checked on bf16); the weight then
// multiplies in the input type as in HF. No float32 copies of the activations.
at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  if (fused_ops_apply(x, weight)) return fused_rms_norm(x, weight, eps);  // CPU training: one pass each way
  if (x.scalar_type() == at::kFloat) return at::rms_norm(x, {x.size(-1)}, weight, eps);
  return at::rms_norm(x, {x.size(-1)}, std::nullopt, eps) * weight;
}

struct AttentionMask {
  std::optional<at::Tensor> mask;  // bool [B or 1, 1, T, S]; true = may attend
  bool is_causal = false;
};

// Chooses the cheapest correct masking: none for one new token without padding, SDPA's causal
// flag for a fresh causal block, an explicit mask otherwise (padding, or a block after a cache).
AttentionMask build_mask(const at::Tensor& attention_mask, int64_t past, int64_t t, at::Device device) {
  AttentionMask m;
  if (!attention_mask.defined()) {
    if (past == 0) m.is_causal = t > 1;
    if (past == 0 || t == 1) return m;
  }
  const int64_t s = past + t;
  at::Tensor qpos = at::arange(past, s, at::TensorOptions().device(device).dtype(at::kLong)).unsqueeze(1);
  at::Tensor kpos = at::arange(0, s, at::TensorOptions().device(device).dtype(at::kLong)).unsqueeze(0);
  at::Tensor mask = (kpos <= qpos).view({1, 1, t, s});
  if (attention_mask.defined()) {
    ICAE_CHECK(attention_mask.dim() == 2 && attention_mask.size(1) == s, ErrorKind::Usage,
               "attention_mask must be [B, past + T] = [B, " + std::to_string(s) + "], got " +
                   shape_str(attention_mask.sizes()));
    mask = mask & attention_mask.to(device).to(at::kBool).view({attention_mask.size(0), 1, 1, s});
    // A padding query sees no key at all; let it see itself so the softmax stays finite.
    // Its output is never used.
    at::Tensor diag = (kpos == qpos).view({1, 1, t, s});
    mask = mask | (diag & mask.logical_not().all(-1, true));
  }
  m.mask = mask;
  return m;
}

// The mask of a block whose keys are slots [P] then tokens [T], ordered by position rather than
// by index: a query sees a key at or before its own position. valid [B, P + T] (optional) marks
// real keys; a query that sees nothing (padding) sees itself, so the softmax stays finite.
at::Tensor position_mask(const at::Tensor& slot_pos, const at::Tensor& pos, const at::Tensor& valid) {
  const int64_t b = pos.size(0), t = pos.size(1), p = slot_pos.size(1);
  at::Tensor kpos = at::cat({slot_pos.expand({b, p}), pos}, 1);                 // [B, P + T]
  at::Tensor mask = kpos.unsqueeze(1) <= pos.unsqueeze(2);                       // [B, T, P + T]
  if (valid.defined()) {
    ICAE_CHECK(valid.dim() == 2 && valid.size(1) == p + t, ErrorKind::Usage,
               "attention_mask must be [B, slots + T] = [B, " + std::to_string(p + t) + "] with key/value slots, got " +
                   shape_str(valid.sizes()));
    mask = mask & valid.to(pos.device()).to(at::kBool).unsqueeze(1);
    at::Tensor self = at::zeros({t, p + t}, mask.options());
    self.narrow(1, p, t).fill_diagonal_(true);
    mask = mask | (self.unsqueeze(0) & mask.logical_not().all(-1, true));
  }
  return mask.unsqueeze(1);  // [B, 1, T, P + T]
}

}  // namespace

Transformer::Transformer(ModelConfig config, TensorMap weights, const ModelLoadOptions& options)
    : config_(std::move(config)), options_(options) {
  config_.validate();
  // Strict loading: every expected tensor present with its shape, nothing left over.
  std::set<std::string> used;
  auto take = [&](const std::string& name, const std::vector<int64_t>& shape) -> at::Tensor {
    auto it = weights.find(name);
    ICAE_CHECK(it != weights.end(), ErrorKind::Mismatch,
               "missing tensor '" + name + "' (expected shape " + shape_str(shape) + ")");
    ICAE_CHECK(it->second.sizes().vec() == shape, ErrorKind::Mismatch,
               "tensor '" + name + "' has shape " + shape_str(it->second.sizes()) + ", expected " +
                   shape_str(shape));
    used.insert(name);
    return it->second.to(options_.device, options_.dtype);
  };
  std::map<std::string, at::Tensor> t;
  for (const ModelTensor& m : model_tensors(config_)) t[m.name] = take(m.name, m.shape);
  for (const auto& [name, tensor] : weights) {
    // rotary_emb.inv_freq is a buffer some older checkpoints saved; it is recomputed here.
    if (used.count(name) || name.find("rotary_emb.inv_freq") != std::string::npos) continue;
    fail(ErrorKind::Mismatch, "unknown tensor '" + name + "' with shape " + shape_str(tensor.sizes()) +
                                  " (not part of a " + config_.model_type + " model with this config)");
  }
  weights.clear();

  embed_ = t[hf_name(TensorRole::TokenEmbedding)];
  norm_ = t[hf_name(TensorRole::OutputNorm)];
  lm_head_ = config_.tie_word_embeddings ? embed_ : t[hf_name(TensorRole::Output)];
  for (int64_t l = 0; l < config_.num_hidden_layers; ++l) {
    // The fused matrices are their parts' rows stacked in the table's order (see fused_rows);
    // each part is dropped once copied in.
    auto fuse = [&](FusedGroup group) {
      std::vector<at::Tensor> parts;
      for (TensorRole role : fused_parts(group)) {
        auto it = t.find(hf_name(role, l));
        parts.push_back(std::move(it->second));
        t.erase(it);
      }
      return at::cat(parts, 0);
    };
    LayerWeights w;
    w.input_norm = t[hf_name(TensorRole::AttnNorm, l)];
    w.post_norm = t[hf_name(TensorRole::FfnNorm, l)];
    w.qkv = fuse(FusedGroup::Qkv);
    if (config_.attention_bias) w.qkv_bias = fuse(FusedGroup::QkvBias);
    w.o = t[hf_name(TensorRole::AttnOutput, l)];
    w.gate_up = fuse(FusedGroup::GateUp);
    w.down = t[hf_name(TensorRole::FfnDown, l)];
    layers_.push_back(std::move(w));
  }
  inv_freq_ = rope::inverse_frequencies(config_, options_.device);
}

at::Tensor Transformer::weight(const std::string& name) const {
  if (const TensorRoleInfo* r = find_hf_role(name, false)) {
    if (r->role == TensorRole::TokenEmbedding) return embed_;
    if (r->role == TensorRole::OutputNorm) return norm_;
    if (r->role == TensorRole::Output) return lm_head_;
  }
  const std::string prefix(kHfLayerPrefix);
  if (name.compare(0, prefix.size(), prefix) == 0) {
    size_t dot = name.find('.', prefix.size());
    int64_t l = std::stoll(name.substr(prefix.size(), dot - prefix.size()));
    ICAE_CHECK(l >= 0 && l < config_.num_hidden_layers, ErrorKind::Usage, "no layer in '" + name + "'");
    const auto& w = layers_[l];
    const TensorRoleInfo* r = find_hf_role(name.substr(dot + 1), true);
    if (r && r->fused != FusedGroup::None) {
      const at::Tensor& fused = r->fused == FusedGroup::Qkv ? w.qkv : r->fused == FusedGroup::QkvBias ? w.qkv_bias : w.gate_up;
      if (fused.defined()) {
        const RowBlock block = fused_rows(config_, r->role);
        return fused.narrow(0, block.offset, block.rows);
      }
    } else if (r) {
      if (r->role == TensorRole::AttnNorm) return w.input_norm;
      if (r->role == TensorRole::FfnNorm) return w.post_norm;
      if (r->role == TensorRole::AttnOutput) return w.o;
      if (r->role == TensorRole::FfnDown) return w.down;
    }
  }
  fail(ErrorKind::Usage, "no weight named '" + name + "'");
}

std::vector<std::string> Transformer::weight_names() const {
  std::vector<std::string> out;
  for (const ModelTensor& m : model_tensors(config_)) out.push_back(m.name);
  return out;
}

std::string Transformer::fingerprint() const {
  // FNV-1a over bf16-rounded samples of a few tensors: stable across devices and load dtypes
  // (f32, bf16) yet different for any other model.
  uint64_t h = 1469598103934665603ull;
  auto mix = [&](const at::Tensor& t) {
    at::Tensor flat = t.detach().reshape(-1);
    const int64_t n = flat.numel(), step = std::max<int64_t>(1, n / 257);
    at::Tensor sample = flat.slice(0, 0, n, step).to(at::kCPU).to(at::kBFloat16).contiguous();
    const auto* bytes = static_cast<const uint8_t*>(sample.data_ptr());
    for (int64_t i = 0; i < sample.numel() * 2; ++i) h = (h ^ bytes[i]) * 1099511628211ull;
  };
  mix(embed_);
  for (const auto& w : layers_) {
    mix(w.qkv);
    mix(w.down);
  }
  mix(norm_);
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

at::Tensor Transformer::embed(const at::Tensor& ids) const {
  // Checked where the ids are on the CPU (as they come from callers); on a GPU the check would
  // cost two device synchronisations per decoded token.
  if (ids.device().is_cpu() && ids.numel() > 0) {
    const auto [lo, hi] = at::aminmax(ids);
    ICAE_CHECK(lo.item<int64_t>() >= 0 && hi.item<int64_t>() < config_.vocab_size, ErrorKind::BadInput,
               "token id out of range [0, " + std::to_string(config_.vocab_size) + ")");
  }
  return at::embedding(embed_, ids.to(options_.device));
}

at::Tensor Transformer::lm_head(const at::Tensor& hidden) const { return project(hidden, lm_head_, {}, &quant_lm_head_); }

void Transformer::attach_quantized(const std::unordered_map<std::string, QuantMatrix>& q) {
  ICAE_CHECK(options_.device.is_cpu(), ErrorKind::Unsupported, "quantised decoding runs on the CPU only");
  auto fused = [&](const std::vector<std::string>& names) -> QuantMatrix {
    std::vector<QuantMatrix> parts;
    for (const auto& n : names) {
      auto it = q.find(n);
      if (it == q.end()) return {};
      parts.push_back(it->second);
    }
    for (const auto& p : parts)
      if (p.format != parts[0].format) return {};
    return parts.size() == 1 ? parts[0] : QuantMatrix::cat_rows(parts);
  };
  quant_layers_.clear();
  for (int64_t l = 0; l < config_.num_hidden_layers; ++l) {
    auto names = [&](FusedGroup group) {
      std::vector<std::string> out;
      for (TensorRole role : fused_parts(group)) out.push_back(hf_name(role, l));
      return out;
    };
    QuantLayer ql;
    ql.qkv = fused(names(FusedGroup::Qkv));
    ql.o = fused({hf_name(TensorRole::AttnOutput, l)});
    ql.gate_up = fused(names(FusedGroup::GateUp));
    ql.down = fused({hf_name(TensorRole::FfnDown, l)});
    quant_layers_.push_back(std::move(ql));
  }
  quant_lm_head_ = fused({hf_name(config_.tie_word_embeddings ? TensorRole::TokenEmbedding : TensorRole::Output)});
}

// What every layer of one forward call shares, held by value: activation checkpointing reruns a
// layer after forward() has returned.
struct LayerCall {
  at::Tensor cos, sin;
  std::optional<at::Tensor> mask;  // see build_mask
  bool is_causal = false;
  const LoraAdapter* lora = nullptr;  // unmerged adapter whose deltas are added, or nullptr
  bool merged = false;
  const LoraAdapter* merged_lora = nullptr;
  KVCache* cache = nullptr;
  // Or one cache per row (decode_rows: one new token per row, rows of different lengths).
  const std::vector<KVCache*>* row_caches = nullptr;
  bool training = false;
  at::Generator* generator = nullptr;
  // Key/value slots before the tokens ([B, P, layers, 2, Hkv, D], keys unrotated) and the
  // rotation at their positions; see ForwardInput::kv_prefix.
  at::Tensor kv_prefix, prefix_cos, prefix_sin;
  KvCapture* kv_capture = nullptr;
};

namespace {

// Attention as explicit matmuls + softmax (float32) for CPU training: ATen's CPU flash-attention
// backward took 4.5 s of a 15 s SmolLM2 update (8 x 161 tokens, bf16), this path a fraction.
// q [B, Hq, T, D], k and v [B, Hkv, S, D]; query heads share key/value heads in groups of Hq / Hkv.
at::Tensor attention_for_training(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                  const std::optional<at::Tensor>& mask, bool is_causal) {
  const int64_t b = q.size(0), hq = q.size(1), t = q.size(2), d = q.size(3), hkv = k.size(1), s = k.size(2);
  const int64_t g = hq / hkv;
  // The scale goes on q (D wide) rather than on the scores (S wide); the mask is added, not
  // filled in, so its backward is a plain pass-through.
  at::Tensor qg = (q * (1.0 / std::sqrt(static_cast<double>(d)))).reshape({b, hkv, g * t, d});
  // Scores and probabilities stay in the activations' type: ATen's softmax accumulates in
  // float32 internally (bf16: within one ulp of a float32 softmax), and skipping the float32
  // copies of [B, H, T, S] halves this function's memory traffic.
  at::Tensor scores = at::matmul(qg, k.transpose(-1, -2)).view({b, hkv, g, t, s});
  const float inf = std::numeric_limits<float>::infinity();
  if (mask) {
    at::Tensor bias = at::zeros(mask->sizes(), q.options()).masked_fill_(mask->logical_not(), -inf);
    scores = scores + bias.view({mask->size(0), 1, 1, t, s});
  } else if (is_causal) {
    scores = scores + at::full({t, s}, -inf, q.options()).triu(s - t + 1);
  }
  at::Tensor probs = at::softmax(scores, -1).view({b, hkv, g * t, s});
  return at::matmul(probs, v).view({b, hq, t, d});
}

// x with LoRA deltas of the targeted members of a fused projection group added: one delta
// tensor for the whole group (zeros for untargeted members) instead of narrow + add + cat,
// whose backward fills full-size zero tensors. `in` is the group's (shared) input; one dropout
// mask serves all of the group's projections.
at::Tensor add_group_lora(const at::Tensor& out, const at::Tensor& in, const LoraAdapter& lora, int64_t layer,
                          const std::vector<std::pair<Proj, int64_t>>& members, bool training, at::Generator* gen) {
  bool any = false;
  for (const auto& [p, width] : members) any = any || lora.targets(p);
  if (!any) return out;
  at::Tensor x = in;
  const double dropout = lora.config().dropout;
  if (training && dropout > 0) {
    if (gen) {
      x = in * lora_dropout_mask(in, dropout, *gen);
    } else {
      x = at::dropout(in, dropout, true);
    }
  }
  const at::ScalarType t = in.scalar_type();
  std::vector<at::Tensor> parts;
  for (const auto& [p, width] : members) {
    if (lora.targets(p)) {
      const LoraPair& pair = lora.pair(layer, p);
      // The scale goes into B ([out, r]) rather than onto the [.., out] product.
      parts.push_back(at::linear(at::linear(x, pair.A.to(t)), (pair.B * lora.scale()).to(t)));
    } else {
      std::vector<int64_t> shape = out.sizes().vec();
      shape.back() = width;
      parts.push_back(at::zeros(shape, out.options()));
    }
  }
  return out + (parts.size() == 1 ? parts[0] : at::cat(parts, -1));
}

}  // namespace

at::Tensor Transformer::layer_forward(int64_t l, at::Tensor x, const LayerCall& c) const {
  const int64_t b = x.size(0), t = x.size(1);
  const int64_t hq = config_.num_attention_heads, hkv = config_.num_key_value_heads, d = config_.head_dim;
  const int64_t inter = config_.intermediate_size;
  const LoraAdapter* lora = c.lora;
  const LayerWeights& w = layers_[l];
  const MergedLayer* m = c.merged ? &c.merged_lora->merged_layer(l) : nullptr;
  const QuantLayer* ql = quant_layers_.empty() ? nullptr : &quant_layers_[l];
  // The quantised copy stands for the base weight only: not where a merged adapter replaces it.
  auto quant = [&](const QuantMatrix QuantLayer::*field, at::Tensor MergedLayer::*merged_field) -> const QuantMatrix* {
    if (!ql || (m && (m->*merged_field).defined())) return nullptr;
    return &(ql->*field);
  };
  auto pick = [&](const at::Tensor& base, at::Tensor MergedLayer::*field) -> const at::Tensor& {
    return (m && (m->*field).defined()) ? m->*field : base;
  };
  auto group = [&](const at::Tensor& out, const at::Tensor& in, std::vector<std::pair<Proj, int64_t>> members) {
    return lora ? add_group_lora(out, in, *lora, l, members, c.training, c.generator) : out;
  };
  // --- attention block
  at::Tensor h = rms_norm(x, w.input_norm, config_.rms_norm_eps);
  at::Tensor qkv = project(h, pick(w.qkv, &MergedLayer::qkv), w.qkv_bias, quant(&QuantLayer::qkv, &MergedLayer::qkv));  // [B, T, (Hq + 2 Hkv) D]
  qkv = group(qkv, h, {{Proj::Q, hq * d}, {Proj::K, hkv * d}, {Proj::V, hkv * d}});
  // split (not narrow): its backward concatenates instead of filling full-size zeros.
  auto qk_v = at::split_with_sizes(qkv, {(hq + hkv) * d, hkv * d}, -1);
  // Rotary embedding of queries and keys together: one set of kernels instead of two.
  at::Tensor qk = rope::apply(qk_v[0].view({b, t, hq + hkv, d}).transpose(1, 2), c.cos, c.sin);  // [B, Hq + Hkv, T, D]
  auto q_k = at::split_with_sizes(qk, {hq, hkv}, 1);
  at::Tensor q = q_k[0];                                           // [B, Hq, T, D]
  at::Tensor k = q_k[1];                                           // [B, Hkv, T, D]
  at::Tensor v = qk_v[1].view({b, t, hkv, d}).transpose(1, 2);
  if (c.kv_capture) {
    // Key/value slots: the keys before RoPE (the decoder rotates them where it places them).
    const at::Tensor& keep = c.kv_capture->index;
    at::Tensor key = qk_v[0].narrow(-1, hq * d, hkv * d).reshape({b * t, hkv * d}).index_select(0, keep);
    at::Tensor value = qk_v[1].reshape({b * t, hkv * d}).index_select(0, keep);
    c.kv_capture->layers.push_back(at::stack({key.view({-1, hkv, d}), value.view({-1, hkv, d})}, 1));  // [N, 2, Hkv, D]
    if (l + 1 == config_.num_hidden_layers) return x;  // nothing after this reaches a slot
  }
  if (c.kv_prefix.defined()) {
    at::Tensor slot = c.kv_prefix.select(2, l);  // [B, P, 2, Hkv, D]
    at::Tensor sk = rope::apply(slot.select(2, 0).transpose(1, 2), c.prefix_cos, c.prefix_sin);
    k = at::cat({sk, k}, 2);                                      // [B, Hkv, P + T, D]
    v = at::cat({slot.select(2, 1).transpose(1, 2), v}, 2);
  }
  if (c.cache) std::tie(k, v) = c.cache->append(l, k, v);         // [B, Hkv, past + T, D]
  at::Tensor attn;
  if (c.row_caches) {
    // Each row's one query over its own past (no mask: it may see all of it), as it would alone.
    std::vector<at::Tensor> rows;
    for (int64_t r = 0; r < b; ++r) {
      auto [kr, vr] = (*c.row_caches)[r]->append(l, k.narrow(0, r, 1), v.narrow(0, r, 1));
      rows.push_back(at::scaled_dot_product_attention(q.narrow(0, r, 1), kr, vr, std::nullopt, 0.0, false,
                                                      std::nullopt, /*enable_gqa=*/hkv != hq));
    }
    attn = at::cat(rows, 0);
  } else {
    attn = (x.device().is_cpu() && at::GradMode::is_enabled())
               ? attention_for_training(q, k, v, c.mask, c.is_causal)
               : at::scaled_dot_product_attention(q, k, v, c.mask, 0.0, c.is_causal, std::nullopt,
                                                  /*enable_gqa=*/hkv != hq);
  }
  attn = attn.transpose(1, 2).reshape({b, t, hq * d});
  at::Tensor o = project(attn, pick(w.o, &MergedLayer::o), {}, quant(&QuantLayer::o, &MergedLayer::o));
  o = group(o, attn, {{Proj::O, config_.hidden_size}});
  x = x + o;
  // --- MLP block (SwiGLU)
  h = rms_norm(x, w.post_norm, config_.rms_norm_eps);
  at::Tensor gu = project(h, pick(w.gate_up, &MergedLayer::gate_up), {}, quant(&QuantLayer::gate_up, &MergedLayer::gate_up));  // [B, T, 2 I]
  gu = group(gu, h, {{Proj::Gate, inter}, {Proj::Up, inter}});
  at::Tensor act;
  if (fused_ops_apply(gu)) {
    act = fused_swiglu(gu);  // CPU training: one pass each way, no split/cat in the backward
  } else {
    auto gate_up = at::split_with_sizes(gu, {inter, inter}, -1);
    act = at::silu(gate_up[0]) * gate_up[1];
  }
  at::Tensor down = project(act, pick(w.down, &MergedLayer::down), {}, quant(&QuantLayer::down, &MergedLayer::down));
  down = group(down, act, {{Proj::Down, config_.hidden_size}});
  return x + down;
}

ForwardOutput Transformer::forward(const ForwardInput& input, const ForwardOptions& opt) const {
  ICAE_CHECK(input.input_ids.defined() != input.inputs_embeds.defined(), ErrorKind::Usage,
             "forward needs exactly one of input_ids and inputs_embeds");
  if (uses_fast_decode(input, opt)) return decode_step_cpu(input, opt);
  at::Tensor x = input.inputs_embeds.defined() ? input.inputs_embeds.to(options_.device, options_.dtype)
                                               : embed(input.input_ids);
  ICAE_CHECK(x.dim() == 3 && x.size(2) == config_.hidden_size, ErrorKind::Usage,
             "inputs_embeds must be [B, T, " + std::to_string(config_.hidden_size) + "], got " +
                 shape_str(x.sizes()));
  const int64_t b = x.size(0), t = x.size(1);
  const int64_t past = opt.cache ? opt.cache->length() : 0;
  const LoraAdapter* lora = opt.lora;
  if (lora) {
    ICAE_CHECK(lora->num_layers() == config_.num_hidden_layers, ErrorKind::Mismatch,
               "LoRA adapter has " + std::to_string(lora->num_layers()) + " layers, the model " +
                   std::to_string(config_.num_hidden_layers));
  }
  at::Tensor positions = input.position_ids.defined()
                             ? input.position_ids.to(options_.device).to(at::kLong)
                             : at::arange(past, past + t, at::TensorOptions().device(options_.device).dtype(at::kLong))
                                   .unsqueeze(0)
                                   .expand({b, t});
  ICAE_CHECK(!(lora && lora->merged() && opt.training), ErrorKind::Usage,
             "a merged LoRA adapter cannot be trained: unmerge() it first");
  LayerCall call;
  std::tie(call.cos, call.sin) = rope::cos_sin(inv_freq_, positions, options_.dtype);
  int64_t slots = 0;  // key/value slots ahead of the tokens
  if (input.kv_prefix.defined()) {
    const at::Tensor& kvp = input.kv_prefix;
    ICAE_CHECK(kvp.dim() == 6 && kvp.size(0) == b && kvp.size(2) == config_.num_hidden_layers && kvp.size(3) == 2 &&
                   kvp.size(4) == config_.num_key_value_heads && kvp.size(5) == config_.head_dim,
               ErrorKind::Usage,
               "kv_prefix must be [B, P, layers, 2, kv_heads, head_dim] = [" + std::to_string(b) + ", P, " +
                   std::to_string(config_.num_hidden_layers) + ", 2, " + std::to_string(config_.num_key_value_heads) +
                   ", " + std::to_string(config_.head_dim) + "], got " + shape_str(kvp.sizes()));
    ICAE_CHECK(input.position_ids.defined() && past == 0 && input.kv_prefix_positions.defined() &&
                   input.kv_prefix_positions.size(-1) == kvp.size(1),
               ErrorKind::Usage, "key/value slots need position_ids, kv_prefix_positions [B, P] and an empty cache");
    slots = kvp.size(1);
    call.kv_prefix = kvp.to(options_.device, options_.dtype);
    at::Tensor slot_pos = input.kv_prefix_positions.to(options_.device).to(at::kLong).expand({b, slots});
    std::tie(call.prefix_cos, call.prefix_sin) = rope::cos_sin(inv_freq_, slot_pos, options_.dtype);
    call.mask = position_mask(slot_pos, positions, input.attention_mask);
  } else {
    const AttentionMask mask = build_mask(input.attention_mask, past, t, options_.device);
    call.mask = mask.mask;
    call.is_causal = mask.is_causal;
  }
  call.kv_capture = opt.kv_capture;
  if (opt.kv_capture) {
    ICAE_CHECK(!opt.cache && opt.kv_capture->index.defined(), ErrorKind::Usage,
               "a key/value capture needs positions to keep and no cache");
    opt.kv_capture->layers.clear();
    opt.kv_capture->index = opt.kv_capture->index.to(options_.device);
  }
  // A merged adapter lives in its own copies of the touched weights: no per-call deltas.
  call.merged = lora && lora->merged();
  call.merged_lora = call.merged ? lora : nullptr;
  call.lora = call.merged ? nullptr : lora;
  call.cache = opt.cache;
  call.training = opt.training;
  call.generator = opt.generator;

  // A capture keeps tensors from inside the layers, which a recomputing layer would not keep.
  const bool checkpoint = opt.activation_checkpointing && at::GradMode::is_enabled() && !opt.cache && !opt.kv_capture;
  for (int64_t l = 0; l < config_.num_hidden_layers; ++l) {
    if (!checkpoint) {
      x = layer_forward(l, x, call);
      continue;
    }
    std::vector<at::Tensor> params;  // the layer's trainable inputs (the base weights are frozen)
    if (call.lora)
      for (int p = 0; p < kNumProj; ++p)
        if (call.lora->targets(static_cast<Proj>(p))) {
          params.push_back(call.lora->pair(l, static_cast<Proj>(p)).A);
          params.push_back(call.lora->pair(l, static_cast<Proj>(p)).B);
        }
    x = checkpointed_layer(x, params, call.generator, options_.device,
                           [this, l, call](const at::Tensor& in) { return layer_forward(l, in, call); });
  }
  if (opt.cache) opt.cache->advance(slots + t);

  ForwardOutput out;
  if (opt.kv_capture) return out;
  out.hidden = rms_norm(x, norm_, config_.rms_norm_eps);
  if (opt.compute_logits) {
    if (opt.last_position_only) {
      // A fresh [B, H] tensor: at::linear on the narrowed [B, 1, H] view (strides [T H, H, 1])
      // takes a slow path that copies the LM head's weight (measured: 1.1 s vs 20 ms, bf16 CPU).
      out.logits = lm_head(out.hidden.select(1, t - 1).reshape({b, -1}).contiguous()).unsqueeze(1);
    } else {
      out.logits = lm_head(out.hidden);
    }
  }
  return out;
}

at::Tensor Transformer::decode_rows_aten(const std::vector<int64_t>& ids, const std::vector<KVCache*>& caches) const {
  const int64_t b = static_cast<int64_t>(ids.size());
  at::Tensor x = embed(at::tensor(ids, at::kLong).view({b, 1}));  // [B, 1, H]
  std::vector<int64_t> pos;
  for (const KVCache* cache : caches) pos.push_back(cache->length());
  at::Tensor positions = at::tensor(pos, at::kLong).view({b, 1}).to(options_.device);
  LayerCall call;
  std::tie(call.cos, call.sin) = rope::cos_sin(inv_freq_, positions, options_.dtype);
  call.row_caches = &caches;
  for (int64_t l = 0; l < config_.num_hidden_layers; ++l) x = layer_forward(l, x, call);
  for (KVCache* cache : caches) cache->advance(1);
  // A fresh [B, H] tensor for the LM head (see forward's last_position_only).
  return lm_head(rms_norm(x, norm_, config_.rms_norm_eps).reshape({b, -1}).contiguous());
}

}  // namespace icae
