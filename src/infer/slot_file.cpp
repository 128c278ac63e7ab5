#include "icae/infer/slot_file.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include <nlohmann/json.hpp>

#include "icae/core/icae.h"
#include "icae/formats/icae_metadata.h"
#include "icae/infer/fingerprint.h"
#include "icae/io/tensor_io.h"
#include "icae/util/error.h"

namespace icae {

namespace {

// The shape of one slot for this ICAE's base model and slot kind.
std::vector<int64_t> slot_shape(const Icae& icae) {
  const ModelConfig& mc = icae.base().config();
  return icae.config().slot_kind == SlotKind::KeyValue
             ? std::vector<int64_t>{mc.num_hidden_layers, 2, mc.num_key_value_heads, mc.head_dim}
             : std::vector<int64_t>{mc.hidden_size};
}

}  // namespace

Slots make_slots(const Icae& icae, const at::Tensor& tensor, int64_t context_tokens) {
  Slots s;
  s.tensor = tensor;
  s.kind = icae.config().slot_kind;
  s.base_fingerprint = icae.base().fingerprint();
  s.adapter_fingerprint = adapter_fingerprint(icae);
  s.mem_size = icae.config().mem_size;
  s.context_tokens = context_tokens;
  return s;
}

void save_slots(const std::string& path, const Slots& slots) {
  ICAE_CHECK(slots.tensor.defined(), ErrorKind::Usage, path + ": no slots to save");
  const int64_t per_slot_rank = slots.kind == SlotKind::KeyValue ? 4 : 1;
  ICAE_CHECK(slots.tensor.dim() == per_slot_rank + 1, ErrorKind::Mismatch,
             path + ": " + slot_kind_name(slots.kind) + " slots must have " + std::to_string(per_slot_rank + 1) +
                 " dimensions, these have " + std::to_string(slots.tensor.dim()));
  nlohmann::json h = {{"format", "icae-slots"},
                      {"version", 2},
                      {"base_fingerprint", slots.base_fingerprint},
                      {"adapter_fingerprint", slots.adapter_fingerprint},
                      {"mem_size", slots.mem_size},
                      {"context_tokens", slots.context_tokens},
                      {"slot_kind", slot_kind_name(slots.kind)}};
  if (slots.kind == SlotKind::Embedding) h["hidden_size"] = slots.tensor.size(1);
  save_safetensors(path, {{"slots", slots.tensor.detach().to(at::kFloat)}}, {{"icae_slots", h.dump()}});
}

void save_slots(const std::string& path, const Icae& icae, const at::Tensor& slots, int64_t context_tokens) {
  save_slots(path, make_slots(icae, slots, context_tokens));
}

Slots read_slots(const std::string& path) {
  formats::SafetensorsFile file(path);
  // Header and tensor shape are checked without tensors (formats/icae_metadata.cpp, fuzzed).
  const formats::SlotFileHeader h = formats::read_slot_header(file, path);
  Slots s;
  s.version = static_cast<int>(std::clamp<int64_t>(h.version, INT32_MIN, INT32_MAX));
  s.base_fingerprint = h.base_fingerprint;
  s.adapter_fingerprint = h.adapter_fingerprint;
  s.mem_size = h.mem_size;
  s.context_tokens = h.context_tokens;
  s.kind = parse_slot_kind(h.slot_kind);
  const formats::TensorView& v = file.at("slots");
  const size_t per_slot_rank = s.kind == SlotKind::KeyValue ? 4 : 1;
  ICAE_CHECK(v.shape.size() == per_slot_rank + 1, ErrorKind::BadInput,
             path + ": " + h.slot_kind + " slots must have " + std::to_string(per_slot_rank + 1) +
                 " dimensions, the file's have " + std::to_string(v.shape.size()));
  s.tensor = to_tensor(formats::slot_tensor(file, path, std::vector<int64_t>(v.shape.begin() + 1, v.shape.end())),
                       TensorLoadOptions{})
                 .to(at::kFloat);
  return s;
}

void check_slots_fit(const Slots& s, const Icae& icae, const std::string& origin) {
  const std::string base_fp = icae.base().fingerprint();
  ICAE_CHECK(s.base_fingerprint == base_fp, ErrorKind::Mismatch,
             origin + ": these slots were made with another base model (fingerprint " + s.base_fingerprint +
                 ", this model's is " + base_fp + ")");
  if (s.version >= 2) {
    const std::string adapter_fp = adapter_fingerprint(icae);
    ICAE_CHECK(s.adapter_fingerprint == adapter_fp, ErrorKind::Mismatch,
               origin + ": these slots were made by another ICAE adapter (fingerprint " + s.adapter_fingerprint +
                   ", this adapter's is " + adapter_fp + "); compress the context again with this adapter");
  }
  ICAE_CHECK(s.mem_size == icae.config().mem_size, ErrorKind::Mismatch,
             origin + ": slots of an adapter with k = " + std::to_string(s.mem_size) + ", this one has k = " +
                 std::to_string(icae.config().mem_size));
  ICAE_CHECK(s.kind == icae.config().slot_kind, ErrorKind::Mismatch,
             origin + ": these are " + slot_kind_name(s.kind) + " slots, this adapter reads " +
                 slot_kind_name(icae.config().slot_kind) + " slots");
  const std::vector<int64_t> want = slot_shape(icae);
  ICAE_CHECK(s.tensor.defined() && s.tensor.dim() == static_cast<int64_t>(want.size()) + 1 &&
                 std::equal(want.begin(), want.end(), s.tensor.sizes().begin() + 1),
             ErrorKind::Mismatch,
             origin + (want.size() == 1 ? ": slots have the wrong width for this model"
                                        : ": slots have the wrong shape for this model and adapter (key/value "
                                          "slots of another model?)"));
}

Slots load_slots(const std::string& path, const Icae& icae) {
  Slots s = read_slots(path);
  check_slots_fit(s, icae, path);
  s.tensor = s.tensor.to(icae.base().device(), icae.base().dtype());
  return s;
}

}  // namespace icae
