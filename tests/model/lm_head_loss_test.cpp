// The chunked cross-entropy of the LM head equals the plain one (full logits, log-softmax) in
// value and in the gradient reaching the hidden states, in float32 and bf16, whatever the chunk.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include "icae/core/lm_head_loss.h"
#include "icae/util/error.h"

using namespace icae;

namespace {

struct Case {
  at::Tensor hidden, weight, targets, upstream;
};

Case make_case(at::ScalarType dtype) {
  at::manual_seed(5);
  Case c;
  c.hidden = at::randn({13, 24}).to(dtype);
  c.weight = (at::randn({301, 24}) * 0.5).to(dtype);
  c.targets = at::randint(0, 301, {13}, at::kLong);
  c.upstream = at::rand({13});  // per-row weights of the loss, as a mean over rows of different objectives
  return c;
}

std::pair<at::Tensor, at::Tensor> plain(const Case& c) {
  at::Tensor h = c.hidden.detach().clone().requires_grad_(true);
  at::Tensor ce = at::cross_entropy_loss(at::linear(h, c.weight).to(at::kFloat), c.targets, {}, at::Reduction::None);
  torch::autograd::backward({(ce * c.upstream).sum()});
  return {ce.detach(), h.grad()};
}

std::pair<at::Tensor, at::Tensor> chunked(const Case& c, int64_t chunk_elements) {
  at::Tensor h = c.hidden.detach().clone().requires_grad_(true);
  LmHeadLossOptions o;
  o.chunk_elements = chunk_elements;
  at::Tensor ce = lm_head_cross_entropy(h, c.weight, c.targets, o);
  torch::autograd::backward({(ce * c.upstream).sum()});
  return {ce.detach(), h.grad()};
}

double rel(const at::Tensor& a, const at::Tensor& b) {
  return ((a.to(at::kDouble) - b.to(at::kDouble)).abs().max() / b.to(at::kDouble).abs().max()).item<double>();
}

}  // namespace

TEST(LmHeadLoss, EqualsFullLogitsCrossEntropyInFloat32) {
  const Case c = make_case(at::kFloat);
  const auto [want_ce, want_grad] = plain(c);
  for (int64_t chunk : {0, 301, 5 * 301, 2 * 301 + 7}) {  // one chunk, one row, 5 rows, 2 rows
    const auto [ce, grad] = chunked(c, chunk);
    EXPECT_LE(rel(ce, want_ce), 1e-6) << "chunk " << chunk;
    EXPECT_LE(rel(grad, want_grad), 1e-5) << "chunk " << chunk;
  }
}

TEST(LmHeadLoss, EqualsFullLogitsCrossEntropyInBf16) {
  const Case c = make_case(at::kBFloat16);
  const auto [want_ce, want_grad] = plain(c);
  const auto [ce, grad] = chunked(c, 4 * 301);
  EXPECT_EQ(grad.scalar_type(), at::kBFloat16);
  EXPECT_LE(rel(ce, want_ce), 1e-5);  // the same bf16 logits, then float32 either way
  EXPECT_LE(rel(grad, want_grad), 2e-2);  // bf16 roundings in different places
}

TEST(LmHeadLoss, WithoutGradientsOnlyTheLoss) {
  const Case c = make_case(at::kFloat);
  at::NoGradGuard no_grad;
  at::Tensor ce = lm_head_cross_entropy(c.hidden, c.weight, c.targets);
  EXPECT_FALSE(ce.requires_grad());
  EXPECT_LE(rel(ce, at::cross_entropy_loss(at::linear(c.hidden, c.weight), c.targets, {}, at::Reduction::None)), 1e-6);
}

TEST(LmHeadLoss, RefusesMismatchedShapes) {
  const Case c = make_case(at::kFloat);
  EXPECT_THROW(lm_head_cross_entropy(c.hidden, c.weight.narrow(1, 0, 20), c.targets), Error);
  EXPECT_THROW(lm_head_cross_entropy(c.hidden, c.weight, c.targets.narrow(0, 0, 5)), Error);
}
