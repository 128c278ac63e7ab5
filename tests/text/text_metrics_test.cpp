// Hand-computed cases for the metrics (the values are worked out in the comments).
#include <gtest/gtest.h>

#include <cmath>

#include "icae/eval/text_metrics.h"

using namespace icae::eval;

TEST(TextMetrics, BleuIdenticalIsOne) { EXPECT_DOUBLE_EQ(bleu4({1, 2, 3, 4, 5}, {1, 2, 3, 4, 5}), 1.0); }

TEST(TextMetrics, BleuHandComputed) {
  // hyp 1 2 3 4 5 6 vs ref 1 2 3 4 5 7: n-gram precisions 5/6, 4/5, 3/4, 2/3, same length.
  const double want = std::exp((std::log(5.0 / 6) + std::log(4.0 / 5) + std::log(3.0 / 4) + std::log(2.0 / 3)) / 4);
  EXPECT_NEAR(bleu4({1, 2, 3, 4, 5, 6}, {1, 2, 3, 4, 5, 7}), want, 1e-12);
  // Brevity: hyp 1 2 3 4 (all n-grams match) against a 6-token ref: exp(1 - 6/4).
  EXPECT_NEAR(bleu4({1, 2, 3, 4}, {1, 2, 3, 4, 5, 6}), std::exp(1.0 - 1.5), 1e-12);
  // Clipping: "1 1 1 1" vs "1 2 3 4": unigram 1/4 but no matching bigram -> 0.
  EXPECT_EQ(bleu4({1, 1, 1, 1}, {1, 2, 3, 4}), 0.0);
  EXPECT_EQ(bleu4({}, {1, 2}), 0.0);
  EXPECT_EQ(bleu4({1, 2, 3}, {1, 2, 3}), 0.0);  // shorter than 4: no 4-grams, no smoothing
}

TEST(TextMetrics, CorpusBleuPoolsCounts) {
  EXPECT_DOUBLE_EQ(corpus_bleu4({{1, 2, 3, 4}, {5, 6, 7, 8}}, {{1, 2, 3, 4}, {5, 6, 7, 8}}), 1.0);
  // Pooled: the second pair alone would be 0 (3 tokens), pooled it only lowers precisions.
  const double b = corpus_bleu4({{1, 2, 3, 4, 5}, {9, 9, 9}}, {{1, 2, 3, 4, 5}, {9, 9, 9}});
  EXPECT_NEAR(b, 1.0, 1e-12);
}

TEST(TextMetrics, ExactPrefix) {
  EXPECT_EQ(exact_prefix({1, 2, 3, 9}, {1, 2, 3, 4}), 3);
  EXPECT_EQ(exact_prefix({5}, {1}), 0);
  EXPECT_EQ(exact_prefix({1, 2}, {1, 2, 3}), 2);
}

TEST(TextMetrics, RougeL) {
  // LCS of 1 2 3 4 5 and 1 3 5 7 is 1 3 5 (3): P = 3/5, R = 3/4, F = 2PR/(P+R) = 2/3.
  EXPECT_EQ(lcs_length({1, 2, 3, 4, 5}, {1, 3, 5, 7}), 3);
  EXPECT_NEAR(rouge_l({1, 2, 3, 4, 5}, {1, 3, 5, 7}), 2.0 / 3.0, 1e-12);
  EXPECT_DOUBLE_EQ(rouge_l({1, 2}, {1, 2}), 1.0);
  EXPECT_EQ(rouge_l({1, 2}, {3, 4}), 0.0);
}

TEST(TextMetrics, TokenF1) {
  // hyp {1,1,2} ref {1,2,2,3}: common = min(2,1) + min(1,2) = 2; P = 2/3, R = 1/2 -> F = 4/7.
  EXPECT_NEAR(token_f1({1, 1, 2}, {1, 2, 2, 3}), 4.0 / 7.0, 1e-12);
  EXPECT_EQ(token_f1({4}, {5}), 0.0);
}
