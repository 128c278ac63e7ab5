// The Llama-family decoder-only transformer (llama, mistral, qwen2): embeddings, RMSNorm, RoPE,
// grouped-query attention, SwiGLU MLP, LM head. Frozen weights live here; per-call state
// (LoRA adapter, KV cache) is passed in, so one model serves encoder and decoder at once.
#pragma once
#include <ATen/core/Tensor.h>
#include <ATen/core/Generator.h>
#include <c10/core/Device.h>

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "icae/model/config.h"
#include "icae/model/quant_matrix.h"
#include "icae/util/tensor_map.h"

namespace icae {

class LoraAdapter;
class KVCache;
struct LayerCall;

struct ModelLoadOptions {
  at::Device device = at::kCPU;
  at::ScalarType dtype = at::kFloat;
  // .gguf on the CPU: also keep the file's Q4_1/Q8_0 blocks and decode (a few rows at a time,
  // no gradients) straight from them: about a third of the bytes of bf16 per token, same values.
  // Auto: when that is the faster path — the block kernels are vectorised for AVX-512 only; on
  // an AVX2-only CPU their scalar loop decoded SmolLM2 2.5x slower than dense float32 weights
  // (4.0 vs 9.9 tok/s, 2026-12-02), so Auto keeps float32 models dense there.
  enum class QuantDecode { Auto, On, Off };
  QuantDecode quantized_decode = QuantDecode::Auto;
};

// Weights of one decoder layer. q, k, v and gate, up are stored fused (one matmul each); the
// Hugging Face tensors are row blocks of these, see Transformer::weight().
struct LayerWeights {
  at::Tensor input_norm;  // [H]
  at::Tensor qkv;         // [(Hq + 2 Hkv) D, H]
  at::Tensor qkv_bias;    // [(Hq + 2 Hkv) D] or undefined
  at::Tensor o;           // [H, Hq D]
  at::Tensor post_norm;   // [H]
  at::Tensor gate_up;     // [2 I, H]
  at::Tensor down;        // [H, I]
};

// The same projections as quantised blocks, for decoding (undefined where not quantised).
struct QuantLayer {
  QuantMatrix qkv, o, gate_up, down;
};

struct ForwardInput {
  at::Tensor input_ids;       // [B, T] int64 — or —
  at::Tensor inputs_embeds;   // [B, T, H] (ICAE feeds memory slots this way)
  at::Tensor attention_mask;  // optional [B, past + T], 1 = real token, 0 = padding
  at::Tensor position_ids;    // optional [B, T]; default past + 0..T-1
  // Key/value memory slots seen before the tokens (icae/core/slot_kind.h): [B, P, layers, 2,
  // Hkv, D], keys before RoPE, rotated here at kv_prefix_positions [B, P]. Needs position_ids
  // and an empty cache (the cache then holds P + T positions, slots first). Attention follows
  // positions, not order: a query sees the keys at or before its own position, so slots may sit
  // between tokens (a template before them). attention_mask, when given, is [B, P + T].
  at::Tensor kv_prefix;
  at::Tensor kv_prefix_positions;
};

// The encoder of key/value slots: collects every layer's keys (before RoPE) and values at the
// flat positions `index` (into [B * T]) as layers[l] = [N, 2, Hkv, D]. The forward stops after
// the last layer's keys and values: nothing after them can reach a slot.
struct KvCapture {
  at::Tensor index;               // int64 [N]
  std::vector<at::Tensor> layers; // filled by forward()
};

struct ForwardOptions {
  const LoraAdapter* lora = nullptr;  // nullptr: the plain base model (ICAE decoder)
  KVCache* cache = nullptr;           // read past keys/values and append the new ones
  bool training = false;              // enables LoRA dropout
  at::Generator* generator = nullptr; // LoRA dropout's random stream (nullptr: the global one)
  bool activation_checkpointing = false;  // training: keep only layer inputs, recompute in backward
  bool compute_logits = true;         // false: hidden states only (ICAE encoder)
  bool last_position_only = false;    // logits of the last position only (generation)
  KvCapture* kv_capture = nullptr;    // key/value slots: see KvCapture (no activation checkpointing)
};

struct ForwardOutput {
  at::Tensor hidden;  // [B, T, H] after the final norm (undefined with a KvCapture)
  at::Tensor logits;  // [B, T, V] (or [B, 1, V]); undefined when not asked for
};

class Transformer {
 public:
  // Takes weights under Hugging Face names and checks them strictly: a missing tensor, a wrong
  // shape or an unknown name is an error naming the tensor and both shapes. From disk:
  // load_transformer (icae/io/model_loader.h).
  Transformer(ModelConfig config, TensorMap weights, const ModelLoadOptions& options);

  const ModelConfig& config() const { return config_; }
  at::Device device() const { return options_.device; }
  at::ScalarType dtype() const { return options_.dtype; }

  ForwardOutput forward(const ForwardInput& input, const ForwardOptions& options = {}) const;
  // One new token for each of several independent sequences, each with its own KV cache (batch
  // 1, any length; each advances by one): the projections run over all rows at once, so the
  // weights are read once per step, while attention is per row over that row's own past. This is
  // what lets rows of different lengths join and leave a running decode batch (continuous
  // batching). Returns logits [B, V]. Row i equals forward() of its token alone on its cache:
  // bitwise on the quantised CPU path, up to float rounding of the batched matmuls otherwise.
  // Up to kQuantMaxRows rows go through the quantised CPU path (when attached); more rows take
  // the dense weights, where a matrix product over many rows beats decoding the blocks per row.
  at::Tensor decode_rows(const std::vector<int64_t>& ids, const std::vector<KVCache*>& caches) const;
  // The most rows a projection runs through the quantised blocks (decoding); prefill, training and
  // wider batches use the dense weights, where oneDNN's kernels and autograd apply.
  static constexpr int64_t kQuantMaxRows = 8;
  at::Tensor embed(const at::Tensor& ids) const;           // [B, T] -> [B, T, H]
  at::Tensor lm_head(const at::Tensor& hidden) const;      // [..., H] -> [..., V]
  const at::Tensor& embedding_weight() const { return embed_; }
  const at::Tensor& lm_head_weight() const { return lm_head_; }  // [V, H] (the embedding when tied)

  // A weight by its Hugging Face name (a view into the fused storage where fused).
  at::Tensor weight(const std::string& hf_name) const;
  std::vector<std::string> weight_names() const;
  const std::vector<LayerWeights>& layers() const { return layers_; }
  // Attaches quantised copies of the projections (Hugging Face names, as load_gguf_quantized
  // returns them); a fused projection is used only when all its parts are present.
  void attach_quantized(const std::unordered_map<std::string, QuantMatrix>& weights);
  bool has_quantized() const { return !quant_layers_.empty(); }

  // True when forward() will take the fused CPU decoding path for this call (see cpu_decode.cpp).
  bool uses_fast_decode(const ForwardInput& input, const ForwardOptions& options) const;

  // A short hash of a sample of the weights, to recognise the base model an adapter was
  // trained on (independent of device and dtype: computed on a float copy, rounded to bf16).
  std::string fingerprint() const;

 private:
  // One decoder layer of a forward call.
  at::Tensor layer_forward(int64_t layer, at::Tensor x, const LayerCall& call) const;
  // One token of one sequence on the CPU through the quantised weights, in plain loops.
  ForwardOutput decode_step_cpu(const ForwardInput& input, const ForwardOptions& options) const;
  // The same for n rows: x [n, H] float32 embeddings in, the final (normed) hidden states out in
  // place; logits [n, V] when not null. caches[r] holds row r (batch 1) and advances by one.
  void decode_rows_cpu(std::vector<float>& x, const std::vector<KVCache*>& caches, float* logits) const;
  // The quantised CPU decoding path can serve this model (quantised projections attached, CPU,
  // f32/bf16, no autograd) with caches of this element type.
  bool quant_decode_ready(at::ScalarType cache_type) const;
  // decode_rows through ATen (dense weights, any device): batched projections, per-row attention.
  at::Tensor decode_rows_aten(const std::vector<int64_t>& ids, const std::vector<KVCache*>& caches) const;

  ModelConfig config_;
  ModelLoadOptions options_;
  at::Tensor embed_;     // [V, H]
  at::Tensor norm_;      // [H]
  at::Tensor lm_head_;   // [V, H]; shares embed_ when tied
  at::Tensor inv_freq_;  // [D/2] float32, rope frequencies after scaling
  std::vector<LayerWeights> layers_;
  std::vector<QuantLayer> quant_layers_;  // empty unless attach_quantized()
  QuantMatrix quant_lm_head_;
};

}  // namespace icae
