#include "icae/train/distill.h"

#include <chrono>
#include <nlohmann/json.hpp>

#include "icae/infer/session.h"
#include "icae/util/error.h"

namespace icae::train {

const std::vector<std::string>& default_distill_prompts() {
  static const std::vector<std::string> prompts = {
      "Summarize the passage in one sentence.",
      "List the people and places mentioned in the passage.",
      "What happens first in the passage?",
      "Repeat the first sentence of the passage.",
  };
  return prompts;
}

std::vector<int64_t> full_context_prompt(const TextModel& model, const std::string& passage,
                                         const std::string& prompt) {
  const std::string full = passage + "\n\n" + prompt;
  if (model.chat_format.empty()) return encode_plain(*model.tokenizer, full);
  return encode_chat_prompt(model, full);
}

DistillResult distill(Session& session, const std::vector<std::string>& passages, const DistillOptions& o,
                      std::ostream& out, const std::function<void(const DistillProgress&)>& on_progress) {
  ICAE_CHECK(session.model().tokenizer != nullptr, ErrorKind::Usage, "distillation needs the model's tokenizer");
  ICAE_CHECK(o.batch > 0 && o.max_new_tokens > 0, ErrorKind::Usage, "distill: batch and max_new_tokens must be > 0");
  const std::vector<std::string>& prompts = o.prompts.empty() ? default_distill_prompts() : o.prompts;
  struct Pair {
    size_t passage, prompt;
  };
  std::vector<Pair> pairs;
  for (size_t p = 0; p < passages.size(); ++p)
    for (size_t q = 0; q < prompts.size(); ++q) pairs.push_back({p, q});

  DistillResult r;
  const auto t0 = std::chrono::steady_clock::now();
  for (size_t begin = 0; begin < pairs.size(); begin += static_cast<size_t>(o.batch)) {
    const size_t end = std::min(pairs.size(), begin + static_cast<size_t>(o.batch));
    std::vector<DecodeRow> rows;
    for (size_t i = begin; i < end; ++i) {
      rows.push_back(session.generate_row(
          full_context_prompt(session.model(), passages[pairs[i].passage], prompts[pairs[i].prompt])));
      rows.back().max_new_tokens = o.max_new_tokens;
    }
    const std::vector<Completion> answers = session.run(rows);
    for (size_t i = begin; i < end; ++i) {
      const Completion& c = answers[i - begin];
      std::vector<int64_t> ids = c.ids;
      if (c.stop_reason == "stop_id" && !ids.empty()) ids.pop_back();
      r.generated_tokens += static_cast<int64_t>(c.ids.size());
      // An answer cut off by the token limit is still a faithful (if partial) teacher output;
      // an (almost) empty one teaches nothing.
      if (static_cast<int64_t>(ids.size()) < o.min_answer_tokens) {
        ++r.dropped;
        continue;
      }
      nlohmann::json line = {{"input", passages[pairs[i].passage]},
                             {"prompt", prompts[pairs[i].prompt]},
                             {"answer", session.detokenize(ids)}};
      out << line.dump() << "\n";
      ++r.written;
    }
    out.flush();
    ICAE_CHECK(out.good(), ErrorKind::Io, "distill: writing the output failed");
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (on_progress) {
      DistillProgress p;
      p.done = static_cast<int64_t>(end);
      p.total = static_cast<int64_t>(pairs.size());
      p.written = r.written;
      p.dropped = r.dropped;
      p.seconds = r.seconds;
      p.tokens_per_s = r.seconds > 0 ? r.generated_tokens / r.seconds : 0;
      on_progress(p);
    }
  }
  return r;
}

}  // namespace icae::train
