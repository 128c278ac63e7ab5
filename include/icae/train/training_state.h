// Everything a resumed run needs besides its options (Marian's TrainingState): the trainable
// tensors, the optimizer's moments, the update count, the data position, the dropout stream.
// Saved as RUN_DIR/checkpoint.safetensors, atomically (temporary file, fsync, rename): a
// process killed while writing leaves the previous checkpoint in place.
#pragma once
#include <ATen/core/Generator.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "icae/core/icae.h"
#include "icae/train/optimizer.h"

namespace icae::train {

struct TrainingProgress {
  int64_t step = 0;              // updates done
  int64_t examples_drawn = 0;    // the data stream's position
  int64_t context_tokens = 0;    // compressed so far
  double elapsed_s = 0;          // training time so far (all sittings)
  int64_t bad_records = 0;
  nlohmann::json to_json() const;
  static TrainingProgress from_json(const nlohmann::json& j);
};

void save_training_state(const std::string& path, const Icae& icae, const AdamW& optimizer,
                         const at::Generator& dropout_generator, const TrainingProgress& progress);
// Restores into an ICAE and optimizer built with the run's options; returns the progress.
TrainingProgress load_training_state(const std::string& path, Icae& icae, AdamW& optimizer,
                                     at::Generator& dropout_generator);

}  // namespace icae::train
