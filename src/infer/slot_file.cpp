#include "icae/infer/slot_file.h"

#include <ATen/ATen.h>

#include <nlohmann/json.hpp>

#include "icae/core/icae.h"
#include "icae/infer/fingerprint.h"
#include "icae/io/tensor_io.h"
#include "icae/util/error.h"

namespace icae {

void save_slots(const std::string& path, const Icae& icae, const at::Tensor& slots, int64_t context_tokens) {
  nlohmann::json h = {{"format", "icae-slots"},
                      {"version", 2},
                      {"base_fingerprint", icae.base().fingerprint()},
                      {"adapter_fingerprint", adapter_fingerprint(icae)},
                      {"mem_size", icae.config().mem_size},
                      {"compression_rate", icae.config().compression_rate},
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
    s.version = h.value("version", 1);
    s.base_fingerprint = h.at("base_fingerprint").get<std::string>();
    s.adapter_fingerprint = h.value("adapter_fingerprint", std::string());
    s.mem_size = h.at("mem_size").get<int64_t>();
    s.context_tokens = h.value("context_tokens", 0);
  } catch (const nlohmann::json::exception& e) {
    fail(ErrorKind::BadInput, path + ": malformed icae_slots header: " + e.what());
  }
  const std::string base_fp = icae.base().fingerprint();
  ICAE_CHECK(s.base_fingerprint == base_fp, ErrorKind::Mismatch,
             path + ": these slots were made with another base model (fingerprint " + s.base_fingerprint +
                 ", this model's is " + base_fp + ")");
  if (s.version >= 2) {
    const std::string adapter_fp = adapter_fingerprint(icae);
    ICAE_CHECK(s.adapter_fingerprint == adapter_fp, ErrorKind::Mismatch,
               path + ": these slots were made by another ICAE adapter (fingerprint " + s.adapter_fingerprint +
                   ", this adapter's is " + adapter_fp + "); compress the context again with this adapter");
  }
  ICAE_CHECK(s.mem_size == icae.config().mem_size, ErrorKind::Mismatch,
             path + ": slots of an adapter with k = " + std::to_string(s.mem_size) + ", this one has k = " +
                 std::to_string(icae.config().mem_size));
  TensorLoadOptions o;
  o.device = icae.base().device();
  s.slots = to_tensor(file.at("slots"), o).to(icae.base().dtype());
  ICAE_CHECK(s.slots.dim() == 2 && s.slots.size(1) == icae.base().config().hidden_size, ErrorKind::Mismatch,
             path + ": slots have the wrong width for this model");
  return s;
}

}  // namespace icae
