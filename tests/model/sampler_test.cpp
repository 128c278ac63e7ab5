// The next-token choice: greedy_pick (without a parallel region) picks what at::argmax picks;
// the sampler's repetition penalty and n-gram ban give the sequences worked out by hand below.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <limits>
#include <set>
#include <vector>

#include "icae/infer/generate.h"

using namespace icae;

TEST(Sampler, GreedyPickEqualsArgmaxOnRandomLogitsTiesAndNaN) {
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

namespace {

// Feeds the same logits to a sampler n times; the picks.
std::vector<int64_t> picks(const SamplingOptions& o, const at::Tensor& logits, int n) {
  Sampler s(o);
  std::vector<int64_t> out;
  for (int i = 0; i < n; ++i) out.push_back(s.pick(logits));
  return out;
}

}  // namespace

TEST(Sampler, NoRepeatNgramBansEveryCompletedPairOnce) {
  // Token 1 is always the favourite, then 2, 3, ...; token 0 least.
  at::Tensor logits = -at::arange(12, at::kFloat);
  logits[0] = -100;
  SamplingOptions o;
  EXPECT_EQ(picks(o, logits, 5), (std::vector<int64_t>{1, 1, 1, 1, 1}));  // off: a loop
  o.no_repeat_ngram = 2;
  // After "1" every pair (1, x) already seen is banned, so 1 alternates with the next unused one.
  EXPECT_EQ(picks(o, logits, 10), (std::vector<int64_t>{1, 1, 2, 1, 3, 1, 4, 1, 5, 1}));
  o.no_repeat_ngram = 1;  // no token twice
  EXPECT_EQ(picks(o, logits, 4), (std::vector<int64_t>{1, 2, 3, 4}));
  // Every token used: the ban is lifted for that step instead of leaving nothing to pick.
  EXPECT_EQ(picks(o, at::tensor({0.0f, 1.0f}), 3), (std::vector<int64_t>{1, 0, 1}));
}

TEST(Sampler, NoRepeatNgramHoldsWhenSamplingRandomLogits) {
  at::manual_seed(5);
  SamplingOptions o;
  o.no_repeat_ngram = 3;
  o.temperature = 0.7;
  o.seed = 11;
  Sampler s(o);
  std::vector<int64_t> ids;
  for (int i = 0; i < 200; ++i) ids.push_back(s.pick(at::randn({20}) * 3));  // 20 tokens: repeats are likely
  std::set<std::vector<int64_t>> seen;
  for (size_t i = 0; i + 3 <= ids.size(); ++i)
    EXPECT_TRUE(seen.insert({ids[i], ids[i + 1], ids[i + 2]}).second) << "trigram repeated at " << i;
}

TEST(Sampler, RepetitionPenaltyDividesPositiveAndMultipliesNegativeLogitsOnce) {
  SamplingOptions o;
  o.repetition_penalty = 2.0;
  // Positive: 1.5 -> 0.75 loses to 1.0; then both penalised once (0.75 vs 0.5), however often picked.
  EXPECT_EQ(picks(o, at::tensor({1.0f, 1.5f, -0.5f, -0.2f}), 4), (std::vector<int64_t>{1, 0, 1, 1}));
  // Negative: -0.6 -> -1.2 loses to -1.0; then -1.2 vs -2.0.
  EXPECT_EQ(picks(o, at::tensor({-1.0f, -0.6f, -5.0f, -5.0f}), 4), (std::vector<int64_t>{1, 0, 1, 1}));
  o.repetition_penalty = 1.0;
  EXPECT_EQ(picks(o, at::tensor({1.0f, 1.5f, -0.5f, -0.2f}), 3), (std::vector<int64_t>{1, 1, 1}));
}

TEST(Sampler, RejectsBadRepetitionSettings) {
  SamplingOptions o;
  o.repetition_penalty = 0;
  EXPECT_THROW(Sampler{o}, std::exception);
  o.repetition_penalty = 1;
  o.no_repeat_ngram = -1;
  EXPECT_THROW(Sampler{o}, std::exception);
}
