// greedy_pick (the greedy choice without a parallel region) picks what at::argmax picks.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <limits>

#include "icae/infer/generate.h"

using namespace icae;

TEST(GreedyPick, EqualsArgmaxOnRandomLogitsTiesAndNaN) {
  at::manual_seed(3);
  for (int trial = 0; trial < 20; ++trial) {
    at::Tensor logits = at::randn({49152});
    EXPECT_EQ(greedy_pick(logits), logits.argmax().item<int64_t>());
  }
  at::Tensor tie = at::zeros({100});
  tie[17] = 2.0;
  tie[60] = 2.0;
  EXPECT_EQ(greedy_pick(tie), 17);  // the first of equal maxima
  EXPECT_EQ(greedy_pick(tie), tie.argmax().item<int64_t>());
  at::Tensor with_nan = at::randn({64});
  with_nan[40] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(greedy_pick(with_nan), 40);  // a NaN counts as the largest, as in at::argmax
  EXPECT_EQ(greedy_pick(with_nan), with_nan.argmax().item<int64_t>());
  at::Tensor bf16 = at::randn({1000}).to(at::kBFloat16);  // not float32: at::argmax itself
  EXPECT_EQ(greedy_pick(bf16), bf16.argmax().item<int64_t>());
  at::Tensor strided = at::randn({2, 500}).t()[3];  // not contiguous
  EXPECT_EQ(greedy_pick(strided), strided.argmax().item<int64_t>());
}
