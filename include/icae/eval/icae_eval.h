// Measuring an ICAE adapter the paper's way, on token ids (tests feed ids; ae also takes text):
//   ae: greedy reconstruction of each context from its slots — BLEU-4, exact-match prefix,
//       teacher-forced token accuracy (the decoder's argmax vs the context, given the truth so far)
//   lm: perplexity of a continuation given (i) the slots of the preceding text, (ii) the
//       preceding text itself, (iii) nothing — the paper's 9.01 -> 9.50 comparison
//   ft: answers from the slots next to the reference answer and to the base model's answer
//       given the full context; ROUGE-L and token F1 against both
// Metrics come from eval/text_metrics.h.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

namespace icae {
class Session;
}

namespace icae::eval {

using Ids = std::vector<int64_t>;

// ---- ae
struct AeEvalOptions {
  int64_t batch = 8;           // contexts compressed and decoded together
  int64_t extra_tokens = 8;    // decode up to len(context) + this many tokens
  // Progress: called after each batch with the contexts done and their total; false stops
  // there (the report then holds the samples done so far).
  std::function<bool(size_t done, size_t total)> on_batch;
};
struct AeSample {
  std::string source;
  int64_t tokens = 0, slots = 0;
  double bleu = 0;             // sentence BLEU-4 of the reconstruction
  int64_t exact_prefix = 0;    // leading tokens reconstructed exactly
  double token_accuracy = 0;   // teacher-forced argmax accuracy over context + EOS
  Ids reconstruction;          // without the stop id
};
struct AeReport {
  std::vector<AeSample> samples;
  double mean_bleu = 0, corpus_bleu = 0, mean_exact_prefix = 0, mean_token_accuracy = 0;
};
AeReport eval_ae(Session& session, const std::vector<Ids>& contexts, const std::vector<std::string>& sources,
                 const AeEvalOptions& options = {});
// The same on text samples (eval_data.h's read_eval_data, EvalDataKind::Text), tokenized by the
// session: what `icae eval ae` and Python's Model.eval_ae run. A sample without tokens is bad input.
struct EvalSample;
AeReport eval_ae(Session& session, const std::vector<EvalSample>& texts, const AeEvalOptions& options = {});

// ---- lm
struct LmEvalOptions {
  int64_t context_tokens = 512;       // at most this many tokens compressed (or read in full)
  int64_t continuation_tokens = 128;  // at most this many scored after them
  int64_t min_continuation = 8;       // shorter: the text is split in half instead, or skipped
  bool use_lm_token = true;           // [slots, LM] as in LM pretraining
  int64_t batch = 8;                  // contexts compressed together
};
struct LmSample {
  std::string source;
  int64_t context = 0, scored = 0;
  double nll_slots = 0, nll_full = 0, nll_none = 0;  // summed over the scored tokens
};
struct LmReport {
  std::vector<LmSample> samples;
  int64_t scored_tokens = 0;
  double ppl_slots = 0, ppl_full = 0, ppl_none = 0;  // exp(total NLL / total tokens)
};
LmReport eval_lm(Session& session, const std::vector<Ids>& texts, const std::vector<std::string>& sources,
                 const LmEvalOptions& options = {});

// ---- ft
struct FtEvalOptions {
  int64_t max_new_tokens = 128;
  bool with_base = true;    // also answer with the base model reading the full context
  int64_t batch = 8;        // contexts compressed and answers decoded together
};
struct FtItem {
  std::string source;
  Ids context, prompt, reference;  // reference: the answer's ids
  Ids base_prompt;                 // the base model's full-context prompt (chat-formatted by the caller)
};
struct FtSample {
  std::string source;
  Ids icae_answer, base_answer;  // without stop ids
  double rouge_ref = 0, f1_ref = 0;          // ICAE answer vs reference
  double rouge_base = 0, f1_base = 0;        // ICAE answer vs the base model's answer
  double base_rouge_ref = 0, base_f1_ref = 0;  // the base model's answer vs reference
};
struct FtReport {
  std::vector<FtSample> samples;
  double rouge_ref = 0, f1_ref = 0, rouge_base = 0, f1_base = 0, base_rouge_ref = 0, base_f1_ref = 0;  // means
};
FtReport eval_ft(Session& session, const std::vector<FtItem>& items, const FtEvalOptions& options = {});

// One teacher-forced decoder pass over `ids` (slot placeholders take the slots; slots may be
// undefined): the summed -log p(ids[i] | ids[<i]) and the number of argmax hits, over the
// positions i >= first_scored. Base vocabulary only.
struct TeacherForced {
  double nll = 0;
  int64_t correct = 0, scored = 0;
};
TeacherForced teacher_forced(const Session& session, const Ids& ids, const at::Tensor& slots, int64_t first_scored);

}  // namespace icae::eval
