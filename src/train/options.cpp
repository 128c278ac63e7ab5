#include "icae/train/options.h"

#include <set>

#include "icae/util/error.h"

namespace icae::train {

#define ICAE_TRAIN_FIELDS(X)                                                                          \
  X(mode) X(model) X(tokenizer) X(train_data) X(eval_data) X(out) X(init) X(templ) X(mem_size) X(rate) \
  X(max_context) X(projector) X(slot_kind) X(memory_positions) X(lora_r) X(lora_alpha) X(lora_dropout) X(targets) X(lm_ratio)           \
  X(leave_tokens_for_lm) X(min_tokens_for_lm) X(curriculum_steps) X(split_blocks) X(batch) X(accum)    \
  X(lr) X(mem_lr) X(warmup) X(schedule) X(steps) X(stop_after) X(weight_decay) X(clip) X(seed) X(shuffle_buffer)     \
  X(eval_every) X(save_every) X(log_every) X(eval_samples) X(eval_generate) X(plateau_check_step)      \
  X(device) X(dtype) X(threads) X(activation_checkpointing) X(deterministic) X(strict_data)

IcaeConfig icae_config(const TrainOptions& o) {
  IcaeConfig c;
  c.mem_size = o.mem_size;
  c.compression_rate = o.rate;
  c.lora.r = o.lora_r;
  c.lora.alpha = o.lora_alpha;
  c.lora.dropout = o.lora_dropout;
  c.lora.target_modules = o.targets;
  c.projector = parse_projector(o.projector);
  c.slot_kind = parse_slot_kind(o.slot_kind);
  c.spread_memory_positions = o.memory_positions == "spread";
  return c;
}

void set_icae_config(TrainOptions& o, const IcaeConfig& c) {
  o.mem_size = c.mem_size;
  o.rate = c.compression_rate;
  o.lora_r = c.lora.r;
  o.lora_alpha = c.lora.alpha;
  o.targets = c.lora.target_modules;
  o.projector = projector_name(c.projector);
  o.slot_kind = slot_kind_name(c.slot_kind);
  o.memory_positions = c.spread_memory_positions ? "spread" : "after";
  // lora_dropout stays the run's own: a training setting, not part of the adapter's shape.
}

nlohmann::json to_json(const TrainOptions& o) {
  nlohmann::json j;
#define X(f) j[#f] = o.f;
  ICAE_TRAIN_FIELDS(X)
#undef X
  return j;
}

TrainOptions options_from_json(const nlohmann::json& j) {
  TrainOptions o;
  std::set<std::string> known;
#define X(f) known.insert(#f);
  ICAE_TRAIN_FIELDS(X)
#undef X
  ICAE_CHECK(j.is_object(), ErrorKind::BadInput, "run config: expected a JSON object");
  for (auto it = j.begin(); it != j.end(); ++it)
    ICAE_CHECK(known.count(it.key()), ErrorKind::BadInput, "run config: unknown option '" + it.key() + "'");
  try {
#define X(f) \
  if (j.contains(#f)) j.at(#f).get_to(o.f);
    ICAE_TRAIN_FIELDS(X)
#undef X
  } catch (const nlohmann::json::exception& e) {
    fail(ErrorKind::BadInput, std::string("run config: ") + e.what());
  }
  return o;
}

void validate(const TrainOptions& o) {
  auto need = [](bool ok, const std::string& what) { ICAE_CHECK(ok, ErrorKind::Usage, what); };
  need(o.mode == "pretrain" || o.mode == "finetune", "mode must be pretrain or finetune");
  need(!o.model.empty(), "--model is required");
  need(!o.train_data.empty(), "--train is required");
  need(!o.out.empty(), "--out is required");
  need(o.mode == "pretrain" || !o.init.empty(), "finetune needs --init ADAPTER_OR_RUN_DIR");
  need(o.mem_size >= 1, "--mem-size must be >= 1");
  need(o.rate >= 1, "--rate must be >= 1");
  need(o.max_context >= 1, "--max-context must be >= 1");
  need(o.slot_kind == "embedding" || o.slot_kind == "kv", "--slot-kind must be embedding or kv");
  need(o.slot_kind == "embedding" || o.projector == "none",
       "--slot-kind kv takes no slot projector (it maps embeddings): use --projector none");
  need(o.memory_positions == "after" || o.memory_positions == "spread", "--memory-positions must be after or spread");
  need(o.lora_r >= 1, "--lora-r must be >= 1");
  need(o.lora_alpha > 0, "--lora-alpha must be > 0");
  need(o.lora_dropout >= 0 && o.lora_dropout < 1, "--lora-dropout must be in [0, 1)");
  need(!o.targets.empty(), "--targets needs at least one module");
  need(o.lm_ratio >= 0 && o.lm_ratio <= 1, "--lm-ratio must be in [0, 1]");
  need(o.leave_tokens_for_lm >= 0, "--leave-tokens-for-lm must be >= 0");
  need(o.min_tokens_for_lm >= 1, "--min-tokens-for-lm must be >= 1");
  need(o.curriculum_steps >= 0, "--curriculum must be >= 0");
  need(o.batch >= 1, "--batch must be >= 1");
  need(o.accum >= 1, "--accum must be >= 1");
  need(o.lr > 0, "--lr must be > 0");
  need(o.mem_lr >= 0, "--mem-lr must be >= 0");
  need(o.warmup >= 0, "--warmup must be >= 0");
  need(o.steps >= 1, "--steps must be >= 1");
  need(o.stop_after >= 0, "--stop-after must be >= 0 (0: run to --steps)");
  need(o.weight_decay >= 0, "--weight-decay must be >= 0");
  need(o.clip >= 0, "--clip must be >= 0 (0: no clipping)");
  need(o.eval_every >= 0 && o.save_every >= 0 && o.log_every >= 1,
       "--eval-every and --save-every must be >= 0, --log-every >= 1");
  need(o.eval_samples >= 1 && o.eval_generate >= 0, "--eval-samples must be >= 1, --eval-generate >= 0");
  need(o.threads >= 0, "--threads must be >= 0");
  need(o.dtype == "auto" || o.dtype == "f32" || o.dtype == "bf16",
       "--dtype must be auto, f32 or bf16 for training (fp16 is not safe to train in)");
}

}  // namespace icae::train
