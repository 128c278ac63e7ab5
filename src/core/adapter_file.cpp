#include "icae/core/adapter_file.h"

#include <ATen/ATen.h>

#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "icae/formats/icae_metadata.h"
#include "icae/io/tensor_io.h"
#include "icae/util/error.h"

namespace icae {

namespace {
constexpr int kFormatVersion = 1;
}  // namespace

nlohmann::json icae_config_to_json(const IcaeConfig& c) {
  const LoraConfig& l = c.lora;
  return {{"mem_size", c.mem_size},
          {"compression_rate", c.compression_rate},
          {"lora", {{"r", l.r}, {"alpha", l.alpha}, {"dropout", l.dropout}, {"target_modules", l.target_modules}}},
          {"projector", projector_name(c.projector)},
          {"slot_kind", slot_kind_name(c.slot_kind)},
          {"memory_positions", c.spread_memory_positions ? "spread" : "after"}};
}

IcaeConfig icae_config_from_json(const nlohmann::json& j) {
  IcaeConfig c;
  c.mem_size = j.at("mem_size").get<int64_t>();
  c.compression_rate = j.at("compression_rate").get<double>();
  const auto& l = j.at("lora");
  c.lora.r = l.at("r").get<int64_t>();
  c.lora.alpha = l.at("alpha").get<double>();
  c.lora.dropout = l.value("dropout", 0.0);
  c.lora.target_modules = l.at("target_modules").get<std::vector<std::string>>();
  c.projector = parse_projector(j.value("projector", "none"));
  c.slot_kind = parse_slot_kind(j.value("slot_kind", "embedding"));
  c.spread_memory_positions = j.value("memory_positions", "after") == "spread";
  return c;
}

void save_adapter(const std::string& path, const Icae& icae, const AdapterInfo& info) {
  const ModelConfig& mc = icae.base().config();
  const SpecialIds& ids = icae.ids();
  nlohmann::json header = {
      {"format", "icae-adapter"},
      {"version", kFormatVersion},
      {"base_model",
       {{"name", info.base_model},
        {"fingerprint", info.base_fingerprint.empty() ? icae.base().fingerprint() : info.base_fingerprint},
        {"model_type", mc.model_type},
        {"vocab_size", mc.vocab_size},
        {"hidden_size", mc.hidden_size},
        {"num_hidden_layers", mc.num_hidden_layers}}},
      {"special_ids",
       {{"pad", ids.pad}, {"mem_first", ids.mem_first}, {"mem_last", ids.mem_last}, {"ae", ids.ae},
        {"lm", ids.lm}, {"ft", ids.ft}}},
      {"chat_template", info.chat_template},
      {"notes", info.notes},
  };
  header.update(icae_config_to_json(icae.config()));
  if (!info.training.is_null()) header["training"] = info.training;
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  const at::ScalarType type = info.store_dtype.value_or(at::kFloat);
  for (auto& [name, t] : icae.named_trainable()) tensors.emplace_back(name, t.detach().to(type));
  save_safetensors(path, tensors, {{"format", "pt"}, {"icae", header.dump()}});
}

LoadedAdapter load_adapter(const std::string& path, std::shared_ptr<const Transformer> base,
                           const AdapterLoadOptions& options) {
  ICAE_CHECK(base != nullptr, ErrorKind::Internal, "load_adapter needs a base model");
  const ModelConfig& mc = base->config();
  formats::SafetensorsFile file(path);
  LoadedAdapter out;
  IcaeConfig config;

  // --- header (ours) or inference from the tensors (released layout). Header values, tensor
  // names and shapes are checked without tensors first (formats/icae_metadata.cpp, fuzzed).
  auto meta = file.metadata().find("icae");
  if (meta != file.metadata().end()) {
    const formats::AdapterBaseSizes sizes{mc.hidden_size, mc.num_hidden_layers, mc.vocab_size};
    formats::AdapterHeader h = formats::parse_adapter_header(meta->second, path, &sizes);
    out.info.base_model = h.base_model;
    out.info.base_fingerprint = h.base_fingerprint;
    out.info.chat_template = h.chat_template;
    out.info.notes = h.notes;
    out.info.training = std::move(h.training);
    config = icae_config_from_json(nlohmann::json::parse(meta->second));  // checked just above
    if (!out.info.base_fingerprint.empty() && !options.allow_fingerprint_mismatch) {
      const std::string have = base->fingerprint();
      ICAE_CHECK(have == out.info.base_fingerprint, ErrorKind::Mismatch,
                 path + ": adapter was trained on base model '" + out.info.base_model + "' (fingerprint " +
                     out.info.base_fingerprint + "), but the loaded base model has fingerprint " + have +
                     ": its output would be garbage. Load the matching base model.");
    }
  } else {
    out.released_layout = true;
    config.lora.alpha = options.lora_alpha.value_or(32.0);
    config.compression_rate = options.compression_rate.value_or(4.0);
    config.lora.dropout = 0.0;
  }
  if (options.lora_alpha) config.lora.alpha = *options.lora_alpha;
  if (options.compression_rate) config.compression_rate = *options.compression_rate;

  // --- tensors
  const formats::AdapterLayout layout =
      formats::read_adapter_layout(file, path, out.released_layout, mc.num_hidden_layers);
  TensorLoadOptions topts;
  topts.float_dtype = at::kFloat;
  topts.device = base->device();
  const at::Tensor memory = to_tensor(*layout.memory, topts);
  std::vector<std::pair<std::string, at::Tensor>> projector_tensors;
  for (const formats::TensorView* v : layout.projector) projector_tensors.emplace_back(v->name, to_tensor(*v, topts));
  std::map<std::pair<int64_t, int>, LoraPair> pairs;
  for (const auto& [key, views] : layout.pairs) {
    LoraPair& pair = pairs[key];
    if (views.A) pair.A = to_tensor(*views.A, topts);
    if (views.B) pair.B = to_tensor(*views.B, topts);
  }
  out.ignored_keys = layout.ignored;
  const std::set<std::string>& targets = layout.targets;
  if (out.released_layout) {
    config.mem_size = memory.size(0) - 3;
    // The rank from the first pair (a half pair is refused below, naming it).
    const LoraPair& first = pairs.begin()->second;
    config.lora.r = first.A.defined() ? first.A.size(0) : first.B.size(1);
    config.lora.target_modules.assign(targets.begin(), targets.end());
  }
  ICAE_CHECK(std::set<std::string>(config.lora.target_modules.begin(), config.lora.target_modules.end()) == targets,
             ErrorKind::BadInput, path + ": the header's LoRA target modules differ from the tensors in the file");

  LoraAdapter lora(mc, config.lora, base->device(), at::kFloat);
  for (int64_t l = 0; l < mc.num_hidden_layers; ++l)
    for (const auto& t : config.lora.target_modules) {
      const Proj p = parse_proj(t);
      auto it = pairs.find({l, static_cast<int>(p)});
      ICAE_CHECK(it != pairs.end() && it->second.A.defined() && it->second.B.defined(), ErrorKind::BadInput,
                 path + ": missing lora_A or lora_B for layer " + std::to_string(l) + " " + t);
      ICAE_CHECK(it->second.A.size(0) == config.lora.r && it->second.B.size(1) == config.lora.r, ErrorKind::BadInput,
                 path + ": LoRA rank of layer " + std::to_string(l) + " " + t + " is not " + std::to_string(config.lora.r));
      auto [o, in] = proj_shape(mc, p);
      ICAE_CHECK(it->second.A.size(1) == in && it->second.B.size(0) == o, ErrorKind::Mismatch,
                 path + ": LoRA for layer " + std::to_string(l) + " " + t + " expects a projection [" +
                     std::to_string(it->second.B.size(0)) + ", " + std::to_string(it->second.A.size(1)) +
                     "], the base model's is [" + std::to_string(o) + ", " + std::to_string(in) + "]");
      lora.pair(l, p) = it->second;
    }
  ICAE_CHECK(memory.size(1) == mc.hidden_size, ErrorKind::Mismatch,
             path + ": memory_token_embed has width " + std::to_string(memory.size(1)) + ", the base model's hidden size is " +
                 std::to_string(mc.hidden_size));
  SlotProjector projector;
  try {
    projector = SlotProjector::from_tensors(config.projector, mc.hidden_size, projector_tensors);
  } catch (const Error& e) {
    fail(e.kind(), path + ": " + e.what());
  }
  out.icae = std::make_unique<Icae>(base, config, std::move(lora), memory, std::move(projector));
  return out;
}

}  // namespace icae
