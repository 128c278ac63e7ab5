// Choosing the next token from logits: greedy, or sampled (temperature, top-k, top-p, seed), with
// repetition controls over the ids picked so far. One Sampler per generated sequence.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <random>
#include <vector>

namespace icae {

struct SamplingOptions {
  double temperature = 0.0;  // 0: greedy (argmax)
  int64_t top_k = 0;         // 0: no limit
  double top_p = 1.0;        // nucleus mass; 1: no limit
  uint64_t seed = 0;
  // Against loops (a weak reconstruction tends to repeat one phrase), both over the ids this
  // sampler has picked so far — the generated text, not the prefix (an ICAE prefix is slots):
  double repetition_penalty = 1.0;  // > 1: each generated token's logit divided by it if positive,
                                    // multiplied if negative (CTRL; transformers' repetition_penalty)
  int64_t no_repeat_ngram = 0;      // > 0: never complete an n-gram of this size a second time
                                    // (transformers' no_repeat_ngram_size)
};

// The greedy choice: the index of the largest of logits [V] (the first one on ties, a NaN counting
// as the largest, as at::argmax). CPU float32 logits are scanned in a plain loop: at::argmax over
// a vocabulary opens an OpenMP parallel region, and under OMP_WAIT_POLICY=PASSIVE waking its
// sleeping thread once per token cost ~0.4 ms of SmolLM2's ~3 ms (2 threads, 2026-12-02).
int64_t greedy_pick(const at::Tensor& logits);

// Picks the next token from logits [V] and remembers it (one sampler per generated sequence).
// Sampling runs on the CPU with its own seeded engine, so a seed gives the same text on every
// device.
class Sampler {
 public:
  explicit Sampler(const SamplingOptions& options);
  int64_t pick(const at::Tensor& logits);

 private:
  // The logits after the repetition penalty and the n-gram ban (float32, CPU).
  at::Tensor constrained(const at::Tensor& logits) const;
  int64_t sample(const at::Tensor& logits);  // temperature, top-k, top-p

  SamplingOptions options_;
  std::mt19937_64 rng_;
  std::vector<int64_t> history_;  // the ids picked so far
};

}  // namespace icae
