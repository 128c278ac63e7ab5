// ICAE adapter files. Both the released ICAE v2 layout and the project's own format use the
// same tensor keys ("icae.base_model.model.model.layers.N.self_attn.q_proj.lora_A.default.weight",
// "memory_token_embed.weight"), so our files load in the original code too. Ours add a JSON
// header (safetensors __metadata__ "icae") with everything needed to use the adapter: base
// model identity and weight fingerprint, k, rate, LoRA config, special ids, chat template.
#pragma once
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "icae/core/icae.h"

namespace icae {

// What an adapter is (IcaeConfig) as JSON, written once and read once: the adapter header's
// "mem_size", "compression_rate", "lora" {r, alpha, dropout, target_modules}, "projector",
// "slot_kind", "memory_positions". Reading takes a header that formats::parse_adapter_header has
// checked (types and ranges); keys absent from older files keep IcaeConfig's defaults.
nlohmann::json icae_config_to_json(const IcaeConfig& config);
IcaeConfig icae_config_from_json(const nlohmann::json& j);

struct AdapterInfo {
  std::string base_model;          // a name/path for people (not checked)
  std::string base_fingerprint;    // Transformer::fingerprint() of the base it was trained on
  std::string chat_template = "none";  // FT template (see core/templates.h)
  std::string notes;               // free text: how it was trained
  nlohmann::json training;         // how it was trained (options, steps, data), when known
  std::optional<at::ScalarType> store_dtype;  // tensors' dtype in the file (default float32)
};

struct AdapterLoadOptions {
  // Released checkpoints carry no LoRA alpha and no compression rate: give them here (the
  // released v2 models used alpha 32, rate 4). Ignored for files with an "icae" header unless
  // set explicitly.
  std::optional<double> lora_alpha;
  std::optional<double> compression_rate;
  // Loads onto a base whose fingerprint differs (an error otherwise).
  bool allow_fingerprint_mismatch = false;
};

struct LoadedAdapter {
  std::unique_ptr<Icae> icae;
  AdapterInfo info;
  bool released_layout = false;           // no "icae" header: the original's file
  std::vector<std::string> ignored_keys;  // e.g. base-model tensors saved alongside
};

void save_adapter(const std::string& path, const Icae& icae, const AdapterInfo& info);
LoadedAdapter load_adapter(const std::string& path, std::shared_ptr<const Transformer> base,
                           const AdapterLoadOptions& options = {});

}  // namespace icae
