// Metrics on token sequences, as the ICAE paper and PwC evaluation use them. Pure functions over
// ids (no tensors), so training, `icae eval` and tests share one definition.
//   BLEU-4: sentence-level, uniform weights over 1..4-gram clipped precisions, brevity penalty,
//           no smoothing (any empty n-gram precision gives 0), as nltk's sentence_bleu default.
//   ROUGE-L: F-measure (beta = 1) of the longest common subsequence.
//   token F1: bag-of-tokens overlap, as in SQuAD.
#pragma once
#include <cstdint>
#include <vector>

namespace icae::eval {

using Ids = std::vector<int64_t>;

// Sentence BLEU-4 of a hypothesis against one reference, in [0, 1].
double bleu4(const Ids& hypothesis, const Ids& reference);
// Corpus BLEU-4: clipped n-gram counts and lengths summed over all pairs first (as sacrebleu).
double corpus_bleu4(const std::vector<Ids>& hypotheses, const std::vector<Ids>& references);
// Number of leading tokens equal in both.
int64_t exact_prefix(const Ids& hypothesis, const Ids& reference);
// Longest common subsequence length, and ROUGE-L F1 built on it.
int64_t lcs_length(const Ids& a, const Ids& b);
double rouge_l(const Ids& hypothesis, const Ids& reference);
// SQuAD-style token F1 (multiset overlap).
double token_f1(const Ids& hypothesis, const Ids& reference);

}  // namespace icae::eval
