// The AE / LM / FT training samples: a prompt layout (prompt_layout.cpp) plus targets and labels.
#include "icae/core/objectives.h"

namespace icae {

TrainingSample make_ae_sample(const Icae& icae, const std::vector<int64_t>& context, int64_t eos_id, double rate) {
  TrainingSample s;
  s.context = context;
  s.ids = ae_prefix(icae, slot_count(icae.config(), static_cast<int64_t>(context.size()), rate));
  s.labels.assign(s.ids.size(), -100);
  s.ids.insert(s.ids.end(), context.begin(), context.end());
  s.labels.insert(s.labels.end(), context.begin(), context.end());
  s.ids.push_back(eos_id);
  s.labels.push_back(eos_id);
  return s;
}

std::optional<TrainingSample> make_lm_sample(const Icae& icae, const std::vector<int64_t>& context,
                                             const std::vector<int64_t>& continuation, const LmOptions& o,
                                             double rate) {
  if (static_cast<int64_t>(continuation.size()) < o.min_tokens_for_lm) return std::nullopt;
  TrainingSample s;
  s.context = context;
  s.ids.assign(slot_count(icae.config(), static_cast<int64_t>(context.size()), rate), icae.ids().mem_first);
  if (o.use_lm_token) s.ids.push_back(icae.ids().lm);
  s.labels.assign(s.ids.size(), -100);
  for (size_t i = 0; i < continuation.size(); ++i) {
    s.ids.push_back(continuation[i]);
    s.labels.push_back(static_cast<int64_t>(i) < o.leave_tokens_for_lm ? -100 : continuation[i]);
  }
  return s;
}

TrainingSample make_ft_sample(const Icae& icae, const FtTemplate& tmpl, const std::vector<int64_t>& context,
                              const std::vector<int64_t>& prompt, const std::vector<int64_t>& answer, int64_t eos_id) {
  TrainingSample s;
  s.context = context;
  s.ids = ft_prefix(icae, tmpl, slot_count(icae.config(), static_cast<int64_t>(context.size())), prompt);
  s.labels.assign(s.ids.size(), -100);
  s.ids.insert(s.ids.end(), answer.begin(), answer.end());
  s.labels.insert(s.labels.end(), answer.begin(), answer.end());
  s.ids.push_back(eos_id);
  s.labels.push_back(eos_id);
  return s;
}

}  // namespace icae
