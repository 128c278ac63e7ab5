// LoRA's dropout mask: the right keep rate and values, the same mask from the same generator
// state whatever the thread count, a different one from the next draw.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include "icae/model/lora.h"

using namespace icae;

TEST(LoraDropout, KeepsOneMinusPScaledAndReplaysFromTheGeneratorState) {
  const at::Tensor x = at::ones({64, 1000}, at::kBFloat16);
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(11);
  const at::Tensor state = gen.get_state();
  const at::Tensor m = lora_dropout_mask(x, 0.1, gen);
  EXPECT_EQ(m.scalar_type(), at::kBFloat16);
  EXPECT_EQ(m.sizes(), x.sizes());
  const at::Tensor mf = m.to(at::kFloat);
  const float scale = static_cast<float>(c10::BFloat16(1.0f / 0.9f));
  EXPECT_TRUE(((mf == 0) | (mf == scale)).all().item<bool>());
  const double kept = (mf > 0).to(at::kDouble).mean().item<double>();
  EXPECT_NEAR(kept, 0.9, 0.005);  // 64,000 draws: sd 0.0012

  const int threads = at::get_num_threads();
  at::set_num_threads(1);
  gen.set_state(state);
  const at::Tensor again = lora_dropout_mask(x, 0.1, gen);
  at::set_num_threads(threads);
  EXPECT_TRUE(at::equal(again, m));
  const at::Tensor next = lora_dropout_mask(x, 0.1, gen);
  EXPECT_FALSE(at::equal(next, m));
}

TEST(LoraDropout, FloatMasksAndEdgeRates) {
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(3);
  const at::Tensor x = at::ones({3, 7}, at::kFloat);  // an odd count: the last hash's second half unused
  EXPECT_TRUE(at::equal(lora_dropout_mask(x, 0.0, gen), at::ones({3, 7})));
  const at::Tensor m = lora_dropout_mask(at::ones({100000}), 0.5, gen);
  EXPECT_NEAR((m > 0).to(at::kDouble).mean().item<double>(), 0.5, 0.01);
  EXPECT_NEAR(m.max().item<float>(), 2.0f, 0.0f);
  EXPECT_ANY_THROW(lora_dropout_mask(x, 1.0, gen));
}
