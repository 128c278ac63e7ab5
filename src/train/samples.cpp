#include "icae/train/samples.h"

#include <algorithm>
#include <cmath>

#include "icae/util/error.h"

namespace icae::train {

namespace {

// splitmix64: a well-mixed hash of (seed, index) mapped to [0, 1).
double unit_hash(uint64_t seed, int64_t index) {
  uint64_t z = seed + 0x9E3779B97F4A7C15ull * static_cast<uint64_t>(index + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<double>(z >> 11) * (1.0 / 9007199254740992.0);
}

// The part of a context that the curriculum compresses at `rate` (of the adapter's full rate).
std::vector<int64_t> curriculum_cut(const Icae& icae, const std::vector<int64_t>& ids, double rate) {
  const double full = icae.config().compression_rate;
  if (rate <= 0 || rate >= full) return ids;
  const auto n = static_cast<size_t>(std::max(1.0, std::ceil(static_cast<double>(ids.size()) * rate / full)));
  return std::vector<int64_t>(ids.begin(), ids.begin() + std::min(n, ids.size()));
}

}  // namespace

double curriculum_rate(double rate, int64_t steps, int64_t done) {
  if (steps <= 0 || done >= steps) return rate;
  return 1.0 + (rate - 1.0) * static_cast<double>(done) / static_cast<double>(steps);
}

Sample make_ae(const Icae& icae, const Example& ex, int64_t eos_id, double rate) {
  Sample s;
  s.kind = Objective::AE;
  s.seq = make_ae_sample(icae, curriculum_cut(icae, ex.context, rate), eos_id, rate);
  return s;
}

std::optional<Sample> make_lm(const Icae& icae, const Example& ex, const LmOptions& lm, double rate) {
  const size_t half = ex.context.size() / 2;
  if (half == 0) return std::nullopt;
  const std::vector<int64_t> first(ex.context.begin(), ex.context.begin() + half);
  const std::vector<int64_t> rest(ex.context.begin() + half, ex.context.end());
  auto seq = make_lm_sample(icae, curriculum_cut(icae, first, rate), rest, lm, rate);
  if (!seq) return std::nullopt;
  Sample s;
  s.kind = Objective::LM;
  s.seq = std::move(*seq);
  return s;
}

Sample make_sample(const Icae& icae, const Example& ex, int64_t index, double rate, const SampleOptions& o) {
  if (o.finetune) {
    Sample s;
    s.kind = Objective::FT;
    s.seq = make_ft_sample(icae, o.ft_template, ex.context, ex.prompt, ex.answer, o.eos_id);
    return s;
  }
  if (o.lm_ratio > 0 && unit_hash(o.seed, index) < o.lm_ratio)
    if (auto lm = make_lm(icae, ex, o.lm, rate)) return *lm;
  return make_ae(icae, ex, o.eos_id, rate);
}

}  // namespace icae::train
