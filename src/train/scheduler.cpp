#include "icae/train/scheduler.h"

#include <algorithm>

#include "icae/train/samples.h"

namespace icae::train {

Scheduler::Scheduler(const TrainOptions& options, bool has_eval)
    : options_(options),
      schedule_(parse_schedule(options.schedule)),
      has_eval_(has_eval),
      last_(options.stop_after > 0 ? std::min(options.stop_after, options.steps) : options.steps) {}

double Scheduler::lr_factor(int64_t done) const {
  return train::lr_factor(schedule_, done, options_.warmup, options_.steps);
}

double Scheduler::tokens_per_slot(int64_t done) const {
  return options_.mode == "finetune" ? 0.0 : curriculum_rate(options_.icae.compression_rate, options_.curriculum_steps, done);
}

bool Scheduler::evaluate(int64_t step) const {
  return has_eval_ && options_.eval_every > 0 && (step % options_.eval_every == 0 || step == last_);
}

}  // namespace icae::train
