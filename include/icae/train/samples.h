// From examples to training samples: the AE / LM choice of pretraining, the curriculum on tokens
// per slot, and the FT template of fine-tuning.
#pragma once
#include <cstdint>
#include <optional>

#include "icae/core/objectives.h"
#include "icae/train/data.h"
#include "icae/train/step.h"

namespace icae::train {

struct SampleOptions {
  bool finetune = false;
  double lm_ratio = 0.5;         // pretraining: share of LM samples (where the text allows one)
  LmOptions lm;
  uint64_t seed = 0;
  int64_t eos_id = -1;
  FtTemplate ft_template;        // fine-tuning
};

// Tokens per slot after `done` updates of a curriculum over `steps` updates from 1 to `rate`
// (rate itself when steps is 0).
double curriculum_rate(double rate, int64_t curriculum_steps, int64_t done);

// The sample for the `index`-th example drawn. Pretraining: LM with probability lm_ratio when
// the text is long enough (its first half compressed, the second half continued), else AE. The
// choice is a hash of (seed, index), so a replayed stream makes the same choices. With a
// curriculum (rate below the adapter's), the compressed part is cut to the same slot count.
Sample make_sample(const Icae& icae, const Example& example, int64_t index, double rate, const SampleOptions& o);
// Evaluation forms of one text example (at the adapter's rate).
Sample make_ae(const Icae& icae, const Example& example, int64_t eos_id, double rate = 0);
std::optional<Sample> make_lm(const Icae& icae, const Example& example, const LmOptions& lm, double rate = 0);

}  // namespace icae::train
