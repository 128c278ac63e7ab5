// The fused RMSNorm and SwiGLU (CPU training; the AVX-512 or AVX2 kernels, whichever this CPU runs)
// against the ATen operators the model uses otherwise: forward values and gradients, float32 and
// bf16, row widths with and without a tail.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include "icae/model/fused_ops.h"

using namespace icae;

namespace {

// The model's unfused path (transformer.cpp): HF's RMSNorm and silu(g) * u.
at::Tensor aten_rms_norm(const at::Tensor& x, const at::Tensor& w, double eps) {
  if (x.scalar_type() == at::kFloat) return at::rms_norm(x, {x.size(-1)}, w, eps);
  return at::rms_norm(x, {x.size(-1)}, std::nullopt, eps) * w;
}
at::Tensor aten_swiglu(const at::Tensor& gu) {
  auto p = at::split_with_sizes(gu, {gu.size(-1) / 2, gu.size(-1) / 2}, -1);
  return at::silu(p[0]) * p[1];
}

// Largest difference relative to the reference's largest magnitude.
double rel(const at::Tensor& a, const at::Tensor& b) {
  const at::Tensor x = a.to(at::kDouble), y = b.to(at::kDouble);
  return ((x - y).abs().max() / y.abs().max()).item<double>();
}

template <typename Fused, typename Plain>
void compare(Fused fused, Plain plain, const at::Tensor& input, const at::Tensor& upstream, double tol_y, double tol_g) {
  at::Tensor a = input.detach().clone().requires_grad_(true), b = input.detach().clone().requires_grad_(true);
  at::Tensor ya = fused(a), yb = plain(b);
  torch::autograd::backward({ya}, {upstream});
  torch::autograd::backward({yb}, {upstream});
  EXPECT_EQ(ya.scalar_type(), yb.scalar_type());
  EXPECT_LE(rel(ya, yb), tol_y);
  EXPECT_LE(rel(a.grad(), b.grad()), tol_g);
}

}  // namespace

TEST(FusedOps, RmsNormEqualsAten) {
  if (!fused_ops_apply(at::ones({1, 16}).requires_grad_(true))) GTEST_SKIP() << "no AVX2 here";
  at::manual_seed(1);
  for (int64_t h : {64, 576, 50}) {  // 50: a 2-element tail after 3 vectors
    for (auto dtype : {at::kFloat, at::kBFloat16}) {
      const at::Tensor x = (at::randn({3, 7, h}) * 3).to(dtype);
      const at::Tensor w = (at::rand({h}) + 0.5).to(dtype);
      const at::Tensor gy = at::randn({3, 7, h}).to(dtype);
      const bool bf = dtype == at::kBFloat16;
      SCOPED_TRACE("h " + std::to_string(h) + (bf ? " bf16" : " f32"));
      // bf16: the same roundings; measured bit-identical (2026-12-04), allowed one ulp at the top.
      // float32: ~1e-7 (summation order).
      compare([&](const at::Tensor& t) { return fused_rms_norm(t, w, 1e-5); },
              [&](const at::Tensor& t) { return aten_rms_norm(t, w, 1e-5); }, x, gy, bf ? 8e-3 : 1e-6, bf ? 8e-3 : 1e-6);
    }
  }
}

TEST(FusedOps, SwigluEqualsAten) {
  if (!fused_ops_apply(at::ones({1, 16}).requires_grad_(true))) GTEST_SKIP() << "no AVX2 here";
  at::manual_seed(2);
  for (int64_t inter : {64, 1536, 37}) {
    for (auto dtype : {at::kFloat, at::kBFloat16}) {
      const at::Tensor gu = (at::randn({2, 5, 2 * inter}) * 4).to(dtype);
      const at::Tensor gy = at::randn({2, 5, inter}).to(dtype);
      const bool bf = dtype == at::kBFloat16;
      SCOPED_TRACE("inter " + std::to_string(inter) + (bf ? " bf16" : " f32"));
      compare([](const at::Tensor& t) { return fused_swiglu(t); }, [](const at::Tensor& t) { return aten_swiglu(t); },
              gu, gy, bf ? 8e-3 : 1e-6, bf ? 8e-3 : 1e-6);
    }
  }
}

TEST(FusedOps, ApplyOnlyWhereTrainingNeedsThem) {
  const at::Tensor x = at::ones({2, 16});
  EXPECT_FALSE(fused_ops_apply(x));                                  // no gradient wanted
  EXPECT_FALSE(fused_ops_apply(x.to(at::kHalf).requires_grad_(true)));  // other dtypes: ATen
  EXPECT_FALSE(fused_ops_apply(at::ones({16, 2}).t().requires_grad_(true)));  // not contiguous
  EXPECT_FALSE(fused_ops_apply(x.clone().requires_grad_(true), at::ones({16}).requires_grad_(true)));  // trainable weight
  {
    at::NoGradGuard no_grad;
    EXPECT_FALSE(fused_ops_apply(x.clone().requires_grad_(true)));
  }
}
