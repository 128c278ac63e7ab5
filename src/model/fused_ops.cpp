#include "icae/model/fused_ops.h"

#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>

#include <cmath>

#include "icae/util/backward_node.h"
#include "icae/util/error.h"
#include "fused_kernels.h"
#include "simd.h"

namespace icae {

namespace {

using BF16 = c10::BFloat16;
using fused::Isa;

// Rows split over at::parallel_for's threads, each range on the widest kernels this CPU runs
// (fused_ops_apply has checked that it runs one of them).
template <typename T>
void rms_norm_rows(const T* x, const T* w, T* y, float* r, int64_t rows, int64_t h, float eps) {
  const bool wide = simd::cpu_has_avx512();
  at::parallel_for(0, rows, 16, [&](int64_t r0, int64_t r1) {
    if (wide) fused::rms_norm_range<Isa::Avx512>(x, w, y, r, h, eps, r0, r1);
    else fused::rms_norm_range<Isa::Avx2>(x, w, y, r, h, eps, r0, r1);
  });
}
template <typename T>
void rms_norm_backward_rows(const T* x, const T* w, const T* gy, const float* r, T* gx, int64_t rows, int64_t h) {
  const bool wide = simd::cpu_has_avx512();
  at::parallel_for(0, rows, 16, [&](int64_t r0, int64_t r1) {
    if (wide) fused::rms_norm_backward_range<Isa::Avx512>(x, w, gy, r, gx, h, r0, r1);
    else fused::rms_norm_backward_range<Isa::Avx2>(x, w, gy, r, gx, h, r0, r1);
  });
}
template <typename T>
void swiglu_rows(const T* gu, T* y, int64_t rows, int64_t inter) {
  const bool wide = simd::cpu_has_avx512();
  at::parallel_for(0, rows, 8, [&](int64_t r0, int64_t r1) {
    if (wide) fused::swiglu_range<Isa::Avx512>(gu, y, inter, r0, r1);
    else fused::swiglu_range<Isa::Avx2>(gu, y, inter, r0, r1);
  });
}
template <typename T>
void swiglu_backward_rows(const T* gu, const T* gy, T* ggu, int64_t rows, int64_t inter) {
  const bool wide = simd::cpu_has_avx512();
  at::parallel_for(0, rows, 8, [&](int64_t r0, int64_t r1) {
    if (wide) fused::swiglu_backward_range<Isa::Avx512>(gu, gy, ggu, inter, r0, r1);
    else fused::swiglu_backward_range<Isa::Avx2>(gu, gy, ggu, inter, r0, r1);
  });
}

struct RmsNormBackward : torch::autograd::Node {
  at::Tensor x, weight, r;  // x detached, contiguous; r [rows] float32

  torch::autograd::variable_list apply(torch::autograd::variable_list&& grads) override {
    if (!grads[0].defined()) return {at::Tensor()};
    const at::Tensor gy = grads[0].to(x.scalar_type()).contiguous();
    at::Tensor gx = at::empty_like(x);
    const int64_t h = x.size(-1), rows = x.numel() / h;
    if (x.scalar_type() == at::kBFloat16)
      rms_norm_backward_rows(x.data_ptr<BF16>(), weight.data_ptr<BF16>(), gy.data_ptr<BF16>(), r.data_ptr<float>(),
                             gx.data_ptr<BF16>(), rows, h);
    else
      rms_norm_backward_rows(x.data_ptr<float>(), weight.data_ptr<float>(), gy.data_ptr<float>(), r.data_ptr<float>(),
                             gx.data_ptr<float>(), rows, h);
    return {gx};
  }
};

struct SwigluBackward : torch::autograd::Node {
  at::Tensor gu;  // detached, contiguous

  torch::autograd::variable_list apply(torch::autograd::variable_list&& grads) override {
    if (!grads[0].defined()) return {at::Tensor()};
    const at::Tensor gy = grads[0].to(gu.scalar_type()).contiguous();
    at::Tensor ggu = at::empty_like(gu);
    const int64_t inter = gu.size(-1) / 2, rows = gu.numel() / gu.size(-1);
    if (gu.scalar_type() == at::kBFloat16)
      swiglu_backward_rows(gu.data_ptr<BF16>(), gy.data_ptr<BF16>(), ggu.data_ptr<BF16>(), rows, inter);
    else
      swiglu_backward_rows(gu.data_ptr<float>(), gy.data_ptr<float>(), ggu.data_ptr<float>(), rows, inter);
    return {ggu};
  }
};

}  // namespace

bool fused_ops_apply(const at::Tensor& x, const at::Tensor& frozen) {
  if (!x.device().is_cpu() || !x.is_contiguous() || !at::GradMode::is_enabled() || !x.requires_grad()) return false;
  if (x.scalar_type() != at::kFloat && x.scalar_type() != at::kBFloat16) return false;
  if (frozen.defined() && (frozen.requires_grad() || frozen.scalar_type() != x.scalar_type() || !frozen.is_contiguous()))
    return false;
  return simd::cpu_has_avx512() || simd::cpu_has_avx2();
}

at::Tensor fused_rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  ICAE_CHECK(fused_ops_apply(x, weight) && weight.numel() == x.size(-1), ErrorKind::Internal,
             "fused_rms_norm: unsupported input (check fused_ops_apply first)");
  const int64_t h = x.size(-1), rows = x.numel() / h;
  at::Tensor xd = x.detach();
  at::Tensor y = at::empty_like(xd);
  at::Tensor r = at::empty({rows}, xd.options().dtype(at::kFloat));
  if (x.scalar_type() == at::kBFloat16)
    rms_norm_rows(xd.data_ptr<BF16>(), weight.data_ptr<BF16>(), y.data_ptr<BF16>(), r.data_ptr<float>(), rows, h,
                  static_cast<float>(eps));
  else
    rms_norm_rows(xd.data_ptr<float>(), weight.data_ptr<float>(), y.data_ptr<float>(), r.data_ptr<float>(), rows, h,
                  static_cast<float>(eps));
  auto node = make_backward_node<RmsNormBackward>();
  node->x = xd;
  node->weight = weight.detach();
  node->r = r;
  attach_backward(node, {x}, y);
  return y;
}

at::Tensor fused_swiglu(const at::Tensor& gu) {
  ICAE_CHECK(fused_ops_apply(gu) && gu.size(-1) % 2 == 0, ErrorKind::Internal,
             "fused_swiglu: unsupported input (check fused_ops_apply first)");
  const int64_t inter = gu.size(-1) / 2, rows = gu.numel() / gu.size(-1);
  at::Tensor gd = gu.detach();
  std::vector<int64_t> shape = gd.sizes().vec();
  shape.back() = inter;
  at::Tensor y = at::empty(shape, gd.options());
  if (gu.scalar_type() == at::kBFloat16) swiglu_rows(gd.data_ptr<BF16>(), y.data_ptr<BF16>(), rows, inter);
  else swiglu_rows(gd.data_ptr<float>(), y.data_ptr<float>(), rows, inter);
  auto node = make_backward_node<SwigluBackward>();
  node->gu = gd;
  attach_backward(node, {gu}, y);
  return y;
}

}  // namespace icae
