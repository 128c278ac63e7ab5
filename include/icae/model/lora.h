// LoRA with peft semantics, applied where the matmul happens: y = W x + (alpha / r) * B (A dropout(x)).
// The adapter holds only its own tensors; base weights are never modified or copied, so one
// base model serves as encoder (adapter on) and decoder (adapter off) per forward call.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <array>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "icae/model/config.h"
#include "icae/model/proj.h"

namespace icae {

// [out, in] of a projection for this config.
std::pair<int64_t, int64_t> proj_shape(const ModelConfig& config, Proj p);
// "self_attn.q_proj" / "mlp.gate_proj": the module path below model.layers.N.
std::string proj_module_path(Proj p);

struct LoraConfig {
  int64_t r = 128;
  double alpha = 32.0;
  double dropout = 0.05;  // training only
  std::vector<std::string> target_modules = {"q_proj", "v_proj"};
  double scale() const { return alpha / static_cast<double>(r); }
};

struct LoraPair {
  at::Tensor A;  // [r, in]
  at::Tensor B;  // [out, r]
  bool defined() const { return A.defined(); }
};

class Transformer;

// LoRA's dropout as a mask to multiply the input by: 0 with probability p, else 1 / (1 - p), in
// x's dtype. Drawn from `gen`: on the CPU one 64-bit seed from it per mask, the mask itself from a
// counter-based hash of (seed, element) in parallel, so it does not depend on the thread count and
// a generator put back to the same state gives the same mask (activation checkpointing, resume).
// ~10x faster than bernoulli_ (serial Mersenne twister, float32 mask, two conversions), which
// took 8% of a SmolLM2 training step. Elsewhere (CUDA) through bernoulli_ on that generator.
at::Tensor lora_dropout_mask(const at::Tensor& x, double p, at::Generator& gen);

// Base weights with the adapter folded in, for the fused projections it touches (undefined where
// it touches none): inference without the extra LoRA matmuls, at the memory of those copies.
struct MergedLayer {
  at::Tensor qkv, o, gate_up, down;
};

class LoraAdapter {
 public:
  LoraAdapter() = default;
  // Zero-initialised pairs for every target of every layer (then call init_for_training or
  // fill from a checkpoint).
  LoraAdapter(const ModelConfig& model, LoraConfig config, at::Device device, at::ScalarType dtype);

  // peft's init for new training: A Kaiming-uniform (a = sqrt(5)), B zero. Seeded: reproducible.
  void init_for_training(uint64_t seed);

  const LoraConfig& config() const { return config_; }
  void set_dropout(double p) { config_.dropout = p; }  // e.g. to fine-tune a loaded adapter
  double scale() const { return config_.scale(); }
  bool targets(Proj p) const { return targeted_[static_cast<int>(p)]; }
  int64_t num_layers() const { return static_cast<int64_t>(layers_.size()); }
  const LoraPair& pair(int64_t layer, Proj p) const { return layers_.at(layer)[static_cast<int>(p)]; }
  LoraPair& pair(int64_t layer, Proj p) { return layers_.at(layer)[static_cast<int>(p)]; }

  // Optional merge for inference: precomputes W + scale * B A for the targeted projections of
  // `base` (the base weights themselves are never modified). A merged adapter refuses training
  // (its copies would go stale); unmerge() drops them.
  void merge(const Transformer& base);
  void unmerge() { merged_.clear(); }
  bool merged() const { return !merged_.empty(); }
  const MergedLayer& merged_layer(int64_t layer) const { return merged_.at(layer); }

  // Every A and B, for an optimizer.
  std::vector<at::Tensor> parameters() const;
  void set_requires_grad(bool on);
  int64_t parameter_count() const;
  // Names as peft writes them, e.g. "base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight".
  std::vector<std::pair<std::string, at::Tensor>> named_tensors(const std::string& prefix = "") const;

 private:
  LoraConfig config_;
  std::array<bool, kNumProj> targeted_{};
  std::vector<std::array<LoraPair, kNumProj>> layers_;
  std::vector<MergedLayer> merged_;
};

// Trainable parameters of an ICAE (LoRA + memory embeddings) computed from a config alone.
int64_t lora_parameter_count(const ModelConfig& model, const LoraConfig& lora);

}  // namespace icae
