#include "icae/core/slot_kind.h"

#include "icae/util/error.h"

namespace icae {

const char* slot_kind_name(SlotKind kind) { return kind == SlotKind::KeyValue ? "kv" : "embedding"; }

SlotKind parse_slot_kind(const std::string& name) {
  if (name == "embedding") return SlotKind::Embedding;
  if (name == "kv") return SlotKind::KeyValue;
  fail(ErrorKind::BadInput, "unknown slot kind '" + name + "' (expected embedding or kv)");
}

SlotKind slot_kind_of(const at::Tensor& slots) {
  ICAE_CHECK(slots.defined() && (slots.dim() == 2 || slots.dim() == 5), ErrorKind::BadInput,
             "memory slots must be [n, hidden] (embedding slots) or [n, layers, 2, kv_heads, head_dim] "
             "(key/value slots), got a tensor of rank " + std::to_string(slots.defined() ? slots.dim() : 0));
  return slots.dim() == 5 ? SlotKind::KeyValue : SlotKind::Embedding;
}

}  // namespace icae
