// Where the memory slots sit in a decoder sequence: the prefixes both training (the AE and FT
// objectives) and inference (reconstruct, answer, slot exports) build, so the two cannot drift.
//   AE:  [slots..., AE]                                   then the context to reconstruct
//   FT:  template(before) slots... FT prompt template(after)   then the answer
// Slot placeholders are SpecialIds::mem_first, one per slot (n segments x k).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "icae/core/icae.h"

namespace icae {

namespace tok {
class Tokenizer;
}

// Slots a context of this many tokens compresses into (n segments x k), at the config's rate
// or at `rate` tokens per slot when given (> 0; a curriculum changes it during training).
int64_t slot_count(const IcaeConfig& config, int64_t context_length, double rate = 0);

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

}  // namespace icae
