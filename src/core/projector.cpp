#include "icae/core/projector.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <cmath>

#include "icae/util/error.h"

namespace icae {

namespace {
constexpr const char* kNames[] = {"projector.weight", "projector.bias", "projector.mlp.0.weight",
                                  "projector.mlp.0.bias", "projector.mlp.2.weight", "projector.mlp.2.bias"};
}

ProjectorKind parse_projector(const std::string& name) {
  if (name == "none") return ProjectorKind::None;
  if (name == "linear") return ProjectorKind::Linear;
  if (name == "mlp") return ProjectorKind::Mlp;
  fail(ErrorKind::BadInput, "unknown slot projector '" + name + "' (expected none, linear or mlp)");
}

const char* projector_name(ProjectorKind kind) {
  switch (kind) {
    case ProjectorKind::Linear: return "linear";
    case ProjectorKind::Mlp: return "mlp";
    default: return "none";
  }
}

SlotProjector::SlotProjector(ProjectorKind kind, int64_t hidden, double scale, at::Device device, uint64_t seed)
    : kind_(kind) {
  if (kind == ProjectorKind::None) return;
  const auto f32 = at::TensorOptions().dtype(at::kFloat);
  weight_ = (at::eye(hidden, f32) * scale).to(device);
  bias_ = at::zeros({hidden}, f32).to(device);
  if (kind == ProjectorKind::Mlp) {
    // First layer as nn.Linear's default (Kaiming-uniform, bound 1/sqrt(in)); second at zero.
    auto gen = at::make_generator<at::CPUGeneratorImpl>(seed + 7);
    const double bound = 1.0 / std::sqrt(static_cast<double>(hidden));
    w1_ = at::empty({hidden, hidden}, f32).uniform_(-bound, bound, gen).to(device);
    b1_ = at::zeros({hidden}, f32).to(device);
    w2_ = at::zeros({hidden, hidden}, f32).to(device);
    b2_ = at::zeros({hidden}, f32).to(device);
  }
}

SlotProjector SlotProjector::from_tensors(ProjectorKind kind, int64_t hidden,
                                          const std::vector<std::pair<std::string, at::Tensor>>& tensors) {
  SlotProjector p;
  p.kind_ = kind;
  if (kind == ProjectorKind::None) {
    ICAE_CHECK(tensors.empty(), ErrorKind::BadInput, "projector tensors present but the projector is 'none'");
    return p;
  }
  auto find = [&](const char* name, std::vector<int64_t> shape) {
    for (const auto& [n, t] : tensors)
      if (n == name) {
        ICAE_CHECK(t.sizes().vec() == shape, ErrorKind::Mismatch,
                   std::string("projector tensor '") + name + "' has the wrong shape for hidden size " +
                       std::to_string(hidden));
        return t.to(at::kFloat);
      }
    fail(ErrorKind::BadInput, std::string("missing projector tensor '") + name + "' (projector " +
                                  projector_name(kind) + ")");
  };
  p.weight_ = find(kNames[0], {hidden, hidden});
  p.bias_ = find(kNames[1], {hidden});
  if (kind == ProjectorKind::Mlp) {
    p.w1_ = find(kNames[2], {hidden, hidden});
    p.b1_ = find(kNames[3], {hidden});
    p.w2_ = find(kNames[4], {hidden, hidden});
    p.b2_ = find(kNames[5], {hidden});
  }
  return p;
}

at::Tensor SlotProjector::apply(const at::Tensor& x) const {
  if (kind_ == ProjectorKind::None) return x;
  const at::ScalarType t = x.scalar_type();
  at::Tensor y = at::linear(x, weight_.to(t), bias_.to(t));
  if (kind_ == ProjectorKind::Mlp) y = y + at::linear(at::gelu(at::linear(y, w1_.to(t), b1_.to(t))), w2_.to(t), b2_.to(t));
  return y;
}

void SlotProjector::set_scale(double scale) {
  if (kind_ == ProjectorKind::None) return;
  at::NoGradGuard no_grad;
  weight_.copy_(at::eye(weight_.size(0), weight_.options()) * scale);
}

std::vector<at::Tensor> SlotProjector::parameters() const {
  std::vector<at::Tensor> out;
  for (const auto& [n, t] : named_tensors()) out.push_back(t);
  return out;
}

std::vector<std::pair<std::string, at::Tensor>> SlotProjector::named_tensors() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  if (kind_ == ProjectorKind::None) return out;
  out.emplace_back(kNames[0], weight_);
  out.emplace_back(kNames[1], bias_);
  if (kind_ == ProjectorKind::Mlp) {
    out.emplace_back(kNames[2], w1_);
    out.emplace_back(kNames[3], b1_);
    out.emplace_back(kNames[4], w2_);
    out.emplace_back(kNames[5], b2_);
  }
  return out;
}

bool SlotProjector::is_projector_key(const std::string& name) { return name.rfind("projector.", 0) == 0; }

}  // namespace icae
