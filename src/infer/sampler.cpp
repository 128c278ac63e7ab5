#include "icae/infer/sampler.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "icae/util/error.h"

namespace icae {

int64_t greedy_pick(const at::Tensor& logits) {
  if (!logits.device().is_cpu() || logits.scalar_type() != at::kFloat || !logits.is_contiguous())
    return logits.argmax().item<int64_t>();
  ICAE_CHECK(logits.numel() > 0, ErrorKind::Usage, "greedy_pick: empty logits");
  const float* p = logits.data_ptr<float>();
  int64_t best = 0;
  for (int64_t i = 0; i < logits.numel(); ++i) {
    if (std::isnan(p[i])) return i;
    if (p[i] > p[best]) best = i;
  }
  return best;
}

Sampler::Sampler(const SamplingOptions& options) : options_(options), rng_(options.seed) {
  ICAE_CHECK(options.temperature >= 0, ErrorKind::Usage, "temperature must be >= 0");
  ICAE_CHECK(options.top_p > 0 && options.top_p <= 1, ErrorKind::Usage, "top_p must be in (0, 1]");
  ICAE_CHECK(options.top_k >= 0, ErrorKind::Usage, "top_k must be >= 0");
  ICAE_CHECK(options.repetition_penalty > 0, ErrorKind::Usage, "repetition_penalty must be > 0");
  ICAE_CHECK(options.no_repeat_ngram >= 0, ErrorKind::Usage, "no_repeat_ngram must be >= 0");
}

at::Tensor Sampler::constrained(const at::Tensor& logits_in) const {
  at::Tensor logits = logits_in.to(at::kCPU).to(at::kFloat).contiguous().clone();
  float* p = logits.data_ptr<float>();
  const int64_t v = logits.numel();
  const auto h = static_cast<int64_t>(history_.size());
  if (options_.repetition_penalty != 1.0) {
    std::vector<bool> seen(static_cast<size_t>(v), false);  // each token once, however often it came
    const auto penalty = static_cast<float>(options_.repetition_penalty);
    for (int64_t id : history_) {
      if (id < 0 || id >= v || seen[id]) continue;
      seen[id] = true;
      p[id] = p[id] > 0 ? p[id] / penalty : p[id] * penalty;
    }
  }
  const int64_t n = options_.no_repeat_ngram;
  if (n > 0 && h >= n - 1) {
    // Every earlier n-gram whose first n-1 ids equal the last n-1 generated bans its last id.
    std::vector<int64_t> banned;
    for (int64_t start = 0; start + n <= h; ++start) {
      if (!std::equal(history_.begin() + start, history_.begin() + start + n - 1, history_.end() - (n - 1))) continue;
      const int64_t id = history_[start + n - 1];
      if (id >= 0 && id < v) banned.push_back(id);
    }
    std::sort(banned.begin(), banned.end());
    banned.erase(std::unique(banned.begin(), banned.end()), banned.end());
    // A tiny vocabulary can have every token banned: then the ban is lifted for this step rather
    // than sampling from nothing.
    if (static_cast<int64_t>(banned.size()) < v)
      for (int64_t id : banned) p[id] = -std::numeric_limits<float>::infinity();
  }
  return logits;
}

int64_t Sampler::pick(const at::Tensor& logits_in) {
  const bool constrain = options_.repetition_penalty != 1.0 || options_.no_repeat_ngram > 0;
  const at::Tensor raw = constrain ? constrained(logits_in) : logits_in;
  const int64_t id = options_.temperature <= 0 ? greedy_pick(raw) : sample(raw);
  history_.push_back(id);
  return id;
}

int64_t Sampler::sample(const at::Tensor& logits_in) {
  at::Tensor logits = logits_in.to(at::kCPU).to(at::kDouble) / options_.temperature;
  const int64_t v = logits.size(0);
  const int64_t k = options_.top_k > 0 ? std::min(options_.top_k, v) : v;
  auto [values, indices] = logits.topk(k);  // sorted, descending
  at::Tensor probs = at::softmax(values, 0).contiguous();
  const double* p = probs.data_ptr<double>();
  // Nucleus: the smallest prefix whose mass reaches top_p (at least one token).
  int64_t keep = k;
  if (options_.top_p < 1.0) {
    double mass = 0;
    for (int64_t i = 0; i < k; ++i) {
      mass += p[i];
      if (mass >= options_.top_p) {
        keep = i + 1;
        break;
      }
    }
  }
  double total = 0;
  for (int64_t i = 0; i < keep; ++i) total += p[i];
  double r = std::uniform_real_distribution<double>(0.0, total)(rng_);
  for (int64_t i = 0; i < keep; ++i) {
    r -= p[i];
    if (r <= 0) return indices[i].item<int64_t>();
  }
  return indices[keep - 1].item<int64_t>();
}

}  // namespace icae
