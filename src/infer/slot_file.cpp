#include "icae/infer/slot_file.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cstdint>

#include <nlohmann/json.hpp>

#include "icae/core/icae.h"
#include "icae/formats/icae_metadata.h"
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
                      {"context_tokens", context_tokens},
                      {"slot_kind", slot_kind_name(icae.config().slot_kind)}};
  save_safetensors(path, {{"slots", slots.detach().to(at::kFloat)}}, {{"icae_slots", h.dump()}});
}

SlotFile load_slots(const std::string& path, const Icae& icae) {
  formats::SafetensorsFile file(path);
  // Header and tensor shape are checked without tensors (formats/icae_metadata.cpp, fuzzed).
  const formats::SlotFileHeader h = formats::read_slot_header(file, path);
  SlotFile s;
  s.version = static_cast<int>(std::clamp<int64_t>(h.version, INT32_MIN, INT32_MAX));
  s.base_fingerprint = h.base_fingerprint;
  s.adapter_fingerprint = h.adapter_fingerprint;
  s.mem_size = h.mem_size;
  s.context_tokens = h.context_tokens;
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
  const std::string kind = slot_kind_name(icae.config().slot_kind);
  ICAE_CHECK(h.slot_kind == kind, ErrorKind::Mismatch,
             path + ": these are " + h.slot_kind + " slots, this adapter reads " + kind + " slots");
  const ModelConfig& mc = icae.base().config();
  const std::vector<int64_t> slot_shape =
      icae.config().slot_kind == SlotKind::KeyValue
          ? std::vector<int64_t>{mc.num_hidden_layers, 2, mc.num_key_value_heads, mc.head_dim}
          : std::vector<int64_t>{mc.hidden_size};
  TensorLoadOptions o;
  o.device = icae.base().device();
  s.slots = to_tensor(formats::slot_tensor(file, path, slot_shape), o).to(icae.base().dtype());
  return s;
}

}  // namespace icae
