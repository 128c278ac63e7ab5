// Context distillation: instruction data for ICAE fine-tuning made by the base model itself.
// For each passage and each prompt, the base model answers with the whole passage in its prompt
// (the "teacher"); ICAE then learns to give the same answers from the passage's slots alone. No
// external LLM is involved, and the result is an ordinary PwC-format JSONL file
// ({"input", "prompt", "answer"} per line) that anyone can read, edit or replace.
#pragma once
#include <cstdint>
#include <functional>
#include <ostream>
#include <string>
#include <vector>

#include "icae/infer/text_model.h"

namespace icae {
class Session;
}

namespace icae::train {

// The prompts used when none are given: answerable from a short passage alone, varied in what
// they ask the slots to carry (gist, names, order of events, verbatim text).
const std::vector<std::string>& default_distill_prompts();

// The prompt a base model reads when it is given the whole context: passage, blank line, prompt,
// in the model's chat template when it has one. `icae eval ft` compares against the same prompt.
std::vector<int64_t> full_context_prompt(const TextModel& model, const std::string& passage,
                                         const std::string& prompt);

struct DistillOptions {
  std::vector<std::string> prompts;  // empty: default_distill_prompts()
  int64_t max_new_tokens = 96;       // per answer
  int64_t batch = 8;                 // answers decoded together
  int64_t min_answer_tokens = 2;     // shorter answers (e.g. an immediate end of turn) are dropped
};

struct DistillProgress {
  int64_t done = 0, total = 0, written = 0, dropped = 0;
  double seconds = 0, tokens_per_s = 0;
};

struct DistillResult {
  int64_t written = 0, dropped = 0, generated_tokens = 0;
  double seconds = 0;
};

// Answers every (passage, prompt) pair with the session's base model (greedy unless the
// session's sampling says otherwise) and writes one JSONL record per kept answer to `out`, in
// passage-major order. `on_progress` is called after every batch.
DistillResult distill(Session& session, const std::vector<std::string>& passages, const DistillOptions& options,
                      std::ostream& out, const std::function<void(const DistillProgress&)>& on_progress = {});

}  // namespace icae::train
