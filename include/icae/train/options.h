// Every option of a training run (icae pretrain / icae finetune). Saved whole as
// RUN_DIR/config.json, so `--resume RUN_DIR` continues with exactly the same settings.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "icae/core/icae.h"

namespace icae::train {

// What a new run trains unless told otherwise: IcaeConfig's defaults with the linear projector.
IcaeConfig new_run_icae_config();

struct TrainOptions {
  std::string mode = "pretrain";        // pretrain (AE + LM on text) | finetune (PwC instruction data)
  std::string model;                    // base model: HF folder or .gguf
  std::string tokenizer;                // optional tokenizer.json override
  std::vector<std::string> train_data;  // files / folders
  std::vector<std::string> eval_data;
  std::string out;                      // the run folder
  std::string init;                     // finetune: adapter file or run folder to start from
  std::string templ = "none";           // finetune: FT template (none|mistral|llama2|llama3|chatml)

  // The adapter this run trains, under the names its file records (icae/core/icae.h): k
  // (mem_size; CLI -k/--mem-size), compression_rate (--rate), LoRA (--lora-r/-alpha/-dropout,
  // --targets; the dropout is the run's own even when --init gives the rest), the slot projector,
  // slot kind and memory positions. New runs project linearly (new_run_icae_config); IcaeConfig's
  // own default, none, is what released checkpoints load as.
  IcaeConfig icae = new_run_icae_config();
  int64_t max_context = 512;

  // Objectives
  double lm_ratio = 0.5;                // pretrain: share of LM samples
  int64_t leave_tokens_for_lm = 8;
  int64_t min_tokens_for_lm = 64;
  int64_t curriculum_steps = 0;         // tokens per slot grow from 1 to `rate` over these updates
  bool split_blocks = false;

  // Optimisation
  int64_t batch = 8;
  int64_t accum = 1;
  double lr = 1e-4;
  double mem_lr = 0;                    // memory embeddings + projector; 0: same as lr
  int64_t warmup = 300;
  std::string schedule = "cosine";      // cosine | linear | constant
  int64_t steps = 1000;                 // the schedule's length: warm-up and decay are laid out over it
  int64_t stop_after = 0;               // stop (and save) after this update, schedule unchanged; 0: at `steps`.
                                        // Not kept across --resume: each invocation says its own.
  double weight_decay = 0.0;
  double clip = 2.0;
  uint64_t seed = 42;
  int64_t shuffle_buffer = 512;

  // Observation
  int64_t eval_every = 100;
  int64_t save_every = 100;
  int64_t log_every = 10;
  int64_t eval_samples = 32;            // held-out contexts for the eval losses
  int64_t eval_generate = 4;            // of which greedily reconstructed for BLEU
  int64_t plateau_check_step = 500;     // warn when eval AE loss is still near plain LM by then

  // Execution
  std::string device = "cpu";
  std::string dtype = "auto";  // auto: bf16 where the hardware computes it natively, else f32 (resolved at start)
  int threads = 0;
  bool activation_checkpointing = false;
  bool deterministic = false;
  bool strict_data = false;
};

// The run config (config.json): the run's own options, and the adapter's under "icae" exactly as
// adapter files write them (icae_config_to_json).
nlohmann::json to_json(const TrainOptions& o);
// Missing keys keep their defaults; unknown keys are an error (a typo in a hand-edited config).
// Configs written before "icae" existed (flat mem_size, rate, lora_r, lora_alpha, lora_dropout,
// targets, projector, slot_kind, memory_positions) read the same.
TrainOptions options_from_json(const nlohmann::json& j);
// Range and consistency checks with messages naming the option.
void validate(const TrainOptions& o);

}  // namespace icae::train
