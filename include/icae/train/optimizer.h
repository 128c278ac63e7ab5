// AdamW over named float32 tensors, with per-tensor learning rate and weight decay (LoRA at
// --lr with --weight-decay; memory embeddings and the projector at --mem-lr without decay), the
// learning-rate schedule, and gradient clipping. The update is PyTorch's AdamW, step for step.
// Its state is a plain map of tensors so that checkpoints hold it exactly.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "icae/io/tensor_io.h"

namespace icae::train {

struct AdamWOptions {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
};

struct OptimizedTensor {
  std::string name;
  at::Tensor param;  // float32 master, requires_grad
  double lr = 1e-4;
  double weight_decay = 0.0;
};

class AdamW {
 public:
  AdamW(std::vector<OptimizedTensor> params, AdamWOptions options);
  // One update with every learning rate multiplied by lr_factor (the schedule).
  void step(double lr_factor);
  void zero_grad();
  int64_t steps() const { return step_; }
  const std::vector<OptimizedTensor>& params() const { return params_; }

  // "adam.m.<name>", "adam.v.<name>" and "adam.step".
  std::vector<std::pair<std::string, at::Tensor>> state() const;
  void load_state(const TensorMap& tensors);  // throws when a tensor is missing or mis-shaped

 private:
  std::vector<OptimizedTensor> params_;
  AdamWOptions options_;
  std::vector<at::Tensor> m_, v_;
  int64_t step_ = 0;
};

// Scales all gradients so that their global L2 norm is at most max_norm (no-op when <= 0).
// Returns the norm before clipping (torch.nn.utils.clip_grad_norm_).
double clip_grad_norm(const std::vector<at::Tensor>& params, double max_norm);

enum class Schedule { Constant, Linear, Cosine };
Schedule parse_schedule(const std::string& name);
// Learning-rate factor for the update that follows `done` updates: linear warm-up over `warmup`
// updates, then constant, linear to 0 or cosine to 0 at `total`.
double lr_factor(Schedule schedule, int64_t done, int64_t warmup, int64_t total);

}  // namespace icae::train
