#include "icae/eval/text_metrics.h"

#include <algorithm>
#include <cmath>
#include <map>

namespace icae::eval {

namespace {

using NgramCounts = std::map<std::vector<int64_t>, int64_t>;

NgramCounts ngrams(const Ids& s, size_t n) {
  NgramCounts out;
  for (size_t i = 0; i + n <= s.size(); ++i) ++out[Ids(s.begin() + i, s.begin() + i + n)];
  return out;
}

// Clipped matches and the hypothesis' n-gram total for one order.
std::pair<int64_t, int64_t> clipped(const Ids& hyp, const Ids& ref, size_t n) {
  const NgramCounts h = ngrams(hyp, n), r = ngrams(ref, n);
  int64_t match = 0, total = 0;
  for (const auto& [g, c] : h) {
    total += c;
    auto it = r.find(g);
    if (it != r.end()) match += std::min(c, it->second);
  }
  return {match, total};
}

double bleu_from(const int64_t (&match)[4], const int64_t (&total)[4], int64_t hyp_len, int64_t ref_len) {
  if (hyp_len == 0) return 0.0;
  double log_p = 0;
  for (int n = 0; n < 4; ++n) {
    if (total[n] == 0 || match[n] == 0) return 0.0;
    log_p += std::log(static_cast<double>(match[n]) / static_cast<double>(total[n])) / 4.0;
  }
  const double bp = hyp_len >= ref_len ? 1.0 : std::exp(1.0 - static_cast<double>(ref_len) / hyp_len);
  return bp * std::exp(log_p);
}

}  // namespace

double bleu4(const Ids& hyp, const Ids& ref) { return corpus_bleu4({hyp}, {ref}); }

double corpus_bleu4(const std::vector<Ids>& hyps, const std::vector<Ids>& refs) {
  int64_t match[4] = {0, 0, 0, 0}, total[4] = {0, 0, 0, 0}, hl = 0, rl = 0;
  const size_t n = std::min(hyps.size(), refs.size());
  for (size_t i = 0; i < n; ++i) {
    for (int k = 0; k < 4; ++k) {
      auto [m, t] = clipped(hyps[i], refs[i], static_cast<size_t>(k + 1));
      match[k] += m;
      total[k] += t;
    }
    hl += static_cast<int64_t>(hyps[i].size());
    rl += static_cast<int64_t>(refs[i].size());
  }
  return bleu_from(match, total, hl, rl);
}

int64_t exact_prefix(const Ids& hyp, const Ids& ref) {
  const size_t n = std::min(hyp.size(), ref.size());
  size_t i = 0;
  while (i < n && hyp[i] == ref[i]) ++i;
  return static_cast<int64_t>(i);
}

int64_t lcs_length(const Ids& a, const Ids& b) {
  // One row of the dynamic programme at a time: O(|a| |b|) time, O(|b|) memory.
  std::vector<int64_t> prev(b.size() + 1, 0), cur(b.size() + 1, 0);
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = a[i - 1] == b[j - 1] ? prev[j - 1] + 1 : std::max(prev[j], cur[j - 1]);
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

double rouge_l(const Ids& hyp, const Ids& ref) {
  if (hyp.empty() || ref.empty()) return hyp.empty() && ref.empty() ? 1.0 : 0.0;
  const double l = static_cast<double>(lcs_length(hyp, ref));
  if (l == 0) return 0.0;
  const double p = l / static_cast<double>(hyp.size()), r = l / static_cast<double>(ref.size());
  return 2 * p * r / (p + r);
}

double token_f1(const Ids& hyp, const Ids& ref) {
  if (hyp.empty() || ref.empty()) return hyp.empty() && ref.empty() ? 1.0 : 0.0;
  std::map<int64_t, int64_t> h, r;
  for (auto t : hyp) ++h[t];
  for (auto t : ref) ++r[t];
  int64_t common = 0;
  for (const auto& [t, c] : h) {
    auto it = r.find(t);
    if (it != r.end()) common += std::min(c, it->second);
  }
  if (common == 0) return 0.0;
  const double p = static_cast<double>(common) / hyp.size(), rc = static_cast<double>(common) / ref.size();
  return 2 * p * rc / (p + rc);
}

}  // namespace icae::eval
