#include "icae/train/options.h"

#include <set>

#include "icae/core/adapter_file.h"
#include "icae/util/error.h"

namespace icae::train {

#define ICAE_TRAIN_FIELDS(X)                                                                          \
  X(mode) X(model) X(tokenizer) X(train_data) X(eval_data) X(out) X(init) X(templ) X(max_context) X(lm_ratio) \
  X(leave_tokens_for_lm) X(min_tokens_for_lm) X(curriculum_steps) X(split_blocks) X(batch) X(accum)    \
  X(lr) X(mem_lr) X(warmup) X(schedule) X(steps) X(stop_after) X(weight_decay) X(clip) X(seed) X(shuffle_buffer)     \
  X(eval_every) X(save_every) X(log_every) X(eval_samples) X(eval_generate) X(plateau_check_step)      \
  X(device) X(dtype) X(threads) X(activation_checkpointing) X(deterministic) X(strict_data)

IcaeConfig new_run_icae_config() {
  IcaeConfig c;
  c.projector = ProjectorKind::Linear;
  return c;
}

namespace {

// The adapter's settings as flat keys, as run configs stored them before "icae" (one per line,
// read onto the config the run starts from).
const std::set<std::string> kLegacyIcaeKeys = {"mem_size",   "rate",         "projector", "slot_kind", "memory_positions",
                                               "lora_r",     "lora_alpha",   "lora_dropout", "targets"};

void read_legacy_icae_key(IcaeConfig& c, const std::string& key, const nlohmann::json& v) {
  if (key == "mem_size") c.mem_size = v.get<int64_t>();
  else if (key == "rate") c.compression_rate = v.get<double>();
  else if (key == "projector") c.projector = parse_projector(v.get<std::string>());
  else if (key == "slot_kind") c.slot_kind = parse_slot_kind(v.get<std::string>());
  else if (key == "memory_positions") c.spread_memory_positions = v.get<std::string>() == "spread";
  else if (key == "lora_r") c.lora.r = v.get<int64_t>();
  else if (key == "lora_alpha") c.lora.alpha = v.get<double>();
  else if (key == "lora_dropout") c.lora.dropout = v.get<double>();
  else if (key == "targets") c.lora.target_modules = v.get<std::vector<std::string>>();
}

}  // namespace

nlohmann::json to_json(const TrainOptions& o) {
  nlohmann::json j;
#define X(f) j[#f] = o.f;
  ICAE_TRAIN_FIELDS(X)
#undef X
  j["icae"] = icae_config_to_json(o.icae);
  return j;
}

TrainOptions options_from_json(const nlohmann::json& j) {
  TrainOptions o;
  std::set<std::string> known;
#define X(f) known.insert(#f);
  ICAE_TRAIN_FIELDS(X)
#undef X
  known.insert("icae");
  known.insert(kLegacyIcaeKeys.begin(), kLegacyIcaeKeys.end());
  ICAE_CHECK(j.is_object(), ErrorKind::BadInput, "run config: expected a JSON object");
  for (auto it = j.begin(); it != j.end(); ++it)
    ICAE_CHECK(known.count(it.key()), ErrorKind::BadInput, "run config: unknown option '" + it.key() + "'");
  try {
#define X(f) \
  if (j.contains(#f)) j.at(#f).get_to(o.f);
    ICAE_TRAIN_FIELDS(X)
#undef X
    if (j.contains("icae")) {
      o.icae = icae_config_from_json(j.at("icae"));
    } else {
      for (const std::string& key : kLegacyIcaeKeys)
        if (j.contains(key)) read_legacy_icae_key(o.icae, key, j.at(key));
    }
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
  const IcaeConfig& c = o.icae;
  need(c.mem_size >= 1, "--mem-size must be >= 1");
  need(c.compression_rate >= 1, "--rate must be >= 1");
  need(o.max_context >= 1, "--max-context must be >= 1");
  need(c.slot_kind == SlotKind::Embedding || c.projector == ProjectorKind::None,
       "--slot-kind kv takes no slot projector (it maps embeddings): use --projector none");
  need(c.lora.r >= 1, "--lora-r must be >= 1");
  need(c.lora.alpha > 0, "--lora-alpha must be > 0");
  need(c.lora.dropout >= 0 && c.lora.dropout < 1, "--lora-dropout must be in [0, 1)");
  need(!c.lora.target_modules.empty(), "--targets needs at least one module");
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
