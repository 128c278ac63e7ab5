#include "icae/infer/slot_file.h"

#include <ATen/ATen.h>

#include <nlohmann/json.hpp>

#include "icae/core/icae.h"
#include "icae/io/tensor_io.h"
#include "icae/util/error.h"

namespace icae {

void save_slots(const std::string& path, const Icae& icae, const at::Tensor& slots, int64_t context_tokens) {
  nlohmann::json h = {{"format", "icae-slots"},
                      {"version", 1},
                      {"base_fingerprint", icae.base().fingerprint()},
                      {"mem_size", icae.config().mem_size},
                      {"hidden_size", icae.base().config().hidden_size},
                      {"context_tokens", context_tokens}};
  save_safetensors(path, {{"slots", slots.detach().to(at::kFloat)}}, {{"icae_slots", h.dump()}});
}

SlotFile load_slots(const std::string& path, const Icae& icae) {
  formats::SafetensorsFile file(path);
  auto meta = file.metadata().find("icae_slots");
  ICAE_CHECK(meta != file.metadata().end(), ErrorKind::BadInput, path + ": not an icae slot file (no icae_slots header)");
  SlotFile s;
  try {
    auto h = nlohmann::json::parse(meta->second);
    s.base_fingerprint = h.at("base_fingerprint").get<std::string>();
    s.mem_size = h.at("mem_size").get<int64_t>();
    s.context_tokens = h.value("context_tokens", 0);
  } catch (const nlohmann::json::exception& e) {
    fail(ErrorKind::BadInput, path + ": malformed icae_slots header: " + e.what());
  }
  ICAE_CHECK(s.base_fingerprint == icae.base().fingerprint(), ErrorKind::Mismatch,
             path + ": these slots were made with another base model (fingerprint " + s.base_fingerprint + ")");
  TensorLoadOptions o;
  o.device = icae.base().device();
  s.slots = to_tensor(file.at("slots"), o).to(icae.base().dtype());
  ICAE_CHECK(s.slots.dim() == 2 && s.slots.size(1) == icae.base().config().hidden_size, ErrorKind::Mismatch,
             path + ": slots have the wrong width for this model");
  return s;
}

}  // namespace icae
