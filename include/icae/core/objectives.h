// The three ICAE training objectives as decoder sequences + labels (-100 = no loss):
//   AE (pretraining):  [slots..., AE] context EOS          labels on context + EOS
//   LM (pretraining):  [slots..., LM] continuation         labels on the continuation, the first
//                                                          leave_tokens_for_lm excluded
//   FT (fine-tuning):  template(before) slots... FT prompt template(after)  answer EOS
//                                                          labels on answer + EOS
// Slot placeholders are SpecialIds::mem_first, one per slot (n segments x k).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "icae/core/icae.h"

namespace icae {

namespace tok {
class Tokenizer;
}

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

// Slots a context of this many tokens compresses into (n segments x k), at the config's rate
// or at `rate` tokens per slot when given (> 0; a curriculum changes it during training).
int64_t slot_count(const IcaeConfig& config, int64_t context_length, double rate = 0);

TrainingSample make_ae_sample(const Icae& icae, const std::vector<int64_t>& context, int64_t eos_id,
                              double rate = 0);
// nullopt when the continuation is shorter than min_tokens_for_lm.
std::optional<TrainingSample> make_lm_sample(const Icae& icae, const std::vector<int64_t>& context,
                                             const std::vector<int64_t>& continuation, const LmOptions& options,
                                             double rate = 0);

// The text around [slots, FT, prompt] for instruction fine-tuning and answering.
struct FtTemplate {
  std::string name = "none";     // none | mistral | llama2 | llama3 | chatml
  std::vector<int64_t> before;   // e.g. [BOS, "[INST]"]
  std::vector<int64_t> after;    // e.g. ["[/INST]"]
};

// Builds the template from the tokenizer: "none" is [BOS] (when the tokenizer has one);
// "mistral" is the released ICAE's [BOS, "[INST]"] ... ["[/INST]"]; llama2, llama3 and chatml
// wrap the user turn as their chat templates do (system text optional, chatml only).
FtTemplate make_ft_template(const std::string& name, const tok::Tokenizer& tokenizer, const std::string& system = "");

// before + placeholders + FT + prompt + after: the decoder prefix to answer from.
std::vector<int64_t> ft_prefix(const Icae& icae, const FtTemplate& tmpl, int64_t num_slots,
                               const std::vector<int64_t>& prompt);
// [placeholders, AE]: the decoder prefix to reconstruct from.
std::vector<int64_t> ae_prefix(const Icae& icae, int64_t num_slots);

TrainingSample make_ft_sample(const Icae& icae, const FtTemplate& tmpl, const std::vector<int64_t>& context,
                              const std::vector<int64_t>& prompt, const std::vector<int64_t>& answer, int64_t eos_id);

}  // namespace icae
