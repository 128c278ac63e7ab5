// When a run does what: its learning-rate factor and tokens per slot at each update, and after
// which updates it logs, evaluates and saves, and where this invocation stops. Everything the
// options say about time, in one place (Marian's scheduler), so that the loop only asks.
#pragma once
#include <cstdint>

#include "icae/train/optimizer.h"
#include "icae/train/options.h"

namespace icae::train {

class Scheduler {
 public:
  // has_eval: the run has held-out data (no evaluation without it).
  Scheduler(const TrainOptions& options, bool has_eval);

  // The update this invocation stops after: --stop-after (a milestone) or the schedule's end.
  int64_t last() const { return last_; }
  bool stopped_early(int64_t step) const { return step == last_ && last_ < options_.steps; }
  // For update number done + 1 (done updates made so far).
  double lr_factor(int64_t done) const;
  double lr(int64_t done) const { return options_.lr * lr_factor(done); }
  double tokens_per_slot(int64_t done) const;  // the curriculum's rate; 0 (the adapter's) when fine-tuning
  // After update `step` (1-based):
  bool log(int64_t step) const { return step % options_.log_every == 0 || step == last_; }
  bool evaluate(int64_t step) const;
  bool evaluate_at_start(int64_t step) const { return step == 0 && has_eval_ && options_.eval_every > 0; }
  bool save(int64_t step) const { return (options_.save_every > 0 && step % options_.save_every == 0) || step == last_; }
  // Within 5% of the plain-LM loss by this update: the slots carry little (warn once).
  bool plateau_check(int64_t step) const { return step >= options_.plateau_check_step; }

 private:
  const TrainOptions& options_;
  Schedule schedule_;
  bool has_eval_;
  int64_t last_;
};

}  // namespace icae::train
