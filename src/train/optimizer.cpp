#include "icae/train/optimizer.h"

#include <ATen/ATen.h>

#include <cmath>

#include "icae/util/error.h"

namespace icae::train {

AdamW::AdamW(std::vector<OptimizedTensor> params, AdamWOptions options)
    : params_(std::move(params)), options_(options) {
  for (const auto& p : params_) {
    ICAE_CHECK(p.param.scalar_type() == at::kFloat, ErrorKind::Internal,
               "AdamW keeps float32 master tensors; '" + p.name + "' is not float32");
    m_.push_back(at::zeros_like(p.param));
    v_.push_back(at::zeros_like(p.param));
  }
}

void AdamW::zero_grad() {
  for (auto& p : params_)
    if (p.param.grad().defined()) p.param.mutable_grad().reset();
}

void AdamW::step(double lr_factor) {
  at::NoGradGuard no_grad;
  ++step_;
  const double bc1 = 1.0 - std::pow(options_.beta1, static_cast<double>(step_));
  const double bc2 = 1.0 - std::pow(options_.beta2, static_cast<double>(step_));
  for (size_t i = 0; i < params_.size(); ++i) {
    at::Tensor& p = params_[i].param;
    const at::Tensor& g = p.grad();
    if (!g.defined()) continue;
    const double lr = params_[i].lr * lr_factor;
    // Decoupled weight decay, then the moments, then the bias-corrected step (torch.optim.AdamW).
    if (params_[i].weight_decay != 0) p.mul_(1.0 - lr * params_[i].weight_decay);
    m_[i].lerp_(g, 1.0 - options_.beta1);
    v_[i].mul_(options_.beta2).addcmul_(g, g, 1.0 - options_.beta2);
    at::Tensor denom = (v_[i].sqrt() / std::sqrt(bc2)).add_(options_.eps);
    p.addcdiv_(m_[i], denom, -lr / bc1);
  }
}

std::vector<std::pair<std::string, at::Tensor>> AdamW::state() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (size_t i = 0; i < params_.size(); ++i) {
    out.emplace_back("adam.m." + params_[i].name, m_[i]);
    out.emplace_back("adam.v." + params_[i].name, v_[i]);
  }
  out.emplace_back("adam.step", at::full({1}, step_, at::kLong));
  return out;
}

void AdamW::load_state(const TensorMap& t) {
  auto get = [&](const std::string& key, const at::Tensor& like) {
    auto it = t.find(key);
    ICAE_CHECK(it != t.end(), ErrorKind::BadInput, "checkpoint has no optimizer tensor '" + key + "'");
    ICAE_CHECK(it->second.sizes() == like.sizes(), ErrorKind::Mismatch,
               "optimizer tensor '" + key + "' has the wrong shape");
    return it->second.to(like.device(), at::kFloat);
  };
  for (size_t i = 0; i < params_.size(); ++i) {
    m_[i] = get("adam.m." + params_[i].name, params_[i].param);
    v_[i] = get("adam.v." + params_[i].name, params_[i].param);
  }
  auto it = t.find("adam.step");
  ICAE_CHECK(it != t.end(), ErrorKind::BadInput, "checkpoint has no 'adam.step'");
  step_ = it->second.to(at::kLong).item<int64_t>();
}

double clip_grad_norm(const std::vector<at::Tensor>& params, double max_norm) {
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> norms;
  for (const auto& p : params)
    if (p.grad().defined()) norms.push_back(p.grad().norm(2).to(at::kFloat));
  if (norms.empty()) return 0.0;
  const double total = at::stack(norms).norm(2).item<double>();
  if (max_norm > 0 && std::isfinite(total)) {
    const double coef = max_norm / (total + 1e-6);
    if (coef < 1.0)
      for (const auto& p : params)
        if (p.grad().defined()) p.grad().mul_(coef);
  }
  return total;
}

Schedule parse_schedule(const std::string& name) {
  if (name == "constant") return Schedule::Constant;
  if (name == "linear") return Schedule::Linear;
  if (name == "cosine") return Schedule::Cosine;
  fail(ErrorKind::Usage, "unknown schedule '" + name + "' (expected cosine, linear or constant)");
}

double lr_factor(Schedule schedule, int64_t done, int64_t warmup, int64_t total) {
  if (warmup > 0 && done < warmup) return static_cast<double>(done + 1) / static_cast<double>(warmup);
  if (schedule == Schedule::Constant || total <= warmup) return 1.0;
  const double progress =
      std::min(1.0, static_cast<double>(done - warmup) / static_cast<double>(std::max<int64_t>(1, total - warmup)));
  if (schedule == Schedule::Linear) return 1.0 - progress;
  return 0.5 * (1.0 + std::cos(M_PI * progress));
}

}  // namespace icae::train
