// One generated sequence, from logits to ids: its sampler, budget, stop ids and streaming
// callback, and the stop rules, in one place. generate(), Session::run and DecodeBatch each run
// their forward passes their own way (one row, a padded batch, rows that join and leave) and
// hand every row's logits to its RowDecoder; what a row returns is a Completion.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "icae/infer/sampler.h"

namespace icae {

struct Completion {
  std::vector<int64_t> ids;        // generated ids, the stop id included when one was hit
  std::string text;                // decoded (special tokens skipped); empty without a tokenizer
  std::string stop_reason;         // "stop_id", "max_new_tokens", "callback" (or the caller's, e.g. "timeout")
  int64_t prefix_tokens = 0;       // length of the decoder prefix (slots included)
  std::vector<at::Tensor> logits;  // each step's logits [V] (float32, CPU), when asked for
};

// Streaming: called once per generated id; return false to end the row there.
using TokenCallback = std::function<bool(int64_t id)>;

struct RowDecoderOptions {
  SamplingOptions sampling;
  int64_t max_new_tokens = 128;
  std::vector<int64_t> stop_ids;  // the row ends after emitting one of these
  TokenCallback on_token;
  bool keep_logits = false;
};

class RowDecoder {
 public:
  explicit RowDecoder(RowDecoderOptions options);
  // Picks the next id from logits [V], streams it and applies the stop rules (callback, stop id,
  // budget, in that order). Returns done().
  bool accept(const at::Tensor& logits);
  // Ends the row from outside (e.g. "timeout"); a row already done keeps its reason.
  void end(const std::string& reason);
  bool done() const { return done_; }
  int64_t last() const { return out_.ids.empty() ? -1 : out_.ids.back(); }  // the id to feed next
  const Completion& completion() const { return out_; }
  Completion take() { return std::move(out_); }

 private:
  RowDecoderOptions options_;
  Sampler sampler_;
  Completion out_;
  bool done_ = false;
};

}  // namespace icae
