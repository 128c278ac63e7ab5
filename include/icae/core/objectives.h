// The three ICAE training objectives as decoder sequences + labels (-100 = no loss):
//   AE (pretraining):  [slots..., AE] context EOS          labels on context + EOS
//   LM (pretraining):  [slots..., LM] continuation         labels on the continuation, the first
//                                                          leave_tokens_for_lm excluded
//   FT (fine-tuning):  template(before) slots... FT prompt template(after)  answer EOS
//                                                          labels on answer + EOS
// The prefixes (slots, special tokens, FT templates) are icae/core/prompt_layout.h's.
#pragma once
#include <cstdint>
#include <optional>
#include <vector>

#include "icae/core/prompt_layout.h"

namespace icae {

struct TrainingSample {
  std::vector<int64_t> context;  // tokens to compress
  std::vector<int64_t> ids;      // decoder sequence
  std::vector<int64_t> labels;   // same length as ids
};

struct LmOptions {
  int64_t leave_tokens_for_lm = 8;  // first continuation tokens without loss
  int64_t min_tokens_for_lm = 64;   // fewer continuation tokens: no LM sample
  bool use_lm_token = true;         // put the LM special token after the slots
};

TrainingSample make_ae_sample(const Icae& icae, const std::vector<int64_t>& context, int64_t eos_id,
                              double rate = 0);
// nullopt when the continuation is shorter than min_tokens_for_lm.
std::optional<TrainingSample> make_lm_sample(const Icae& icae, const std::vector<int64_t>& context,
                                             const std::vector<int64_t>& continuation, const LmOptions& options,
                                             double rate = 0);

TrainingSample make_ft_sample(const Icae& icae, const FtTemplate& tmpl, const std::vector<int64_t>& context,
                              const std::vector<int64_t>& prompt, const std::vector<int64_t>& answer, int64_t eos_id);

}  // namespace icae
