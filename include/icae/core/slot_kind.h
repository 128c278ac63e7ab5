// What a memory slot is. Chosen per adapter and recorded in its file, slot files and run configs.
//   Embedding  ICAE's own (Ge et al. 2024): the encoder's last hidden state at a memory position,
//              fed to the frozen decoder as an input embedding. A context's slots: [n k, H].
//   KeyValue   500xCompressor's (Li et al. 2024): the encoder's key (before RoPE) and value at a
//              memory position, in every layer. The frozen decoder's cache holds them at the
//              placeholders' positions (keys rotated there); no forward pass runs over slot
//              positions. A context's slots: [n k, layers, 2 (key, value), kv_heads, head_dim].
// The tensor's rank tells the kinds apart, so a bare tensor of slots is never ambiguous.
#pragma once
#include <ATen/core/Tensor.h>

#include <string>

namespace icae {

enum class SlotKind { Embedding, KeyValue };

const char* slot_kind_name(SlotKind kind);             // "embedding" | "kv"
SlotKind parse_slot_kind(const std::string& name);     // throws icae::Error(BadInput)
// The kind of a slots tensor by its rank: 2 embedding, 5 key/value (BadInput otherwise).
SlotKind slot_kind_of(const at::Tensor& slots);

}  // namespace icae
