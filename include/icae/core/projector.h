// The slot projector: an optional learned map between the encoder's memory slots and the
// decoder's input space (beyond the original ICAE, opt-in per adapter, recorded in its file).
//
// Why: the original feeds the encoder's last hidden states (after the final norm) to the frozen
// decoder as they are. On SmolLM2 those vectors have norm ~44 while token embeddings have ~3.2,
// and as decoder inputs they start out harmful (loss 7.8-10.9 with untrained slots vs 4.7 with
// none). Newer compressors (xRAG, PCC, ARC-Encoder) put a projector there.
//   none:   identity (the original; released checkpoints load as none)
//   linear: y = W x + b, W initialised to s I, b = 0, s = |embeddings| / |slots| (calibrated)
//   mlp:    the linear map plus a residual two-layer GELU MLP on its output whose second layer
//           starts at zero, so it starts out as `linear` and can learn more.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace icae {

enum class ProjectorKind { None, Linear, Mlp };
ProjectorKind parse_projector(const std::string& name);  // throws icae::Error(BadInput)
const char* projector_name(ProjectorKind kind);

class SlotProjector {
 public:
  SlotProjector() = default;  // none
  // A new projector with W = scale * I (float32 master tensors on `device`).
  SlotProjector(ProjectorKind kind, int64_t hidden, double scale, at::Device device, uint64_t seed);
  // From tensors under the names of named_tensors() (shapes checked).
  static SlotProjector from_tensors(ProjectorKind kind, int64_t hidden,
                                    const std::vector<std::pair<std::string, at::Tensor>>& tensors);

  ProjectorKind kind() const { return kind_; }
  bool active() const { return kind_ != ProjectorKind::None; }
  // [..., H] -> [..., H] in x's dtype (the master tensors are cast per call).
  at::Tensor apply(const at::Tensor& x) const;
  // Resets W to scale * I (linear part), keeping the rest.
  void set_scale(double scale);

  std::vector<at::Tensor> parameters() const;
  // "projector.weight", "projector.bias" (+ "projector.mlp.0.weight", ".0.bias", ".2.weight", ".2.bias").
  std::vector<std::pair<std::string, at::Tensor>> named_tensors() const;
  static bool is_projector_key(const std::string& name);

 private:
  ProjectorKind kind_ = ProjectorKind::None;
  at::Tensor weight_, bias_;        // [H, H], [H]
  at::Tensor w1_, b1_, w2_, b2_;    // mlp only: [H, H], [H], [H, H], [H]
};

}  // namespace icae
