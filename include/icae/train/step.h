// One training update, the function the trainer, the tests and the benchmark all call:
// compress every context of the micro-batches (encoder, adapter on), run the frozen decoder on
// the AE / LM / FT sequences, take the token-level mean cross-entropy over the whole update
// (all micro-batches together, so batch 4 x accum 1 equals batch 1 x accum 4), backward,
// clip, AdamW.
#pragma once
#include <ATen/core/Generator.h>

#include <cstdint>
#include <vector>

#include "icae/core/objectives.h"
#include "icae/train/optimizer.h"

namespace icae::train {

class Communicator;

enum class Objective { AE = 0, LM = 1, FT = 2 };
const char* objective_name(Objective o);

struct Sample {
  TrainingSample seq;  // context, decoder ids, labels
  Objective kind = Objective::AE;
};
using MicroBatch = std::vector<Sample>;

struct StepConfig {
  double lr_factor = 1.0;             // from the schedule
  double clip = 2.0;                  // max global grad norm (0: none)
  double rate = 0;                    // tokens per slot for this update (curriculum); 0: the config's
  at::Generator* generator = nullptr; // LoRA dropout's stream
  bool update = true;                 // false: forward + backward only (no optimizer step)
  bool activation_checkpointing = false;
  Communicator* comm = nullptr;       // data-parallel: gradients and token counts summed over ranks
};

struct StepStats {
  double loss = 0;                    // token-level mean over the update
  double loss_by[3] = {0, 0, 0};      // AE, LM, FT (mean over their tokens; 0 when none)
  int64_t tokens_by[3] = {0, 0, 0};   // labelled tokens per objective
  int64_t context_tokens = 0;         // tokens compressed
  double grad_norm = 0;               // before clipping
  bool finite = true;                 // false: NaN/inf loss or gradient, no update was made
  double seconds = 0;
};

StepStats train_step(Icae& icae, AdamW& optimizer, const std::vector<MicroBatch>& micro_batches,
                     const StepConfig& config);

// The same losses without gradients (evaluation): token-level means per objective.
StepStats eval_losses(const Icae& icae, const std::vector<MicroBatch>& micro_batches, double rate = 0);

}  // namespace icae::train
