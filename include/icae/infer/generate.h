// Text generation with a KV cache: greedy or sampled (temperature, top-k, top-p, seed), from
// token ids or from a prefix of embeddings (ICAE: memory slots + AE/FT + prompt).
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace icae {

class Transformer;
struct ForwardInput;

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

struct GenerateOptions {
  int64_t max_new_tokens = 128;
  SamplingOptions sampling;
  std::vector<int64_t> stop_ids;            // generation ends after emitting one of these
  bool keep_logits = false;                 // return each step's logits [V] (float32, CPU)
  std::function<bool(int64_t)> on_token;    // streaming callback; return false to stop early
};

struct GenerateResult {
  std::vector<int64_t> ids;        // generated ids, the stop id included when one was hit
  std::vector<at::Tensor> logits;  // per step when keep_logits
  std::string stop_reason;         // "stop_id", "max_new_tokens", "callback"
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

GenerateResult generate(const Transformer& model, const at::Tensor& prefix_embeds /* [T, H] */,
                        const GenerateOptions& options);
// From any one-row prefill input (an ICAE decoder prefix with either kind of slots:
// Icae::decoder_input). The cache holds the prefill's positions, slots included.
GenerateResult generate(const Transformer& model, const ForwardInput& prefill, const GenerateOptions& options);
GenerateResult generate_from_ids(const Transformer& model, const std::vector<int64_t>& prompt_ids,
                                 const GenerateOptions& options);

}  // namespace icae
